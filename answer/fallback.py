"""The llm mode with the extractive mode behind it, for when the LLM endpoint fails.

Enabled by ``Settings.llm_fallback_extractive``. When the endpoint is down, times out or
answers with an error, the question is answered by quoting the review instead of a 502/504;
the answer's ``mode`` is ``extractive`` and its ``fallback`` says why. The llm mode sends its
quoted (extractive) answer before asking the model, so that answer is the fallback; once the
model's first checked sentence went out, a later failure ends the stream with an error event,
as without the fallback. A non-streamed answer is the
same stream drained (the model asked for its whole answer before anything is sent).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

from answer.base import LLMEndpointError, final_answer
from answer.extractive import ExtractiveAnswerer
from answer.llm import LLMAnswerer
from nenqa.types import Answer, AnswerPiece, Question

log = logging.getLogger("nenqa.server")


def fallback_reason(error: LLMEndpointError) -> str:
    """What the ``fallback`` field of an answer says: the failure and what answered instead."""
    return f"{error}; answered in the extractive mode (quotes from the review) instead"


def mark_fallback(answer: Answer, error: LLMEndpointError) -> Answer:
    """``answer`` (from the extractive mode) marked as standing in for the llm mode."""
    log.warning("llm mode fell back to extractive: %s", error)
    return replace(answer, fallback=fallback_reason(error))


class ExtractiveFallback:
    """Answers as ``llm``; on ``LLMEndpointError`` before anything was sent, as ``extractive``."""

    name = "llm"

    def __init__(self, llm: LLMAnswerer, extractive: ExtractiveAnswerer) -> None:
        self.llm = llm
        self.extractive = extractive

    def answer(self, question: Question) -> Answer:
        """The llm answer, or the marked extractive one: ``stream`` drained."""
        return final_answer(self.stream(question, incremental=False))

    def stream(self, question: Question, *, incremental: bool = True) -> Iterator[AnswerPiece]:
        """The llm mode's pieces; on an endpoint failure before its first sentence, the quoted
        answer it sent first (or, if none was sent, the extractive mode's pieces) as the answer."""
        quoted: Answer | None = None
        wrote = False
        try:
            for piece in self.llm.stream(question, incremental=incremental):
                quoted = piece.quoted or quoted
                wrote = wrote or bool(piece.text)
                yield piece
        except LLMEndpointError as error:
            if wrote:
                raise
            if quoted is not None:  # already on the client's screen: it becomes the answer
                yield AnswerPiece(answer=mark_fallback(quoted, error))
                return
            for piece in self.extractive.stream(question):
                if piece.answer is not None:
                    piece = AnswerPiece(answer=mark_fallback(piece.answer, error))
                yield piece
