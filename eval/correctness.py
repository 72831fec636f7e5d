"""Correctness of an answer's content: key facts present, abstaining where it should.

Key facts are compared in one folded form (``fold_for_facts``), in either language; the same
form finds key facts in retrieved chunks (``eval.retrieval``). Definitions and sources are in
``docs/evaluation.md``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from eval.qa_schema import QAItem
from nenqa.text import strip_markers

_FACT_FOLD = re.compile(r"[\s$]+")
# Hyphens, dashes and minus signs all read as "-"; the hyphen of a word (Ki-67, 12-month,
# multi-target) reads as the space it may be written as, which is folded away; a dash between
# numbers (3–4) stays a range.
_DASHES = re.compile(r"[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
_WORD_HYPHEN = re.compile(r"(?<=[^\W\d_])-|-(?=[^\W\d_])")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def fold_for_facts(text: str) -> str:
    """Text as key facts are compared, in either language: NFKC, lower case, no spaces, ``$``
    or citation markers, every dash a hyphen, a word's hyphen as a space, curly quotes straight.

    So ``12-month PFS rate`` matches ``12 month PFS rate``, ``Ki67`` matches ``Ki-67`` and
    ``3–4`` matches ``3-4``.
    """
    folded = unicodedata.normalize("NFKC", strip_markers(text)).translate(_QUOTES)
    folded = _DASHES.sub("-", folded)
    return _FACT_FOLD.sub("", _WORD_HYPHEN.sub(" ", folded)).lower()


def missing_key_facts(answer: str, facts: Sequence[str]) -> list[str]:
    """The key facts (strings as the review prints them) that the answer text lacks."""
    text = fold_for_facts(answer)
    return [fact for fact in facts if fold_for_facts(fact) not in text]


def must_abstain(item: QAItem) -> bool:
    """Out of scope: not answerable and nothing in the review to say about it."""
    return not item.answerable and not item.key_facts


def may_abstain(item: QAItem) -> bool:
    """Abstaining is correct for any unanswerable item (an injection may also be refused)."""
    return not item.answerable


@dataclass(frozen=True)
class AbstentionScores:
    """Abstention precision and recall; ``None`` where undefined (no abstention, nothing to
    abstain on)."""

    precision: float | None
    recall: float | None
    abstained: int
    must_abstain: int


def abstention_scores(decisions: Sequence[tuple[QAItem, bool]]) -> AbstentionScores:
    """Precision: abstentions on unanswerable items / abstentions;
    recall: out-of-scope items abstained on / out-of-scope items."""
    abstained = [item for item, did in decisions if did]
    required = [item for item, _ in decisions if must_abstain(item)]
    right = sum(may_abstain(item) for item in abstained)
    caught = sum(must_abstain(item) for item in abstained)
    return AbstentionScores(
        precision=_share(right, len(abstained)),
        recall=_share(caught, len(required)),
        abstained=len(abstained),
        must_abstain=len(required),
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
