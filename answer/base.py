"""What every answer mode takes and gives: a ``Question`` in, an ``Answer`` with citations out.

Citations are always the review's own reference numbers ``[n]``; a quoted sentence that carries
no reference marker is cited by its passage (``[§section]``) and never given a number.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from nenqa.types import Evidence
from retriever.search import Turn

AnswerModeName = Literal["extractive", "llm"]
ANSWER_MODES: tuple[AnswerModeName, ...] = ("extractive", "llm")

ABSTENTION_TEXT = {
    "zh": "综述中没有能回答这个问题的内容，因此不作回答。",
    "en": "The review does not contain evidence that answers this question, so I cannot answer it.",
}


class AnswerError(RuntimeError):
    """An answer could not be produced (e.g. the LLM endpoint failed); the message says why."""


class LLMUnavailableError(AnswerError):
    """The llm mode is not configured on this server."""


class LLMEndpointError(AnswerError):
    """The configured LLM endpoint failed while answering (connection, timeout, error status)."""


class LLMTimeoutError(LLMEndpointError):
    """The LLM endpoint did not answer within ``Settings.llm_timeout_s``."""


@dataclass(frozen=True)
class Question:
    """A question in Chinese or English, the conversation before it, and how much to retrieve."""

    text: str
    history: tuple[Turn, ...] = ()
    top_k: int | None = None


@dataclass(frozen=True)
class Quote:
    """A sentence of the review that an answer rests on, and the chunk it was retrieved in."""

    chunk_id: str
    text: str
    section: str


@dataclass(frozen=True)
class Citation:
    """One reference of the review cited by an answer, with the quotes that cite it."""

    ref: int
    reference: str
    quotes: tuple[Quote, ...]


@dataclass(frozen=True)
class PassageCitation:
    """Evidence without a reference marker, cited by its section (``[§section]``)."""

    section: str
    quotes: tuple[Quote, ...]


@dataclass(frozen=True)
class Answer:
    """An answer, its citations and the evidence behind it.

    ``segments`` are the pieces of ``text`` in order, each whole sentences with their markers,
    so a stream can send them without splitting a citation. ``unsupported`` holds sentences a
    model wrote that failed the citation checks and were removed from ``text``; ``draft`` is the
    model's raw output before the checks (empty when no model wrote the answer).
    """

    text: str
    abstained: bool
    mode: AnswerModeName
    language: str
    segments: tuple[str, ...] = ()
    citations: tuple[Citation, ...] = ()
    passages: tuple[PassageCitation, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    unsupported: tuple[str, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    draft: str = ""
    # Set when the llm mode was asked for, the endpoint failed and the extractive mode answered.
    fallback: str | None = None


@dataclass(frozen=True)
class AnswerPiece:
    """A streamed piece: a text segment, or (last) the complete ``Answer``."""

    text: str = ""
    answer: Answer | None = None


class AnswerMode(Protocol):
    """One way of answering; the HTTP layer and the LangChain runnables call only this."""

    name: AnswerModeName

    def answer(self, question: Question) -> Answer: ...

    def stream(self, question: Question) -> Iterator[AnswerPiece]: ...


def passage_marker(section: str) -> str:
    """The in-text marker for evidence without a reference number, e.g. ``[§3 化疗]``."""
    return f"[§{section}]"


def reference_markers(refs: Sequence[int]) -> str:
    """``[4][5]`` for refs (4, 5): one bracket per number so no client has to parse ranges."""
    return "".join(f"[{n}]" for n in refs)
