"""What every answer mode takes and gives: a ``Question`` in, an ``Answer`` with citations out.

The types themselves (``Question``, ``Answer``, ``AnswerPiece`` ...) live in ``nenqa.types``;
this module holds the answer modes' contract, their errors and the citation markers.
Citations are always the review's own reference numbers ``[n]``; a quoted sentence that carries
no reference marker is cited by its passage (``[§section]``) and never given a number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, Protocol

from nenqa.text import cjk_count
from nenqa.types import Answer, AnswerModeName, AnswerPiece, Question

ANSWER_MODES: tuple[AnswerModeName, ...] = ("extractive", "llm")

ABSTENTION_TEXT = {
    "zh": "综述中没有能回答这个问题的内容，因此不作回答。",
    "en": "The review does not contain evidence that answers this question, so I cannot answer it.",
}
# Said first when the question names something the review never mentions.
NOT_DISCUSSED_TEXT = {"zh": "综述没有讨论{names}。", "en": "The review does not discuss {names}."}
_NAME_JOINS = {"zh": ("、", "和"), "en": (", ", " or ")}


def not_discussed_text(language: Literal["zh", "en"], names: Sequence[str]) -> str:
    """ "The review does not discuss telotristat." / "综述没有讨论特罗司他。" """
    names = list(dict.fromkeys(names))
    comma, last = _NAME_JOINS[language]
    joined = names[0] if len(names) == 1 else comma.join(names[:-1]) + last + names[-1]
    return NOT_DISCUSSED_TEXT[language].format(names=joined)


def abstention_text(language: Literal["zh", "en"], not_covered: Sequence[str] = ()) -> str:
    """The abstention, naming what the review does not discuss when that is known ("The review
    does not discuss telotristat. The review does not contain evidence ...")."""
    if not not_covered:
        return ABSTENTION_TEXT[language]
    gap = "" if language == "zh" else " "
    return not_discussed_text(language, not_covered) + gap + ABSTENTION_TEXT[language]


# A word of running English: a letter and at least two lower-case ones ("What", "lanreotide"),
# or a short preposition, article or verb ("IMpower133 in ES-SCLC: OS?"); an acronym or trial
# name alone ("SPINET?", "mPFS"), or joined by "vs", says nothing about the asker's language.
_SHORT_ENGLISH = ("an", "at", "by", "do", "if", "in", "is", "it", "of", "on", "or", "to")
_ENGLISH_WORD = re.compile(
    r"\b(?:[A-Za-z][a-z]{2,}|"
    + "|".join(w for short in _SHORT_ENGLISH for w in (short, short.capitalize()))
    + r")\b"
)


def clear_language(text: str) -> Literal["zh", "en"] | None:
    """``"en"`` for English words and no Chinese, or more English words than half the Chinese
    characters (a Chinese word is about two: "Is there a phase 3 of 索凡替尼 + 特瑞普利 as 2L?"
    names drugs in Chinese inside an English sentence); ``"zh"`` for other text with Chinese
    ("SPINET里用Somatuline治肺类癌，TTF对比placebo多少？"); else ``None`` (names,
    abbreviations or numbers alone: "SPINET?", "13.3?")."""
    english, chinese = len(_ENGLISH_WORD.findall(text)), cjk_count(text)
    if chinese:
        return "en" if english > chinese / 2 else "zh"
    return "en" if english else None


def answer_language(question: Question) -> Literal["zh", "en"]:
    """The language to answer in: the asker's choice (``Question.language``), else the
    question's own when it is clear, else the last user turn's that is, else Chinese."""
    if question.language is not None:
        return question.language
    for text in [
        question.text,
        *(t.content for t in reversed(question.history) if t.role == "user"),
    ]:
        if (language := clear_language(text)) is not None:
            return language
    return "zh"


class AnswerError(RuntimeError):
    """An answer could not be produced (e.g. the LLM endpoint failed); the message says why."""


class LLMUnavailableError(AnswerError):
    """The llm mode is not configured on this server."""


class LLMEndpointError(AnswerError):
    """The configured LLM endpoint failed while answering (connection, timeout, error status)."""


class LLMTimeoutError(LLMEndpointError):
    """The LLM endpoint did not answer within ``Settings.llm_timeout_s``."""


class AnswerMode(Protocol):
    """One way of answering; the HTTP layer and the LangChain runnable call only this.

    ``stream`` is the mode's one pipeline (retrieve, gate, select or generate and check);
    ``answer`` is its final ``Answer``.
    """

    name: AnswerModeName

    def answer(self, question: Question) -> Answer: ...

    def stream(self, question: Question) -> Iterator[AnswerPiece]: ...


def final_answer(pieces: Iterable[AnswerPiece]) -> Answer:
    """The complete ``Answer`` a stream of pieces ends with (every stream ends with one)."""
    final = None
    for piece in pieces:
        final = piece.answer or final
    if final is None:
        raise AnswerError("the answer stream ended without an answer")
    return final


def passage_marker(section: str) -> str:
    """The in-text marker for evidence without a reference number, e.g. ``[§3 化疗]``."""
    return f"[§{section}]"


def reference_markers(refs: Sequence[int]) -> str:
    """``[4][5]`` for refs (4, 5): one bracket per number so no client has to parse ranges."""
    return "".join(f"[{n}]" for n in refs)
