"""Answer metrics: ALCE citations, claim faithfulness, numbers, key facts, abstention.

Everything here reads an answer the way a clinician would: the text split into sentences, each
sentence with the citation markers it carries (``[7]``, ``[4-5]``, ``[§3 化疗]``), checked
against the evidence those markers point to in the same response. Definitions and sources are in
``docs/evaluation.md``; the short form:

- The evidence of ``[n]`` is every retrieved sentence that carries the review's marker ``^[n]``
  (plus a trial record's structured lines and a reference entry, which carry their refs); the
  evidence of ``[§section]`` is every retrieved sentence of that section without a marker.
- A citation is invalid when its number is outside 1-50, or it points to nothing retrieved.
  Invalid citations are counted apart and never count as evidence.
- Citation recall and precision follow ALCE (Gao et al. 2023) per answer, then are averaged over
  answers; faithfulness is the share of claims (RAGChecker, Ragas) supported by the evidence
  their sentence cites.
- A judge verdict of ``None`` (judge output that did not parse) is counted, never guessed: it
  leaves the denominator and is reported as ``judge_invalid``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from eval.answer_text import (
    AnswerSentence,
    CitationMarker,
    answer_sentences,
)
from eval.correctness import fold_for_facts
from eval.qa_schema import REFERENCE_COUNT
from ingest.trials import TRIAL_REVIEW_TEXT
from nenqa.text import (
    ANSWER,
    ANSWER_MARKER,
    CJK_RANGE,
    numbers_in,
    parse_citation_markers,
    split_sentences,
    strip_markers,
)

# Bracketed numbers in evidence that are bookkeeping, not claims: "参考文献 Refs: [9], [10]" and
# the "[1]" that opens a reference entry.
_EVIDENCE_BRACKETS = re.compile(r"\[\d+(?:\s*[-–,，]\s*\d+)*\]")
_TRIAL_REFS_LINE = re.compile(r"^参考文献 Refs:.*$", re.MULTILINE)

_CJK = re.compile(f"[{CJK_RANGE}]")
_CJK_GAP = re.compile(f"(?<=[{CJK_RANGE}])\\s+(?=[{CJK_RANGE}])")

# Commas inside numbers (1,000) do not cut a clause.
_CLAUSE_BREAK = re.compile(r"[，；;]|,(?!\d{3}\b)|(?<!\d),")


def clauses(claim: str, *, min_units: int = 4) -> list[str]:
    """A claim cut at commas and semicolons; a clause with fewer than ``min_units`` words joins
    the next (so ``In SPINET,`` stays with what it introduces)."""
    pieces = [p.strip() for p in _CLAUSE_BREAK.split(claim) if p.strip()]
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        piece = f"{carry}，{piece}" if carry else piece
        if len(text_units(piece)) + len(numbers_in(piece)) < min_units:
            carry = piece
            continue
        merged.append(piece)
        carry = ""
    if carry:
        if merged:
            merged[-1] = f"{merged[-1]}，{carry}"
        else:
            merged.append(carry)
    return merged


# --- normalised content: numbers, character bigrams, words -------------------------------------

_WORD = re.compile(r"[a-z][a-z0-9]*(?:[-'][a-z0-9]+)*|[\u3400-\u4dbf\u4e00-\u9fff]+")
ENGLISH_STOPWORDS = frozenset(
    """a an the of in on at by for to from with without and or but nor as is are was were be been
    being it its this that these those there their they them he she his her we our you your i
    which who whom whose what when where why how than then so such also both either neither
    each all any some no not only very more most less least into over under between among
    after before during while about against per via vs versus can could may might will would
    shall should do does did has have had""".split()
)


def normalise(text: str) -> str:
    """NFKC, lower case, markers and LaTeX residue removed (the form every comparison uses)."""
    return unicodedata.normalize("NFKC", strip_markers(text)).lower()


def text_units(text: str) -> set[str]:
    """What overlap is measured in: Chinese character bigrams and English content words."""
    units: set[str] = set()
    # Spacing between Chinese characters is layout, not a word break.
    folded = _CJK_GAP.sub("", normalise(text))
    for word in _WORD.findall(folded):
        if _CJK.match(word):
            units.update([word[i : i + 2] for i in range(len(word) - 1)] or [word])
        elif word not in ENGLISH_STOPWORDS and len(word) > 1:
            units.add(word)
    return units


def format_number(value: Decimal) -> str:
    return format(value, "f")


# --- evidence ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceUnit:
    """One sentence of retrieved evidence and the reference numbers it carries."""

    text: str
    refs: frozenset[int]
    section: str
    chunk_id: str


def evidence_units(evidence: Sequence[Mapping]) -> list[EvidenceUnit]:
    """Split the response's evidence (``/v1/chat`` ``evidence`` items) into citable sentences.

    A passage sentence carries the refs of its own ``^[n]`` markers; a trial record's structured
    lines carry the record's refs and its quoted review text is split like a passage; a
    reference-list entry is one unit carrying its number. Evidence shown in translation is
    read as the review prints it (its ``original``).
    """
    units: list[EvidenceUnit] = []
    for item in evidence:
        text, kind = str(item.get("original") or item.get("text", "")), item.get("kind", "passage")
        section, chunk_id = str(item.get("section", "")), str(item.get("chunk_id", ""))
        refs = frozenset(int(r) for r in item.get("refs", ()))
        if kind == "reference":
            units.append(EvidenceUnit(_clean_evidence(text), refs, section, chunk_id))
            continue
        if kind == "trial":
            record, _, text = text.partition(TRIAL_REVIEW_TEXT)
            record = _clean_evidence(_TRIAL_REFS_LINE.sub("", record))
            if record:
                units.append(EvidenceUnit(record, refs, section, chunk_id))
        # Evidence is cut with the answer rules the eval has always used (。！？ and line
        # breaks, not ；), so its units and scores stay comparable across runs.
        for sentence in split_sentences(text, ANSWER):
            own = frozenset(parse_citation_markers(sentence))
            cleaned = _clean_evidence(sentence)
            if cleaned:
                units.append(EvidenceUnit(cleaned, own, section, chunk_id))
    return units


def _clean_evidence(text: str) -> str:
    return _EVIDENCE_BRACKETS.sub("", strip_markers(text)).strip()


@dataclass(frozen=True)
class CitedEvidence:
    """What each citation of one response points to, and which citations are invalid."""

    by_key: Mapping[str, tuple[str, ...]]
    retrieved_refs: frozenset[int]
    retrieved_sections: frozenset[str]

    @classmethod
    def from_units(
        cls, units: Sequence[EvidenceUnit], retrieved_refs: Iterable[int]
    ) -> CitedEvidence:
        by_key: dict[str, list[str]] = {}
        for unit in units:
            for ref in unit.refs:
                _append_once(by_key.setdefault(str(ref), []), unit.text)
            if not unit.refs:
                _append_once(by_key.setdefault(f"§{unit.section}", []), unit.text)
        return cls(
            by_key={k: tuple(v) for k, v in by_key.items()},
            retrieved_refs=frozenset(retrieved_refs),
            retrieved_sections=frozenset(u.section for u in units),
        )

    def invalid_reason(self, citation: CitationMarker) -> str | None:
        """Why a citation is invalid (outside 1-50, not retrieved), or ``None`` when valid."""
        if citation.ref is not None:
            if not 1 <= citation.ref <= REFERENCE_COUNT:
                return f"[{citation.ref}] is outside 1-{REFERENCE_COUNT}"
            if citation.ref not in self.retrieved_refs:
                return f"[{citation.ref}] is not among the retrieved evidence's references"
            return None
        if citation.section not in self.retrieved_sections:
            return f"[§{citation.section}] names no retrieved passage"
        return None

    def texts(self, citations: Iterable[CitationMarker]) -> tuple[str, ...]:
        """The evidence sentences of ``citations`` together, each once, in citation order."""
        texts: list[str] = []
        for citation in citations:
            for text in self.by_key.get(citation.key, ()):
                _append_once(texts, text)
        return tuple(texts)


def cited_evidence(evidence: Sequence[Mapping]) -> CitedEvidence:
    """The ``CitedEvidence`` of one ``/v1/chat`` response's ``evidence`` list."""
    refs = {int(r) for item in evidence for r in item.get("refs", ())}
    return CitedEvidence.from_units(evidence_units(evidence), refs)


def _append_once(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


# --- the judge interface -----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A support decision; ``supported is None`` means the judge's output did not parse."""

    supported: bool | None
    reason: str = ""


class RenderingCheck(Protocol):
    """Decides whether a translated sentence renders its original faithfully."""

    def check_rendering(self, original: str, rendering: str) -> Verdict: ...


class SupportJudge(Protocol):
    """Decides whether evidence supports a claim, and cuts a sentence into claims."""

    name: str

    def judge(self, claim: str, evidence: Sequence[str]) -> Verdict: ...

    def claims(self, sentence: str) -> list[str] | None:
        """The sentence's atomic claims, or ``None`` when the judge's output did not parse."""
        ...


# --- scoring one answer ------------------------------------------------------------------------


# --- renderings: answer sentences that translate a quoted original ----------------------------


# The least share of a quote's text a sentence inside it must be to be that quote, printed.
_PRINTED_SHARE = 1 / 3


@dataclass(frozen=True)
class QuotedRendering:
    """A quote an answer shows in translation: the quote's ``text`` and the ``original`` it
    renders (a ``/v1/chat`` citation or passage quote that carries an ``original``)."""

    text: str
    original: str


def rendered_quotes(
    sentences: Sequence[AnswerSentence], renderings: Sequence[QuotedRendering]
) -> list[QuotedRendering | None]:
    """For each answer sentence, the quote it prints in translation (``None``: none).

    A sentence prints a quote when its claim holds all of the quote's text, or is a part of it
    at least ``_PRINTED_SHARE`` long (a rendering may read as two sentences); markers, LaTeX
    residue, case and spacing are folded. A shorter part is the model's own sentence restating
    a fact of the quote ("24.2 months [26]." before the Keynote-158 quote), judged as a claim.
    """
    folded = [(fold_for_facts(r.text), r) for r in renderings]
    found: list[QuotedRendering | None] = []
    for sentence in sentences:
        claim = fold_for_facts(sentence.claim)
        match = next(
            (
                r
                for text, r in folded
                if claim
                and text
                and (text in claim or (claim in text and len(claim) >= _PRINTED_SHARE * len(text)))
            ),
            None,
        )
        found.append(match)
    return found


def _rendering_verdicts(
    sentences: Sequence[AnswerSentence],
    quotes: Sequence[QuotedRendering | None],
    check: RenderingCheck,
) -> list[Verdict | None]:
    """The translation verdict of each sentence: sentences in a row printing the same quote
    are checked together, as the one rendering they are, against its original."""
    verdicts: list[Verdict | None] = [None] * len(sentences)
    start = 0
    while start < len(sentences):
        quote, end = quotes[start], start + 1
        while quote is not None and end < len(sentences) and quotes[end] == quote:
            end += 1
        if quote is not None:
            # A passage marker names the section the quote stands in, in the review's language:
            # it is a citation, not translated text.
            printed = ANSWER_MARKER.sub(
                lambda m: "" if m.group("section") is not None else m.group(),
                " ".join(s.body or s.text for s in sentences[start:end]),
            )
            verdicts[start:end] = [check.check_rendering(quote.original, printed)] * (end - start)
        start = end
    return verdicts


@dataclass
class ClaimScore:
    claim: str
    supported: bool | None
    reason: str = ""


@dataclass
class SentenceScore:
    """One answer sentence: its citation checks, numbers and claims."""

    text: str
    citations: list[str]
    invalid: dict[str, str]
    supported: bool | None
    reason: str = ""
    judged: bool = False
    needed: dict[str, bool | None] = field(default_factory=dict)
    numbers: list[str] = field(default_factory=list)
    missing_numbers: list[str] = field(default_factory=list)
    claims: list[ClaimScore] = field(default_factory=list)
    claims_invalid: bool = False
    # A sentence printing a quote in translation: the original and what the check found.
    original: str | None = None
    translation_problems: list[str] = field(default_factory=list)


@dataclass
class AnswerScore:
    """The citation, faithfulness and number scores of one answer (``None``: not applicable)."""

    sentences: list[SentenceScore]
    citation_recall: float | None
    citation_precision: float | None
    faithfulness: float | None
    numeric_fidelity: float | None
    citations: int
    invalid_citations: int
    judge_invalid: int
    renderings_checked: int = 0
    renderings_faithful: int = 0

    @property
    def rendering_fidelity(self) -> float | None:
        """Translated quotes that pass the translation check / translated quotes."""
        return _share(self.renderings_faithful, self.renderings_checked)


def score_answer(
    answer: str,
    evidence: Sequence[Mapping],
    judge: SupportJudge,
    renderings: Sequence[QuotedRendering] = (),
    rendering_check: RenderingCheck | None = None,
) -> AnswerScore:
    """Score one non-abstained answer against the evidence of its own response.

    Citation recall: supported sentences / sentences; precision: needed citations / valid
    citations (ALCE: a citation of an unsupported sentence is not needed; with several, one is
    not needed when it does not support the sentence alone and the others still do).

    A sentence printing one of ``renderings`` is a translation: ``rendering_check`` verifies it
    against the original (numbers, markers, signs, glossary terms); one that fails is
    unsupported, one that passes is judged as its original (the evidence is the review's
    text). Without a ``rendering_check`` every sentence is judged as written.
    """
    cited = cited_evidence(evidence)
    parsed = answer_sentences(answer)
    quotes: list[QuotedRendering | None] = [None] * len(parsed)
    verdicts: list[Verdict | None] = [None] * len(parsed)
    if rendering_check is not None and renderings:
        quotes = rendered_quotes(parsed, renderings)
        verdicts = _rendering_verdicts(parsed, quotes, rendering_check)
    sentences = [
        _score_sentence(s, cited, judge, q, v)
        for s, q, v in zip(parsed, quotes, verdicts, strict=True)
    ]
    checked = {q: v for q, v in zip(quotes, verdicts, strict=True) if q is not None and v}
    judged = [s for s in sentences if s.supported is not None]
    needed = [v for s in sentences for v in s.needed.values() if v is not None]
    claims = [c for s in sentences for c in s.claims if c.supported is not None]
    numbers = sum(len(s.numbers) for s in sentences)
    missing = sum(len(s.missing_numbers) for s in sentences)
    valid_citations = sum(len(s.citations) - len(s.invalid) for s in sentences)
    # Each judge call that gave no verdict counts once (a sentence's citations inherit its
    # verdict when there is only one, so they are not counted again).
    judge_invalid = sum(
        (s.supported is None)
        + (s.supported is not None) * sum(v is None for v in s.needed.values())
        + s.claims_invalid
        + sum(c.supported is None for c in s.claims)
        for s in sentences
    )
    if needed:
        precision: float | None = sum(needed) / len(needed)
    else:
        # ALCE: an answer without a (valid) citation has precision 0.
        precision = None if valid_citations or not sentences else 0.0
    return AnswerScore(
        sentences=sentences,
        citation_recall=_share(sum(bool(s.supported) for s in judged), len(judged)),
        citation_precision=precision,
        faithfulness=_share(sum(bool(c.supported) for c in claims), len(claims)),
        numeric_fidelity=_share(numbers - missing, numbers),
        citations=sum(len(s.citations) for s in sentences),
        invalid_citations=sum(len(s.invalid) for s in sentences),
        judge_invalid=judge_invalid,
        renderings_checked=len(checked),
        renderings_faithful=sum(bool(v.supported) for v in checked.values()),
    )


def _score_sentence(
    sentence: AnswerSentence,
    cited: CitedEvidence,
    judge: SupportJudge,
    quote: QuotedRendering | None = None,
    translation: Verdict | None = None,
) -> SentenceScore:
    invalid = {c.key: r for c in sentence.citations if (r := cited.invalid_reason(c))}
    valid = [c for c in sentence.citations if c.key not in invalid]
    score = SentenceScore(
        text=sentence.text,
        citations=[c.key for c in sentence.citations],
        invalid=invalid,
        supported=False,
    )
    evidence = cited.texts(valid)
    found = numbers_in("\n".join(evidence))
    numbers = numbers_in(sentence.claim)
    score.numbers = sorted(format_number(n) for n in numbers)
    score.missing_numbers = sorted(format_number(n) for n in numbers - found)
    # A checked translation stands for its original, which is judged against the review's
    # own words; a translation that fails the check supports nothing.
    claim = sentence.claim
    if quote is not None and translation is not None:
        score.original = quote.original
        if not translation.supported:
            score.translation_problems = translation.reason.split("; ")
            score.reason = f"unfaithful translation: {translation.reason}"
            score.judged = bool(valid)
            score.needed = {c.key: False for c in valid}
            score.claims = [ClaimScore(claim, False, score.reason)]
            return score
        claim = strip_markers(quote.original)
    if not valid:
        score.reason = "cites no valid evidence"
    else:
        verdict = judge.judge(claim, evidence)
        score.supported, score.reason, score.judged = verdict.supported, verdict.reason, True
        score.needed = _needed_citations(claim, valid, cited, judge, verdict)
    claims = judge.claims(claim)
    if claims is None:
        score.claims_invalid = True
    else:
        for claim in claims:
            if not evidence:
                score.claims.append(ClaimScore(claim, False, "cites no valid evidence"))
                continue
            verdict = judge.judge(claim, evidence)
            score.claims.append(ClaimScore(claim, verdict.supported, verdict.reason))
    return score


def _needed_citations(
    claim: str,
    valid: Sequence[CitationMarker],
    cited: CitedEvidence,
    judge: SupportJudge,
    joint: Verdict,
) -> dict[str, bool | None]:
    if joint.supported is None:
        return {c.key: None for c in valid}
    if not joint.supported or len(valid) == 1:
        return {c.key: bool(joint.supported) for c in valid}
    needed: dict[str, bool | None] = {}
    for citation in valid:
        alone = judge.judge(claim, cited.texts([citation]))
        if alone.supported is None:
            needed[citation.key] = None
        elif alone.supported:
            needed[citation.key] = True
        else:
            rest = judge.judge(claim, cited.texts([c for c in valid if c != citation]))
            needed[citation.key] = None if rest.supported is None else not rest.supported
    return needed


def _share(part: int | float, whole: int) -> float | None:
    return part / whole if whole else None
