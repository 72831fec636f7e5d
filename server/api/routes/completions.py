"""``POST /v1/chat/completions``: the OpenAI chat-completions protocol over the answer modes.

The last user message is the question; earlier user and assistant messages are the history;
system messages are ignored (they cannot change the citation rules). With ``stream: true`` the
answer arrives as server-sent events, each content delta whole sentences with their citation
markers, the last chunk carrying ``citations``, ``passages`` and ``abstained``, then
``data: [DONE]``. In the llm mode the content is the quoted (extractive) answer, sent at once,
a blank line, then the model's checked sentences as they are written; each content chunk says
which with the extra field ``part`` (``quoted`` or ``answer``).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from answer.base import AnswerError
from answer.llm import QUOTED_SEPARATOR, with_quotes
from nenqa.types import Answer, AnswerPiece
from server.api.deps import ServiceDep, SettingsDep
from server.api.docs import COMMON, POST_BODY, error_responses
from server.api.routes.chat import question_from
from server.schemas import (
    ChatTurn,
    CompletionChoice,
    CompletionMessage,
    CompletionMessageOut,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    citations_out,
)

router = APIRouter(tags=["openai"])

MODEL_MODES = {"nenqa-extractive": "extractive", "nenqa-llm": "llm"}
_STARTED = int(time.time())

_STREAM_DOC = {
    "description": "With `stream: true`: server-sent events, `data: <chat.completion.chunk>` "
    "lines and a final `data: [DONE]`. Each content chunk has the extra field `part`: `quoted` "
    "(llm mode: the extractive answer, sent first) or `answer`. The last chunk has "
    "`finish_reason: stop` and the extra fields `citations`, `passages`, `abstained`, "
    "`unsupported`, `fallback`.",
    "content": {
        "text/event-stream": {
            # One server-sent event (OpenAPI 3.1: the schema of a stream describes each event).
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {
                        "type": "string",
                        "description": "a chat.completion.chunk as JSON, or [DONE]",
                    },
                    "event": {"type": "string"},
                    "id": {"type": "string"},
                },
            }
        }
    },
}


def split_messages(messages: list[CompletionMessage]) -> tuple[str, list[ChatTurn]]:
    """The question (last user message) and the user/assistant turns before it."""
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    history = [
        ChatTurn(role=m.role, content=m.text)  # type: ignore[arg-type]
        for m in messages[:last_user]
        if m.role in {"user", "assistant"}
    ]
    return messages[last_user].text, history


@router.post(
    "/chat/completions",
    response_model=CompletionResponse,
    summary="OpenAI-compatible chat completions (stream or not), with citations",
    responses={200: _STREAM_DOC, **error_responses(*POST_BODY, *COMMON, 502, 504)},
)
def chat_completions(
    body: CompletionRequest, service: ServiceDep, settings: SettingsDep
) -> CompletionResponse | StreamingResponse:
    """Works with OpenAI clients: `model` `nenqa-extractive` or `nenqa-llm` picks the mode.

    Citations arrive in the extra field `citations` (`[{ref, reference, quotes}]`), next to
    `choices`; in a stream, on the last chunk.
    """
    mode = body.mode or MODEL_MODES.get(body.model) or settings.answer_mode
    answerer = service.answerer(mode)
    text, history = split_messages(body.messages)
    question = question_from(settings, text, history, body.top_k, body.lang)
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    model = f"nenqa-{mode}"
    if not body.stream:
        answer = with_quotes(answerer.answer(question))
        citations, passages = citations_out(answer)
        return CompletionResponse(
            id=completion_id,
            created=created,
            model=model,
            choices=[CompletionChoice(message=CompletionMessageOut(content=answer.text))],
            citations=citations,
            passages=passages,
            abstained=answer.abstained,
            unsupported=list(answer.unsupported),
            fallback=answer.fallback,
        )
    pieces = answerer.stream(question)
    first = next(pieces)  # a failure before the first piece still gets its status code
    events = sse_events(itertools.chain([first], pieces), completion_id, created, model)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def sse_events(
    pieces: Iterator[AnswerPiece], completion_id: str, created: int, model: str
) -> Iterator[str]:
    """``data:`` lines for the pieces of an answer, then ``data: [DONE]``."""

    def chunk(delta: dict, finish_reason: str | None = None, **extra: object) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    final: Answer | None = None
    separator = ""
    try:
        for piece in pieces:
            if piece.answer is not None:
                final = piece.answer
            elif piece.quoted is not None:
                for segment in piece.quoted.segments:
                    yield chunk({"content": segment}, part="quoted")
                separator = QUOTED_SEPARATOR
            elif piece.text:
                yield chunk({"content": separator + piece.text}, part="answer")
                separator = ""
    except AnswerError as error:
        body = {"error": {"message": str(error), "type": type(error).__name__}}
        yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
    if final is not None:
        citations, passages = citations_out(with_quotes(final))
        yield chunk(
            {},
            "stop",
            citations=[c.model_dump() for c in citations],
            passages=[p.model_dump() for p in passages],
            abstained=final.abstained,
            unsupported=list(final.unsupported),
            fallback=final.fallback,
        )
    yield "data: [DONE]\n\n"


@router.get("/models", response_model=ModelList, summary="The answer modes as OpenAI models")
def list_models(service: ServiceDep) -> ModelList:
    return ModelList(
        data=[ModelCard(id=f"nenqa-{mode}", created=_STARTED) for mode in sorted(service.answerers)]
    )
