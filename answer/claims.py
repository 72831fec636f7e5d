"""What a model's sentence may say, given the evidence sentences it restates.

The llm mode's model writes plain sentences; ``ClaimChecker.align`` finds the evidence
sentence(s) each one restates (shared numbers, shared named terms, shared words) and the code
cites them; a sentence restating nothing is removed. Then the checks a clinician would trip on,
each against the aligned evidence only (its text in the answer's language and as printed, plus
the trial records that print it):

- every number occurs in the evidence (``nenqa.text.numbers_in``);
- every drug, regimen, trial and endpoint it names is named there (``NamedTermCheck``);
- no claim word the evidence does not make: cures, doubles, all patients (``ClaimWordCheck``);
- each number keeps its endpoint and its arm: "ORR 82.1%" where the evidence gives DCR 82.1%,
  or placebo's 9.8 months given to lanreotide, is removed (``number_bindings``);
- no "better" where the evidence says worse, and the reverse (``DIRECTION``);
- no dropped or added negation ("did not improve" restated as "improved");
- no placeholder of a prompt's example ("study X", "drug A", "药物B") the evidence lacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from answer.citations import QuotedSentence
from nenqa.glossary import Glossary, Term, normalize_text
from nenqa.text import NUMBER, numbers_in, strip_markers
from nenqa.types import TrialRecord
from retriever.lexical import tokenize

# A sentence cites at most this many evidence sentences (its best match, then what its
# numbers and names need).
MAX_ALIGNED = 3
# Share of a sentence's words an evidence sentence must hold to align without a shared number
# or name, and with one. Chosen on the tune half of the recorded drafts by
# ``benchmarks/tune_claims.py`` (highest faithfulness, then key facts; since the third session
# with the tune halves of the held-out paraphrase runs too): a sentence that restates its
# evidence in other words is left out and the quote it restates is kept in its place.
MIN_WORD_SHARE = 0.9
MIN_WORD_SHARE_WITH_ANCHOR = 0.7

_ENDPOINT_TYPES = frozenset({"endpoint"})
_ARM_TYPES = frozenset({"drug", "regimen"})
_PARENTHESIS = re.compile(r"[(（][^()（）]*[)）]")
# Where one statement about a number ends and the next begins.
_CLAUSE_END = re.compile(
    r"[,，;；:：。!?！？]|\s(?:versus|vs\.?|whereas|while|compared with)\s|而|相比之下", re.I
)
_RESPECTIVELY = re.compile(r"分别|respectively", re.I)
# One comparison of two arms' values: "19.4个月 vs 7.6个月", "未达到 vs 41.9个月", "not reached
# versus 41.9 months".
_SIDE = r"(\d+(?:\.\d+)?|未达到|not reached)"
_COMPARISON = re.compile(rf"{_SIDE}\s*(?:个月|%|months?)?\s*(?:vs\.?|versus)\s*{_SIDE}", re.I)
# Words that say which arm or group a number belongs to (兰瑞肽组, the placebo arm).
_GROUP_WORD = re.compile(r"组|\b(?:arms?|groups?|cohorts?|placebo|control)\b", re.I)
# Prefixes that make a word's opposite group (atypical, non-pancreatic, unresectable), with the
# shortest word they negate ("a" + "live" is no group).
_NEGATING_PREFIXES = (("non-", 4), ("non", 4), ("un", 4), ("a", 5))

# Direction words (each family: Chinese, English). "Better" where the evidence says worse is
# a claim the number check cannot see.
_BETTER = (
    ("优于", "改善", "延长", "提高", "更好", "更长", "更高", "获益"),
    (
        "better", "superior", "improved", "improves", "improve", "prolonged", "prolongs",
        "longer", "higher", "increased", "benefit", "benefited",
    ),
)  # fmt: skip
_WORSE = (
    ("劣于", "差于", "缩短", "更差", "更短", "更低", "不如", "恶化"),
    ("worse", "inferior", "shorter", "poorer", "lower", "decreased", "worsened"),
)
DIRECTION = (_BETTER, _WORSE)

# Negation cues; "无进展生存期" (progression-free), "不良反应" (adverse events) and "未经治疗"
# (untreated) are names, not negations, and "未达到" (not reached) is a median's value.
_NEGATION = re.compile(
    r"未(?!经|达到)|没有|并非|无(?:显著|统计学|明显|差异|获益|改善|效)|差异无|不(?:能|显著|明显|优于|足|佳)"
    r"|\b(?:not(?! reached)|no|never|neither|nor|without|failed to|did not|does not|cannot)\b|n't",
    re.I,
)
# A placeholder of a worked example: "study X", "drug A", "研究X", "药物B", "{question}"; or a
# tag of the prompt ("根据<evidence>，…"): markup no reader should see.
# A letter or a Chinese character: a sentence without one outside its numbers says no more
# than "32." (what was 32 is left to the reader).
_WORD = re.compile(r"[A-Za-z\u4e00-\u9fff]")
_PLACEHOLDER = re.compile(
    r"\b(?:study|trial|drug|arm|group|regimen|treatment|patient)\s+[A-Z]\b(?![-.]\w)"
    r"|(?:研究|药物|试验|方案|治疗)[A-ZＡ-Ｚ](?![A-Za-z\d])|\{[a-z_]+\}|\bX{2,}\b|</?[a-z_]+>",
)


@dataclass(frozen=True)
class Aligned:
    """A model sentence and the evidence it restates (empty when it restates none)."""

    claim: str
    cited: tuple[QuotedSentence, ...]
    problem: str = ""

    @property
    def supported(self) -> bool:
        return bool(self.cited) and not self.problem


def evidence_texts(quoted: QuotedSentence) -> list[str]:
    """The texts a claim is checked against: the rendering shown (if any) and the printed one."""
    texts = [quoted.rendering] if quoted.rendering else []
    return [strip_markers(t) for t in [*texts, quoted.sentence.text]]


class NamedTermCheck:
    """A sentence may name a drug, regimen, trial or endpoint only if its evidence does.

    Terms are the glossary's (``data/glossary.tsv``: Chinese, English and abbreviated forms of
    one concept), so an English sentence is checked against Chinese evidence. Two terms count as
    the same when a form of one contains a form of the other (``PFS`` in ``mPFS``, ``兰瑞肽`` in
    ``长效兰瑞肽``).
    """

    types = frozenset({"drug", "regimen", "trial", "endpoint"})

    def __init__(self, glossary: Glossary) -> None:
        self.glossary = glossary

    def named(self, text: str) -> list[Term]:
        return [t for t in self.glossary.matches(text) if t.type in self.types]

    def missing(self, claim: str, cited_texts: Sequence[str]) -> list[str]:
        """The checked terms ``claim`` names that no cited text names, as the claim writes them."""
        named = self.named(claim)
        if not named:
            return []
        present = self.glossary.matches(" ".join(cited_texts))
        return [
            shown_form(term, claim)
            for term in named
            if not any(same_concept(term, other) for other in present)
        ]


# Claims stronger than trial results usually are, in both languages (each tuple one concept:
# Chinese forms, English forms). A sentence may make one only if its evidence does.
_CLAIM_CONCEPTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("治愈", "根治", "痊愈"), ("cure", "cures", "cured", "curing", "curative")),
    (("翻倍", "一倍", "两倍"), ("double", "doubles", "doubled", "doubling", "twofold", "two-fold")),
    (("消除", "根除"), ("eradicate", "eradicates", "eradicated", "eliminates", "eliminated")),
    (("保证", "确保"), ("guarantee", "guarantees", "guaranteed")),
    (("所有患者", "全部患者", "每位患者"), ("all patients", "every patient")),
    (("最有效", "最佳疗效"), ("most effective", "best treatment")),
)


class ClaimWordCheck:
    """A sentence may say a drug cures, doubles, eradicates ... only if its evidence does.

    The named-term and number checks pass "舒尼替尼可以治愈NEC。" when the evidence names sunitinib
    and the sentence has no number; the 1.5B model wrote exactly that when a question told it
    to (docs/benchmarks.md, "Prompt tuning"). The concepts are few and bilingual.
    """

    def __init__(self) -> None:
        self.concepts = Glossary(Term(zh, en, (), "claim") for zh, en in _CLAIM_CONCEPTS)

    def unsupported(self, claim: str, cited_texts: Sequence[str]) -> list[str]:
        """The claim words of ``claim`` that no cited text makes, as the claim writes them."""
        made = self.concepts.matches(claim)
        if not made:
            return []
        present = self.concepts.matches(" ".join(cited_texts))
        return [shown_form(term, claim) for term in made if term not in present]


def same_concept(term: Term, other: Term) -> bool:
    """One term, or one form inside the other's (OS in mOS), but not its opposite group
    (典型类癌 in 非典型类癌, typical in atypical carcinoid)."""
    if term == other:
        return True
    return any(
        (_contains(a, b) and not _negated_in(a, b)) or (_contains(b, a) and not _negated_in(b, a))
        for a in term.forms
        for b in other.forms
    )


def _negated_in(outer: str, inner: str) -> bool:
    """Whether ``inner`` stands in ``outer`` right after a negating prefix (非, a, non-, un)."""
    folded, needle = outer.casefold(), inner.casefold()
    at = folded.find(needle)
    if at <= 0:
        return False
    before = folded[:at]
    return before.endswith("非") or any(
        before.endswith(prefix) and not before[: -len(prefix)][-1:].isalpha()
        for prefix, _ in _NEGATING_PREFIXES
    )


def _contains(outer: str, inner: str) -> bool:
    # Short forms are abbreviations: case matters ("OS" is in "mOS", not in "etoposide").
    if len(inner) <= 4:
        return inner in outer
    return inner.casefold() in outer.casefold()


def shown_form(term: Term, claim: str) -> str:
    """The longest form of ``term`` the claim contains ("cures", not "cure")."""
    folded = claim.casefold()
    return max((f for f in term.forms if f.casefold() in folded), key=len, default=term.forms[0])


def number_bindings(
    text: str, terms: Sequence[Term], *, nearest: bool
) -> dict[Decimal, list[Term]]:
    """Which of ``terms`` (endpoints, or arms) each number of ``text`` is stated for.

    Per clause: one term there binds every number of the clause; with "分别"/"respectively"
    and as many terms as numbers, they pair in order; with several terms and ``nearest`` (for
    endpoints, written before their value in both languages) a number takes the last term
    before it; otherwise the number is unbound and not checked. With ``nearest``, a clause
    naming no term continues the last one named before it in the text ("PFS was 21.9 months
    in typical carcinoids, and 13.8 months in atypical ones": both are PFS).
    """
    folded = normalize_text(_PARENTHESIS.sub(lambda m: re.sub(r"[,，]", " ", m.group()), text))
    respectively = bool(_RESPECTIVELY.search(folded))
    bindings: dict[Decimal, list[Term]] = {}
    start = 0
    carried: Term | None = None  # the last term named in an earlier clause (``nearest`` only)
    for end in [*(m.start() for m in _CLAUSE_END.finditer(folded)), len(folded)]:
        clause, start = folded[start:end], end + 1
        mentions = _mentions(clause, terms)
        numbers = [(m.start(), _decimal(m.group())) for m in NUMBER.finditer(clause)]
        distinct = [t for i, (_, t) in enumerate(mentions) if i == 0 or mentions[i - 1][1] != t]
        for index, (position, value) in enumerate(numbers):
            if len(set(distinct)) == 1:
                bound = distinct[0]
            elif respectively and len(distinct) == len(numbers):
                bound = distinct[index]
            elif nearest and distinct:
                before = [t for at, t in mentions if at < position]
                bound = before[-1] if before else carried
            else:
                bound = carried if nearest and not distinct else None
            if bound is not None and value is not None:
                bindings.setdefault(value, []).append(bound)
        if mentions:
            carried = mentions[-1][1]
    return bindings


def _mentions(clause: str, terms: Sequence[Term]) -> list[tuple[int, Term]]:
    """Where each term occurs in a folded clause, in order; a form inside a longer one's span
    (无进展生存期 in 中位无进展生存期) is left out."""
    spans: list[tuple[int, int, Term]] = []
    for term in terms:
        for form in term.forms:
            needle = normalize_text(form)
            for match in re.finditer(re.escape(needle), clause):
                spans.append((match.start(), match.end(), term))
    kept = [
        (lo, hi, term)
        for lo, hi, term in spans
        if not any(a <= lo and hi <= b and (b - a) > (hi - lo) for a, b, _ in spans)
    ]
    return [(lo, term) for lo, _, term in sorted(kept, key=lambda s: (s[0], -s[1]))]


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text).normalize()
    except InvalidOperation:  # pragma: no cover - NUMBER only matches numbers
        return None


def _direction(text: str) -> set[int]:
    folded = text.casefold()
    found = set()
    for family, (zh, en) in enumerate(DIRECTION):
        if any(w in text for w in zh) or any(re.search(rf"\b{w}\b", folded) for w in en):
            found.add(family)
    return found


class ClaimChecker:
    """Aligns a model's sentence with the evidence it was shown and checks it (module doc)."""

    def __init__(self, glossary: Glossary | None, records: Iterable[TrialRecord] = ()) -> None:
        self.glossary = glossary
        self.terms = NamedTermCheck(glossary) if glossary is not None else None
        self.claim_words = ClaimWordCheck()
        self.records = list(records)

    def align(self, claim: str, shown: Sequence[QuotedSentence]) -> Aligned:
        """The evidence ``claim`` restates, best first, or none; then every check on it."""
        claim = " ".join(claim.split())
        scored = [(self._affinity(claim, q), i, q) for i, q in enumerate(shown)]
        aligned = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
        if not aligned:
            return Aligned(claim, (), "restates none of the evidence it was given")
        cited = [aligned[0][2]]
        claim_numbers = numbers_in(claim)
        for _, _, quoted in aligned[1:]:
            if len(cited) >= MAX_ALIGNED:
                break
            missing = claim_numbers - self._numbers(cited)
            names = self.terms.missing(claim, self._texts(cited)) if self.terms else []
            adds_number = bool(missing & self._numbers([quoted]))
            adds_name = bool(names) and not self.terms.missing(  # type: ignore[union-attr]
                " ".join(names), evidence_texts(quoted)
            )
            if adds_number or adds_name:
                cited.append(quoted)
        ordered = tuple(q for q in shown if q in cited)
        return Aligned(claim, ordered, self.problem(claim, ordered))

    def problem(self, claim: str, cited: Sequence[QuotedSentence]) -> str:
        """Why ``claim`` may not stand on ``cited``, or ``""`` when it may."""
        texts = self._texts(cited)
        if not _WORD.search(NUMBER.sub("", claim)):
            return "a number alone, without what it measures"
        if missing := numbers_in(claim) - self._numbers(cited):
            return (
                f"numbers not in its evidence: {', '.join(sorted(format(n, 'f') for n in missing))}"
            )
        if self.terms is not None and (names := self.terms.missing(claim, texts)):
            return f"names what its evidence does not: {', '.join(names)}"
        if overclaims := self.claim_words.unsupported(claim, texts):
            return f"claims what its evidence does not: {', '.join(overclaims)}"
        if placeholders := [p for p in _PLACEHOLDER.findall(claim) if not _in_any(p, texts)]:
            return f"holds a placeholder, not evidence: {', '.join(placeholders)}"
        if wrong := self._misbound(claim, cited):
            return wrong
        if lone := self._lone_side(claim, texts):
            return lone
        claimed, stated = _direction(claim), set().union(*(_direction(t) for t in texts))
        if claimed and stated and not claimed & stated:
            return "says better where its evidence says worse, or the reverse"
        for clause, closest in self._closest_clauses(claim, texts):
            if _NEGATION.search(closest) and not _NEGATION.search(clause):
                return "drops a negation its evidence states"
            if _NEGATION.search(clause) and not _NEGATION.search(closest):
                return "states a negation its evidence does not"
            if flipped := flipped_group(clause, closest):
                return flipped
        return ""

    def _misbound(self, claim: str, cited: Sequence[QuotedSentence]) -> str:
        """A number the claim gives for another endpoint or arm than its evidence does."""
        if self.glossary is None:
            return ""
        texts = self._texts(cited)
        terms = self.glossary.matches(" ".join([claim, *texts]))
        # Endpoints are written before their value in both languages; arms on either side.
        for kind, nearest in (("endpoint", True), ("arm", False)):
            kind_terms = [t for t in terms if _of_kind(t, kind)]
            claimed = number_bindings(claim, kind_terms, nearest=nearest)
            if not claimed:
                continue
            stated: dict[Decimal, list[Term]] = {}
            for text in texts:
                for value, bound in number_bindings(text, kind_terms, nearest=nearest).items():
                    stated.setdefault(value, []).extend(bound)
            for value, bound in self._record_bindings(cited, kind).items():
                stated.setdefault(value, []).extend(bound)
            for value, said in claimed.items():
                given = stated.get(value, [])
                for term in said:
                    if given and not any(same_concept(term, g) for g in given):
                        return (
                            f"gives {format(value, 'f')} for {shown_form(term, claim)}; its "
                            f"evidence gives it for {given[0].forms[0]} ({kind})"
                        )
        return ""

    def _lone_side(self, claim: str, texts: Sequence[str]) -> str:
        """A number that is one side of a comparison in its evidence (未达到 vs 41.9个月), given
        with neither its arm nor the other side: "OS was 41.9 months" reads as the drug asked
        about, when it was placebo's."""
        if self.glossary is None or _GROUP_WORD.search(claim):
            return ""
        if any(_of_kind(t, "arm") for t in self.glossary.matches(claim)):
            return ""
        folded = normalize_text(claim)
        claimed = numbers_in(folded)
        for text in texts:
            for match in _COMPARISON.finditer(normalize_text(text)):
                sides = match.group(1), match.group(2)
                for side, other in (sides, sides[::-1]):
                    value, partner = _decimal(side), _decimal(other)
                    stated = partner in claimed if partner is not None else other in folded
                    if value is not None and value in claimed and not stated:
                        return (
                            f"gives {format(value, 'f')}, one side of its evidence's "
                            "comparison, without its arm"
                        )
        return ""

    def _record_bindings(
        self, cited: Sequence[QuotedSentence], kind: str
    ) -> dict[Decimal, list[Term]]:
        """Number -> endpoints (or arms) the trial records printing a cited sentence give it."""
        if self.glossary is None:
            return {}
        bindings: dict[Decimal, list[Term]] = {}
        printed = [strip_markers(q.sentence.text) for q in cited]
        for record in self.records:
            summary = strip_markers(record.summary_zh)
            if not any(p and p in summary for p in printed):
                continue
            for endpoint in record.endpoints:
                label = endpoint.name if kind == "endpoint" else (endpoint.arm or "")
                found = [t for t in self.glossary.matches(label) if _of_kind(t, kind)]
                for value in numbers_in(endpoint.value):
                    bindings.setdefault(value, []).extend(found)
        return bindings

    def _affinity(self, claim: str, quoted: QuotedSentence) -> float:
        """How clearly ``claim`` restates ``quoted``: 0 when it does not at all."""
        texts = evidence_texts(quoted)
        shared_numbers = numbers_in(claim) & self._numbers([quoted])
        words = set(tokenize(claim))
        # The claim's words of a glossary term the evidence names in any form count as held
        # (客观缓解率 restating "ORR为58.9%").
        held_as_terms: set[str] = set()
        shared_names = 0
        if self.terms is not None:
            named = self.terms.named(claim)
            present = self.glossary.matches(" ".join(texts)) if named else []  # type: ignore[union-attr]
            for term in named:
                if any(same_concept(term, p) for p in present):
                    shared_names += 1
                    held_as_terms |= {w for form in term.forms for w in tokenize(form)} & words
        share = max(
            (len(words & (set(tokenize(t)) | held_as_terms)) / len(words) for t in texts),
            default=0.0,
        )
        share = share if words else 0.0
        anchored = bool(shared_numbers or shared_names)
        if share < (MIN_WORD_SHARE_WITH_ANCHOR if anchored else MIN_WORD_SHARE):
            return 0.0
        return 2.0 * len(shared_numbers) + shared_names + share

    @staticmethod
    def _numbers(cited: Sequence[QuotedSentence]) -> set[Decimal]:
        return set().union(*(numbers_in(t) for q in cited for t in evidence_texts(q)))

    @staticmethod
    def _texts(cited: Sequence[QuotedSentence]) -> list[str]:
        return [t for q in cited for t in evidence_texts(q)]

    @staticmethod
    def _closest_clauses(claim: str, texts: Sequence[str]) -> list[tuple[str, str]]:
        """Each clause of ``claim`` with the evidence clause closest to it (shared numbers
        first, then shared words): where a negation must be kept, or not added."""
        evidence = [c for t in texts for c in _CLAUSE_END.split(t) if c and c.strip()]
        pairs = []
        for clause in (c for c in _CLAUSE_END.split(claim) if c and c.strip()):
            words, numbers = set(tokenize(clause)), numbers_in(clause)
            if not words or not evidence:
                continue
            closest = max(
                evidence,
                key=lambda c: (len(numbers & numbers_in(c)), len(words & set(tokenize(c)))),
            )
            if numbers & numbers_in(closest) or words & set(tokenize(closest)):
                pairs.append((clause, closest))
        return pairs


def flipped_group(claim: str, evidence: str) -> str:
    """A number the claim gives for a group its evidence gives to the opposite one: typical
    where the evidence says atypical, 胰腺 where it says 非胰腺 (or the reverse). The groups are
    a word and the same word with a negating prefix, both written in the two clauses; each
    number takes the form nearest to it."""
    texts = normalize_text(claim), normalize_text(evidence)
    for base, negated in _negated_pairs(" ".join(texts)):
        for value in numbers_in(texts[0]) & numbers_in(texts[1]):
            said, given = (_group_at(text, value, base, negated) for text in texts)
            if said is not None and given is not None and said != given:
                stated, evidenced = (negated if g else base for g in (said, given))
                number = format(value, "f")
                return f"gives {number} for {stated}; its evidence gives it for {evidenced}"
    return ""


def _negated_pairs(text: str) -> list[tuple[str, str]]:
    """(word, negated word) both in ``text``: typical / atypical, pancreatic / non-pancreatic,
    胰腺 / 非胰腺."""
    pairs = []
    words = set(re.findall(r"[a-z][a-z-]+", text))
    for word in words:
        for prefix, shortest in _NEGATING_PREFIXES:
            base = word[len(prefix) :]
            if word.startswith(prefix) and len(base) >= shortest and base in words:
                pairs.append((base, word))
    for match in re.finditer(r"非([\u4e00-\u9fff]{2,4})", text):
        for size in range(len(match.group(1)), 1, -1):
            base = match.group(1)[:size]
            if re.search(rf"(?<!非){re.escape(base)}", text):
                pairs.append((base, "非" + base))
                break
    return pairs


def _group_at(text: str, value: Decimal, base: str, negated: str) -> bool | None:
    """Whether the group form nearest to ``value`` in its clause of ``text`` is the negated one
    (``None`` where no clause writes both the value and a form)."""
    far = len(text) + 1
    distance = {True: far, False: far}
    for clause in _CLAUSE_END.split(text):
        if not clause:
            continue
        numbers = [m.start() for m in NUMBER.finditer(clause) if _decimal(m.group()) == value]
        negated_at = [m.start() for m in re.finditer(re.escape(negated), clause)]
        base_at = [
            m.start()
            for m in re.finditer(re.escape(base), clause)
            if not any(n <= m.start() < n + len(negated) for n in negated_at)
        ]
        for negative, places in ((True, negated_at), (False, base_at)):
            for at in places:
                for n in numbers:
                    distance[negative] = min(distance[negative], abs(n - at))
    if distance[True] == distance[False] == far:
        return None
    return distance[True] < distance[False]


def _of_kind(term: Term, kind: str) -> bool:
    """An endpoint term, or an arm: a drug, a regimen or placebo."""
    if kind == "endpoint":
        return term.type in _ENDPOINT_TYPES
    return term.type in _ARM_TYPES or "placebo" in term.en


def _in_any(needle: str, texts: Sequence[str]) -> bool:
    return any(needle.casefold() in t.casefold() for t in texts)
