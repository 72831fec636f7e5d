"""The text rules ingest, answers and eval share: language, sentences, citation markers, numbers,
unit IDs and the translation check.

One definition each, so the three can never disagree about what a sentence, an abbreviation, a
citation marker, a number, a language or a faithful rendering is. Where earlier copies differed,
the choice is noted at the rule. Ground layer: imports the standard library only (the glossary
a rendering check takes is passed in).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from nenqa.glossary import Glossary

# --- language ----------------------------------------------------------------------------------

# CJK ideographs (Extension A and the unified block); the copies that spanned \u3400-\u9fff also
# counted the Yijing hexagram symbols (\u4dc0-\u4dff), which are not Chinese text.
CJK_RANGE = "\u3400-\u4dbf\u4e00-\u9fff"
_CJK = re.compile(f"[{CJK_RANGE}]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> Literal["zh", "en"]:
    """``"zh"`` when Chinese characters carry the text (at least a quarter as many as Latin
    letters), else ``"en"``: ``兰瑞肽 lanreotide`` is Chinese, a title with one ``肽`` is not."""
    cjk, latin = cjk_count(text), len(_LATIN.findall(text))
    return "zh" if cjk and cjk * 4 >= latin else "en"


def has_cjk(text: str) -> bool:
    """Whether ``text`` contains any Chinese character."""
    return _CJK.search(text) is not None


def cjk_count(text: str) -> int:
    """How many Chinese characters ``text`` holds."""
    return len(_CJK.findall(text))


# --- abbreviations -----------------------------------------------------------------------------

# The union of the lists ingest, answers and eval kept apart ("et" was eval's alone, "figs" to
# "sr" ingest's alone): a full stop after any of them never ends a sentence anywhere.
EN_ABBREVIATIONS = frozenset(
    (
        "al et vs e.g i.e etc fig figs no nos dr mr ms prof approx ref refs vol inc ltd st jr sr"
    ).split()
)
_WORD_BEFORE_DOT = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def is_abbreviation(text: str, dot: int) -> bool:
    """Whether the full stop at ``text[dot]`` closes an abbreviation (``et al.``, ``vs.``,
    ``e.g.``) or an initial (``J. Smith``) rather than a sentence."""
    word = _WORD_BEFORE_DOT.search(text, 0, dot)
    if not word:
        return False
    token = word.group(1)
    return token.lower() in EN_ABBREVIATIONS or (len(token) == 1 and token.isupper())


# --- citation markers --------------------------------------------------------------------------

# The review's own markers, printed as superscripts: ^[7], ^[4-5], ^[13-16], ^[1,3].
REVIEW_MARKER = re.compile(r"\^\[(?P<body>\d+(?:\s*[-–—~～,，、]\s*\d+)*)\]")
# An answer's markers: [7], [4-5], [4, 5], 【7】 and passage markers [§3 化疗].
ANSWER_MARKER = re.compile(
    r"[\[【]\s*(?:(?P<refs>\d+(?:\s*[-–—~～,，、]\s*\d+)*)|§(?P<section>[^\]】]*))\s*[\]】]"
)
_LIST_SEPARATOR = re.compile(r"\s*[,，、]\s*")
_RANGE_SEPARATOR = re.compile(r"\s*[-–—~～]\s*")
MAX_CITED_NUMBER = 999_999_999
MAX_CITED_RANGE = 500
# LaTeX residue of the PDF extraction and what a reader sees instead.
_LATEX = (("$", ""), ("\\geq", "≥"), ("\\leq", "≤"), ("\\times", "×"), ("\\%", "%"))


def cited_numbers(body: str, *, widest: int) -> list[int]:
    """The numbers a marker body cites, in the order written: ``13-16`` → 13, 14, 15, 16;
    ``1,3`` → 1, 3; a reversed range reads in either order.

    A range spanning more than ``widest`` numbers is not one (a date such as ``2022-08-25``, a
    typo such as ``7-99999999``): its numbers are cited one by one, so a check against the
    reference list refuses them instead of expanding millions. A number of more than nine digits
    reads as ``MAX_CITED_NUMBER + 1`` (no reference list is that long; ``int()`` of thousands of
    digits would raise).
    """
    numbers: list[int] = []
    for part in _LIST_SEPARATOR.split(body):
        bounds = [
            int(digits) if len(digits) <= 9 else MAX_CITED_NUMBER + 1
            for digits in _RANGE_SEPARATOR.split(part)
            if digits
        ]
        if len(bounds) == 2 and max(bounds) - min(bounds) <= widest:
            numbers.extend(range(min(bounds), max(bounds) + 1))
        else:
            numbers.extend(bounds)
    return numbers


def parse_citation_markers(text: str) -> tuple[int, ...]:
    """Reference numbers cited by the review's ``^[n]`` markers in ``text``: ranges expanded,
    sorted, unique (``^[13-16]`` gives 13, 14, 15, 16)."""
    numbers = {
        n
        for marker in REVIEW_MARKER.finditer(text)
        for n in cited_numbers(marker.group("body"), widest=MAX_CITED_RANGE)
    }
    return tuple(sorted(numbers))


def strip_citation_markers(text: str) -> str:
    """``text`` without the review's ``^[n]`` markers (a quoted sentence as a model reads it)."""
    return REVIEW_MARKER.sub("", text)


def plain_latex(text: str) -> str:
    """The PDF extraction's LaTeX residue as a reader sees it: ``$\\geq 50\\%$`` → ``≥ 50%``."""
    for raw, shown in _LATEX:
        text = text.replace(raw, shown)
    return text


def strip_markers(text: str) -> str:
    """Text without answer markers, review markers or LaTeX residue: what a claim says.

    Spaces left before punctuation or doubled by a removed marker are tidied away.
    """
    text = plain_latex(ANSWER_MARKER.sub("", REVIEW_MARKER.sub("", text)))
    text = re.sub(r"[ \t]+(?=[.,;:。，；：])", "", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# --- numbers -----------------------------------------------------------------------------------

_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d.])")
# A quantity: digits not glued to letters and not part of a hyphenated name. This is the eval's
# pattern; the answer checks had read PD-1, Ki-67 and 5-FU as the numbers 1, 67 and 5, so a
# model sentence naming PD-1 needed a "1" in its evidence while the eval ignored it. A claim's
# numbers are its quantities (13.3 months, 40.4%, grade 3-4), never a drug or marker name.
NUMBER = re.compile(r"(?<![A-Za-z\d.])(?<![A-Za-z]-)\d+(?:\.\d+)?(?![A-Za-z\d])(?!-[A-Za-z])")


def singular(word: str) -> str:
    """An English word without its plural "s" (NETs, drugs, carcinomas); "ss" words kept."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def numbers_in(text: str) -> set[Decimal]:
    """The quantities in ``text``: ``28.0`` equals ``28``, ``40.4%`` is 40.4, ``1,000`` is 1000,
    ``3-4`` and ``3~4`` are 3 and 4.

    Names with digits (PD-1, PD-L1, Ki-67, 5-FU, G3, IMpower133, NCT02215447) and citation
    markers (``[7]``, ``^[4-5]``) are not numbers.
    """
    folded = unicodedata.normalize("NFKC", strip_markers(text))
    folded = _THOUSANDS.sub(lambda m: m.group().replace(",", ""), folded)
    values: set[Decimal] = set()
    for match in NUMBER.finditer(folded):
        try:
            values.add(Decimal(match.group()).normalize())
        except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
            continue
    return values


# --- sentences ---------------------------------------------------------------------------------

CLOSERS = "”’」』）)》】]"


@dataclass(frozen=True)
class SentenceRules:
    """Where sentences end: ``ends`` finds candidate ends (a full stop after an abbreviation is
    skipped), ``trailing`` what after an end still belongs to the sentence (matched repeatedly:
    citation markers and closing brackets stay with the sentence they close)."""

    ends: re.Pattern[str]
    trailing: re.Pattern[str]


_REVIEW_TRAILING = re.compile(rf"{REVIEW_MARKER.pattern}|[{re.escape(CLOSERS)}]")
# Evidence (the review's extracted text), Chinese: 。！？ and ；, which in the review separates
# statements that each carry their own citation markers.
EVIDENCE_ZH = SentenceRules(re.compile(r"[。！？；!?]"), _REVIEW_TRAILING)
# Evidence, English: . ! ? before a space and a capital, digit or Chinese character.
EVIDENCE_EN = SentenceRules(
    re.compile(rf"[.!?](?=[\"'”’)\]]*\s+[\"'“‘(\[]?[A-Z0-9{CJK_RANGE}])"), _REVIEW_TRAILING
)
# Answer text, either language at once: Chinese ends at 。！？ (not ；: a quoted review sentence
# keeps its clauses), English at "." before a space and a capital, digit, bracket or Chinese
# character; a line break always ends one. An answer's markers ([7], 【7】, ^[4-5]), possibly
# after a space, stay with the sentence before them.
_ANSWER_MARKER_AFTER = r"\^?\[[^\]\n]{1,40}\]|【[^】\n]{1,40}】"
ANSWER = SentenceRules(
    re.compile(
        r"[。！？!?]|\n+"
        rf"|\.(?=(?:\s*(?:{_ANSWER_MARKER_AFTER})|[\"'”’)])*"
        rf"\s+[\"'“‘(\[]?[A-Z0-9{CJK_RANGE}])"
    ),
    re.compile(rf"\s*(?:{_ANSWER_MARKER_AFTER}|[”’」』）)》])"),
)


def sentence_spans(text: str, rules: SentenceRules | None = None) -> list[tuple[int, int]]:
    """Half-open ``(start, end)`` ranges of the sentences of ``text``, whitespace around each
    excluded, in order.

    Without ``rules`` the text is evidence: ``EVIDENCE_ZH`` or ``EVIDENCE_EN`` by
    ``detect_language`` of the whole text (ingest splits a paragraph, so a chunk of it splits
    the same way). ``…的疗效。^[4]`` is one sentence; so is ``Smith et al. reported 13.3 vs.
    9.8 months.``
    """
    if rules is None:
        rules = EVIDENCE_ZH if detect_language(text) == "zh" else EVIDENCE_EN
    ends: set[int] = set()
    for match in rules.ends.finditer(text):
        if match.group() == "." and is_abbreviation(text, match.start()):
            continue
        end = match.end()
        while (more := rules.trailing.match(text, end)) and more.end() > end:
            end = more.end()
        ends.add(end)
    spans: list[tuple[int, int]] = []
    start = 0
    for end in [*sorted(ends), len(text)]:
        if end <= start:
            continue
        lo, hi = start, end
        while lo < hi and text[lo].isspace():
            lo += 1
        while hi > lo and text[hi - 1].isspace():
            hi -= 1
        if lo < hi:
            spans.append((lo, hi))
        start = end
    return spans


def split_sentences(text: str, rules: SentenceRules | None = None) -> list[str]:
    """The sentences of ``text`` as strings (``sentence_spans`` cut out)."""
    return [text[lo:hi] for lo, hi in sentence_spans(text, rules)]


# --- units and their renderings ----------------------------------------------------------------

# Whitespace and the ``$`` of LaTeX residue: the review prints ``$P>0.05$`` where a trial
# record's summary quotes the same sentence as ``P>0.05``; both are one unit.
_NOT_IN_UNIT_ID = re.compile(r"[\s$]+")


def unit_id(text: str) -> str:
    """The stable ID of a quotable unit: ``"u"`` and 16 hex digits of sha256 over the text
    NFKC-folded with all whitespace and ``$`` removed, so a re-ingest, another splitter's
    spacing or a quote without the LaTeX dollars gives the same ID."""
    folded = _NOT_IN_UNIT_ID.sub("", unicodedata.normalize("NFKC", text))
    return "u" + hashlib.sha256(folded.encode("utf-8")).hexdigest()[:16]


COMPARISON_SIGNS = "<>≤≥=±"


_DIGIT_RUN = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?!\d)")


def digit_runs(text: str) -> set[Decimal]:
    """Every number written in ``text``, names included (``PD-1`` gives 1, ``5th`` 5,
    ``12-month`` 12); citation markers are not numbers."""
    folded = unicodedata.normalize("NFKC", strip_markers(text))
    folded = _THOUSANDS.sub(lambda m: m.group().replace(",", ""), folded)
    return {Decimal(m.group()).normalize() for m in _DIGIT_RUN.finditer(folded)}


def cited_in(text: str) -> Counter[int]:
    """How often each reference number is cited in ``text``: the review's ``^[n]`` markers and
    an answer's ``[n]`` markers, ranges expanded."""
    counts: Counter[int] = Counter()
    for marker in REVIEW_MARKER.finditer(text):
        counts.update(cited_numbers(marker.group("body"), widest=MAX_CITED_RANGE))
    for marker in ANSWER_MARKER.finditer(REVIEW_MARKER.sub(" ", text)):
        if marker.group("refs"):
            counts.update(cited_numbers(marker.group("refs"), widest=MAX_CITED_RANGE))
    return counts


def comparison_signs(text: str) -> Counter[str]:
    """The comparison signs of ``text`` (full-width folded, ``\\geq`` read as ≥, ``\\leq`` as ≤)."""
    shown = strip_markers(unicodedata.normalize("NFKC", text))
    return Counter(c for c in shown if c in COMPARISON_SIGNS)


def rendering_problems(
    original: str,
    rendering: str,
    glossary: Glossary,
    target: Literal["zh", "en"] | None = None,
    *,
    waive: Collection[str] = (),
) -> list[str]:
    """What makes ``rendering`` an unfaithful translation of ``original``; empty when none.

    The one translation check (the shipped renderings' test, translation at ingest, the eval
    judge): the numbers are the same set (a number written into a name or compound of the
    other text, ``PD-1`` or ``12-month``, counts as present there); the cited reference
    numbers the same multiset; the comparison signs the same multiset; no Chinese character is
    left in an English rendering; every glossary term the original names appears in one of its
    ``target``-language forms or its abbreviation (a term without either keeps any of its
    forms). ``target`` defaults to the language the original is not in. ``waive`` names terms
    (by any of their forms) that the original uses only inside
    a longer word, e.g. ``一线`` in ``一线曙光``: a reviewed exception, never a default.
    """
    target = target or ("en" if detect_language(original) == "zh" else "zh")
    problems: list[str] = []
    # A quantity may be written into a compound or a name in the other language ("12个月的PFS率"
    # is "12-month PFS rate", "第5版" "5th edition", "程序性死亡[蛋白]-1" "PD-1"), so a number
    # counts as present wherever its digits stand whole; the quantities themselves are compared.
    if missing := numbers_in(original) - digit_runs(rendering):
        problems.append(f"numbers missing from the rendering: {_listed(missing)}")
    if added := numbers_in(rendering) - digit_runs(original):
        problems.append(f"numbers the original does not have: {_listed(added)}")
    cited, recited = cited_in(original), cited_in(rendering)
    if cited != recited:
        problems.append(
            f"citation markers differ: original cites {_listed(cited.elements())}, "
            f"rendering {_listed(recited.elements())}"
        )
    signs, resigned = comparison_signs(original), comparison_signs(rendering)
    if signs != resigned:
        problems.append(
            f"comparison signs differ: original {''.join(sorted(signs.elements())) or 'none'}, "
            f"rendering {''.join(sorted(resigned.elements())) or 'none'}"
        )
    if target == "en" and has_cjk(rendering):
        left = "".join(dict.fromkeys(_CJK.findall(rendering)))
        problems.append(f"Chinese characters left in the English rendering: {left[:20]}")
    for term in glossary.matches(original):
        if waive and any(form in waive for form in term.forms):
            continue
        # Abbreviations belong to both languages: the review's Chinese writes NEN and mPFS.
        forms = (*(term.zh if target == "zh" else term.en), *term.abbr) or term.forms
        if not any(_names_form(rendering, form, short=form in term.abbr) for form in forms):
            named = next((f for f in term.forms if f in original), term.forms[0])
            problems.append(f"glossary term {named} is not rendered as any of: {', '.join(forms)}")
    return problems


def _names_form(text: str, form: str, *, short: bool) -> bool:
    """Whether ``text`` names ``form``: a Chinese form anywhere, an English one as whole words
    (a plural counts), a short abbreviation case-sensitively."""
    text, form = unicodedata.normalize("NFKC", text), unicodedata.normalize("NFKC", form)
    if has_cjk(form):
        return form in text
    flags = 0 if short and len(form) <= 4 else re.IGNORECASE
    pattern = rf"(?<![A-Za-z0-9]){re.escape(form)}(?:e?s)?(?![A-Za-z0-9])"
    return re.search(pattern, text, flags) is not None


def _listed(values: Iterable[Decimal | int]) -> str:
    # ``:f`` so a normalised 100 prints as 100, not 1E+2.
    return ", ".join(f"{v:f}" if isinstance(v, Decimal) else str(v) for v in sorted(values))
