"""``POST /v1/chat``: a cited answer to a question, in the extractive or the llm mode."""

from __future__ import annotations

from fastapi import APIRouter

from nenqa.settings import Settings
from nenqa.types import Question, Turn
from server.api.deps import ServiceDep, SettingsDep
from server.api.docs import COMMON, POST_BODY, error_responses
from server.errors import QuestionTooLongError
from server.schemas import AnswerLanguage, ChatRequest, ChatResponse, ChatTurn, chat_response

router = APIRouter(tags=["chat"])


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
    responses=error_responses(*POST_BODY, *COMMON, 502, 504),
)
def chat(body: ChatRequest, service: ServiceDep, settings: SettingsDep) -> ChatResponse:
    """Answer from the review: `[n]` cites reference n, `[§section]` a passage without one.

    `abstained` is true (and nothing is cited) when the review does not answer the question.
    The answer is in `lang` when given, else in the question's language; an English answer
    shows the review's English renderings, each quote's Chinese text in `original`.
    """
    # 503 with the reason when the mode is not available.
    answerer = service.answerer(body.mode or settings.answer_mode)
    question = question_from(settings, body.question, body.history, body.top_k, body.lang)
    return chat_response(answerer.answer(question), service.searcher.rendering)
