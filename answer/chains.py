"""An answer mode as a LangChain ``Runnable``, for users who compose LCEL.

An adapter only: the mode's own pipeline (``AnswerMode.stream``) does the retrieval, the
relevance gate and the selection or generation; this module has no logic of its own.
``as_runnable(mode)`` takes ``{"question": str, "history": [{"role", "content"}], "top_k":
int | None}``, a plain question string or a ``Question``; ``invoke`` returns the ``Answer`` and
``stream`` yields the ``AnswerPiece``s, the last one carrying the ``Answer``::

    chain = as_runnable(state.answerers["extractive"])
    chain.invoke({"question": "SPINET研究中兰瑞肽组的TTF是多少？"}).text
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from answer.base import AnswerMode
from nenqa.types import Answer, AnswerPiece, Question, Turn


def as_question(value: Any) -> Question:
    """A ``Question`` from a string, a ``Question`` or a ``{"question", "history", "top_k"}``."""
    if isinstance(value, Question):
        return value
    if isinstance(value, str):
        return Question(value)
    history = tuple(
        t if isinstance(t, Turn) else Turn(t["role"], t["content"])
        for t in value.get("history") or ()
    )
    return Question(str(value["question"]), history, value.get("top_k"))


class AnswerRunnable(Runnable[Any, Answer]):
    """An answer mode behind LangChain's ``invoke``/``stream`` (with its callbacks and tracing)."""

    def __init__(self, mode: AnswerMode) -> None:
        self.mode = mode
        self.name = f"nenqa_{mode.name}"

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Answer:
        return self._call_with_config(self._answer, input, config, run_type="chain")

    def stream(  # type: ignore[override]
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Iterator[AnswerPiece]:
        yield from self._transform_stream_with_config(iter([input]), self._pieces, config)

    def _answer(self, value: Any) -> Answer:
        return self.mode.answer(as_question(value))

    def _pieces(self, values: Iterator[Any]) -> Iterator[AnswerPiece]:
        for value in values:
            yield from self.mode.stream(as_question(value))


def as_runnable(mode: AnswerMode) -> AnswerRunnable:
    """``mode`` as a ``Runnable``: ``invoke`` gives its ``Answer``, ``stream`` its pieces."""
    return AnswerRunnable(mode)
