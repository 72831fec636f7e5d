"""``POST /v1/chat``: a cited answer to a question, in the extractive or the llm mode."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from answer.base import AnswerError
from nenqa.settings import Settings
from nenqa.types import AnswerPiece, Question, Turn
from server.api.deps import ServiceDep, SettingsDep
from server.api.docs import COMMON, POST_BODY, error_responses
from server.errors import QuestionTooLongError
from server.schemas import AnswerLanguage, ChatRequest, ChatResponse, ChatTurn, chat_response

router = APIRouter(tags=["chat"])

_STREAM_DOC = {
    "description": "With `stream: true`: server-sent events `quoted` (llm mode: the extractive "
    'answer, a chat response, sent at once), `delta` (`{"text"}`, each checked sentence), '
    "`answer` (the complete chat response, last) or `error`.",
    "content": {
        "text/event-stream": {
            # One server-sent event (OpenAPI 3.1: the schema of a stream describes each event).
            "schema": {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"enum": ["quoted", "delta", "answer", "error"]},
                    "data": {"type": "string", "description": "the event's JSON"},
                },
            }
        }
    },
}


def question_from(
    settings: Settings,
    text: str,
    history: list[ChatTurn],
    top_k: int | None,
    language: AnswerLanguage | None = None,
) -> Question:
    """The domain question; enforces a ``max_question_chars`` set below the schema's limit."""
    limit = settings.max_question_chars
    if len(text) > limit:
        raise QuestionTooLongError(f"question: at most {limit} characters, got {len(text)}")
    return Question(text, tuple(Turn(t.role, t.content) for t in history), top_k, language)


@router.post(
    "/chat",
    response_model=ChatResponse,
    summary="Answer a question with citations",
    responses={200: _STREAM_DOC, **error_responses(*POST_BODY, *COMMON, 502, 504)},
)
def chat(
    body: ChatRequest, service: ServiceDep, settings: SettingsDep
) -> ChatResponse | StreamingResponse:
    """Answer from the review: `[n]` cites reference n, `[§section]` a passage without one.

    `abstained` is true (and nothing is cited) when the review does not answer the question.
    The answer is in `lang` when given, else in the question's language; an English answer
    shows the review's English renderings, each quote's Chinese text in `original`.
    In the llm mode `quoted_answer` is the verified extractive answer shown before the model's.
    With `stream: true`: server-sent events `quoted` (llm mode: that extractive answer as a
    whole response, at once), `delta` (`{"text"}`: each checked sentence), `answer` (the
    complete response, last) or `error` (`{"error": {"message", "type"}}`).
    """
    # 503 with the reason when the mode is not available.
    answerer = service.answerer(body.mode or settings.answer_mode)
    question = question_from(settings, body.question, body.history, body.top_k, body.lang)
    if not body.stream:
        return chat_response(answerer.answer(question), service.searcher.rendering)
    pieces = answerer.stream(question)
    first = next(pieces)  # a failure before the first piece still gets its status code
    events = chat_events(itertools.chain([first], pieces), service.searcher.rendering)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def chat_events(
    pieces: Iterator[AnswerPiece], rendering: Callable[[str, str], Any]
) -> Iterator[str]:
    """The ``/v1/chat`` stream: ``quoted``, ``delta`` ..., then ``answer`` (or ``error``)."""

    def event(name: str, data: object) -> str:
        payload = data.model_dump_json() if isinstance(data, ChatResponse) else json.dumps(data)
        return f"event: {name}\ndata: {payload}\n\n"

    try:
        for piece in pieces:
            if piece.answer is not None:
                yield event("answer", chat_response(piece.answer, rendering))
            elif piece.quoted is not None:
                yield event("quoted", chat_response(piece.quoted, rendering))
            elif piece.text:
                yield event("delta", {"text": piece.text})
    except AnswerError as error:
        yield event("error", {"error": {"message": str(error), "type": type(error).__name__}})
