"""The llm mode with the extractive mode behind it, for when the LLM endpoint fails.

Enabled by ``Settings.llm_fallback_extractive``. When the endpoint is down, times out or
answers with an error, the question is answered by quoting the review instead of a 502/504;
the answer's ``mode`` is ``extractive`` and its ``fallback`` says why. A stream falls back only
while nothing has been sent: once the model's first checked sentence went out, a later failure
ends the stream with an error event, as without the fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from answer.base import Answer, AnswerPiece, LLMEndpointError, Question
from answer.extractive import ExtractiveAnswerer
from answer.llm import LLMAnswerer

log = logging.getLogger("nenqa.server")


def fallback_reason(error: LLMEndpointError) -> str:
    """What the ``fallback`` field of an answer says: the failure and what answered instead."""
    return f"{error}; answered in the extractive mode (quotes from the review) instead"


def mark_fallback(answer: Answer, error: LLMEndpointError) -> Answer:
    """``answer`` (from the extractive mode) marked as standing in for the llm mode."""
    log.warning("llm mode fell back to extractive: %s", error)
    return replace(answer, fallback=fallback_reason(error))


class ExtractiveFallback:
    """Answers as ``llm``; on ``LLMEndpointError`` answers as ``extractive`` instead."""

    name = "llm"

    def __init__(self, llm: LLMAnswerer, extractive: ExtractiveAnswerer) -> None:
        self.llm = llm
        self.extractive = extractive

    def answer(self, question: Question) -> Answer:
        try:
            return self.llm.answer(question)
        except LLMEndpointError as error:
            return mark_fallback(self.extractive.answer(question), error)

    def stream(self, question: Question) -> Iterator[AnswerPiece]:
        pieces = self.llm.stream(question)
        try:
            first = next(pieces)
        except LLMEndpointError as error:
            for piece in self.extractive.stream(question):
                if piece.answer is not None:
                    piece = AnswerPiece(answer=mark_fallback(piece.answer, error))
                yield piece
            return
        yield first
        yield from pieces


def with_fallback_chain(llm_chain: Runnable, extractive_chain: Runnable) -> Runnable[Any, Answer]:
    """``llm_chain``, or ``extractive_chain`` (its answer marked) when the endpoint fails."""

    def answer(value: Any, config: RunnableConfig) -> Answer:
        try:
            return llm_chain.invoke(value, config)
        except LLMEndpointError as error:
            return mark_fallback(extractive_chain.invoke(value, config), error)

    return RunnableLambda(answer, name="llm_or_extractive")
