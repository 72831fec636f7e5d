"""What an answer says, as the metrics read it: its sentences, the claim each makes and the
citations each carries, and whether it is in the asker's language.

A lead-in that only frames the answer (``以下为综述原文摘录：``) claims nothing; an evidence
table's summary, header and rule say what the table holds, and each of its rows claims its
trial's name and values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from answer.table_mode import LEVEL_NOTE
from answer.tables import TABLE_RULE
from eval.correctness import fold_for_facts
from eval.qa_schema import REFERENCE_COUNT
from nenqa.text import (
    ANSWER,
    ANSWER_MARKER,
    CJK_RANGE,
    cited_numbers,
    detect_language,
    split_sentences,
    strip_markers,
)

# --- markers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CitationMarker:
    """One citation an answer sentence makes: a reference number or a passage (section)."""

    ref: int | None = None
    section: str | None = None

    @property
    def key(self) -> str:
        return str(self.ref) if self.ref is not None else f"§{self.section}"


def parse_answer_citations(text: str) -> list[CitationMarker]:
    """The citations written in answer text, in order, ranges expanded, each once."""
    found: dict[str, CitationMarker] = {}
    for match in ANSWER_MARKER.finditer(text):
        if match.group("refs") is not None:
            # A span wider than the reference list (2022-08-25, a date) is not a range: its
            # numbers are cited one by one, so they show up as invalid.
            for ref in cited_numbers(match.group("refs"), widest=REFERENCE_COUNT):
                found.setdefault(str(ref), CitationMarker(ref=ref))
        else:
            section = match.group("section").strip()
            found.setdefault(f"§{section}", CitationMarker(section=section))
    return list(found.values())


# --- sentences ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerSentence:
    """An answer sentence: as written, the claim it makes (markers removed), its citations;
    ``body`` is the text without a framing lead-in (the text itself when there is none)."""

    text: str
    claim: str
    citations: tuple[CitationMarker, ...]
    body: str = ""


# A lead-in before the first colon: one clause, no number, no citation outside parentheses
# (a translated answer's lead-in may say in parentheses how many quotes are untranslated).
_LEAD_IN = re.compile(
    r"^(?P<lead>(?:[^:：\d\[【,，;；(（]|[(（][^()（）\[\]【】:：]*[)）]){1,160})[:：]\s*(?=\S)"
)
# ... that only says where the answer comes from.
_FRAMING = re.compile(
    r"以下|如下|摘录|原文|综述|quoted|according to|the review|here is|here are|following",
    re.IGNORECASE,
)


def answer_sentences(answer: str) -> list[AnswerSentence]:
    """The sentences of an answer; a lead-in that only frames the answer is not a claim.

    ``以下为综述原文摘录：`` or ``Translated from the review's Chinese text (...):`` at the start
    states no fact, so it is dropped from the first sentence's claim: a lead-in before the
    first colon of one clause, without a number or citation, that names the source.
    """
    sentences = []
    texts = split_sentences(answer, ANSWER)
    # An evidence table's summary, header and rule say what the table holds; its rows claim.
    rules = [i for i, t in enumerate(texts) if TABLE_RULE.match(t)]
    table_lines = {i + d for i in rules for d in (-2, -1, 0)}
    for position, text in enumerate(texts):
        if position in table_lines:
            continue
        # A trial's level of evidence comes from its record, not from the quoted sentence.
        text = LEVEL_NOTE.sub("", text)
        claim, body = strip_markers(text), text
        if claim.lstrip().startswith("|"):  # a table row: its trial's name and its values
            cells = [c.strip() for c in claim.strip().strip("|").split("|")]
            # Each value is a clause of its own, as it sits in a cell of its own: the name is
            # not what a value is about (a Chinese name's words are not its values' context).
            claim = "，".join([cells[0], *_ROW_VALUE.findall(" ".join(cells[1:]))])
        first = position == 0 or texts[position - 1].lstrip().startswith("|")
        lead = _LEAD_IN.match(claim) if first else None
        if lead and _FRAMING.search(lead.group("lead")):
            framing = claim[: lead.end()]
            claim = claim[lead.end() :]
            body = text[len(framing) :] if text.startswith(framing) else claim
        if claim or parse_answer_citations(text):
            citations = tuple(parse_answer_citations(text))
            sentences.append(AnswerSentence(text, claim, citations, body))
    return sentences


_LETTER = re.compile(f"[A-Za-z{CJK_RANGE}]")
# The values of a table row (not a grade's digit, G1); its labels (design, arms, "not reported")
# come from the trial record, which tests/test_trials.py checks against the review.
_ROW_VALUE = re.compile(r"(?<![A-Za-z\d.\-])\d+(?:\.\d+)?%?(?![\-A-Za-z\d])")


def answered_in_language(answer: str, language: str, originals: Iterable[str] = ()) -> bool:
    """Whether the answer's own text is in ``language``: every sentence with words, except
    those quoting an ``original`` as printed (a translated answer may show its originals).

    A sentence's language is ``nenqa.text.detect_language``'s (Chinese text keeps its English
    abbreviations); an abstention is text like any other.
    """
    shown = [fold_for_facts(original) for original in originals]
    for sentence in answer_sentences(answer):
        said = strip_markers(sentence.body)  # a table row whole, not just its values
        if not _LETTER.search(said):
            continue
        if any(fold_for_facts(said) in original for original in shown):
            continue
        if detect_language(said) != language:
            return False
    return True
