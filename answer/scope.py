"""Is a question inside what the review covers? Named medical entities it never mentions.

A question naming a drug, disease, trial, site or syndrome that appears nowhere in the indexed
corpus (text, its English renderings, reference entries, trial records) nor in the bilingual
glossary asks about something the review cannot answer, however close its other words are
(``肝细胞癌 … 阿替利珠单抗联合贝伐珠单抗`` shares the drugs with a passage, not the disease).

Only entity-like words count, and what is entity-like comes from data, not from lists:

- English: letters with digits (NETTER-2), capitals (KEYNOTE), a capitalised word inside the
  sentence (Cushing, Merkel), or a rare word: the embedding model's tokenizer is a unigram
  language model over web text in a hundred languages, and the log-probability of a word's
  pieces under it says how rare the word is in general text (``telotristat`` -35, ``glioblastoma``
  -41, everyday ``upkeep`` -29 and ``dummy`` -21).
- Chinese: a noun by jieba's word classes that jieba's dictionary rarely sees (嗜铬细胞, 肢端) or
  whose pieces the embedding tokenizer finds rare (膀胱); or a word ending like the glossary's
  drugs and diseases (…癌, …瘤, …替尼, …单抗) or like a disease, drug or vaccine outside it (…病,
  …素, …苗: one short list, kept while the data alone misses them); or a run of single
  characters jieba cannot group into words (二/氮/嗪), which the tokenizer finds rare. Glossary
  forms are cut out first, so jieba does not split 中/度伐利尤单抗 into a noun. Two exemptions
  are options the tuner decides: a noun ending like the glossary's endpoint names (多长时间 for
  无进展生存期, but also 哺乳期) and a corpus word plus one character (样本量 of 小样本); both
  are off.

Some words look like names and are not: lowercase phase or day shorthand (ph2, d1, ph1b),
counts and orders of known words (2nd-line, 3-arm, grade3), a duration (12-mo), a prefixed class
of a target the corpus names (anti-PD-1/PD-L1), a corpus word written without its hyphen (5FU),
and two characters jieba joins by guess after a verb or preposition (能治, 缩瘤: can treat,
shrink the tumour).

A Chinese word found by the rare-noun rule alone (no name ending, not a run of fragments) is a
rare word (``rare_words``), not a name: as often a clinician's own word for what the review says
in others (样本量, 伤肾) as a subject it never discusses (胆结石). The relevance check leaves a
question whose only unknown words are rare ones to the scope probe, at a lower threshold.

A glossary name typed with a slip (lantreotide, 兰锐肽 for 兰瑞肽) is that name
(``answer.misspelling``); ``corrected`` writes it right for the checks that read names.

When unsure the check keeps the question (the relevance scores still decide): a paraphrase in
everyday words the review does not use (``upkeep``, ``真实世界``) must not abstain. The thresholds
are chosen on the tune half of ``eval/scope_questions.jsonl`` by ``benchmarks/tune_scope.py``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jieba
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from answer.chinese_names import ZH_DISEASE_END, ZH_ENTITY_END, ChineseNames
from answer.corpus_text import CorpusText
from answer.disease_mentions import CJK_WORD as _CJK_WORD
from answer.disease_mentions import LATIN_WORD as _LATIN_WORD
from answer.disease_mentions import DiseaseMention, find_disease_mentions
from answer.misspelling import Misspellings
from answer.word_rarity import WordLogprob, embedder_word_logprob, en_zipf
from answer.zh_tokens import Marks
from nenqa.glossary import Term, normalize_text
from nenqa.text import singular

jieba.setLogLevel(logging.WARNING)

_AGE = re.compile(r"^\d+-(?:year|month|week|day)s?-old$", re.IGNORECASE)
# A number with a unit of time, written short (12-mo, 6mo, 3-wk, 2yr): a duration, not a name.
_DURATION = re.compile(
    r"^\d+-?(?:mo|mos|mths?|mnths?|wk|wks|yr|yrs|hr|hrs|months?|weeks?|years?|days?)$", re.I
)
# Where a new sentence starts, so its first word's capital says nothing.
_SENTENCE_START = re.compile(r"(?:^|[.?!:;。？！：；]\s*)$")
# Glossary types whose Chinese endings mark a drug or disease name (…替尼, …单抗, …癌).
_ENTITY_TYPES = frozenset({"drug", "disease", "regimen"})
# Glossary types a question is about, as opposed to the disease or site it asks them about.
_SUBJECT_TYPES = frozenset({"drug", "regimen", "trial"})
# Where a question joins its parts ("SPINET and NETTER-2", "依维莫司治疗胰腺NET，乳腺癌呢"); not
# comparison words (与, versus): "177Lu-edotreotide与依维莫司相比" is one question.
_PART_BREAK = re.compile(r"\s*(?:\band\b|[,;?？，；])\s*", re.I)
# A part that only names what the one before it is compared with ("NETTER-1 … PFS？和加量奥曲肽
# 比", "…, vs high-dose octreotide?"): the same question, not a part of its own.
_COMPARISON_PART = re.compile(
    r"^(?:(?:和|与|跟|同).*(?:比|相比|比较|对比)(?:呢|吗|如何|怎样|怎么样)?"
    r"|(?:对比|相比|相较|比起).*|(?:vs\.?|versus|compared (?:with|to)|relative to|than)\b.*)$",
    re.I,
)
# Lowercase shorthand of a letter or two and a number: a phase, a day or an interval (ph2, d1,
# q3; ph1b, q3w), not a trial or gene name (those are capitalised: MEN1, B12, NETTER-2).
_SHORT_CODE = re.compile(r"^[a-z]{1,2}\d{1,2}[a-z]?$")
# A number or code right after a word, written apart from it (KEYNOTE 604, RADIANT-4).
_FOLLOWING_CODE = re.compile(r"[\s-]*([A-Za-z]*\d[A-Za-z0-9]*)")
_ORDINAL = re.compile(r"^\d+(?:st|nd|rd|th)$")
# English prefixes that make a new word of a known one (pretreated, nonfunctioning, unresectable).
_EN_PREFIXES = ("pre", "post", "re", "non", "un", "anti", "co", "sub", "multi", "over", "under")


@dataclass(frozen=True)
class ScopeThresholds:
    """How entity-like an unknown word must be; chosen on the tune half of the scope set."""

    # Highest log-probability of a rare unknown English word (its pieces under the embedding
    # tokenizer's unigram model; a word of several rare pieces scores low).
    en_max_logprob: float = -30.0
    # A rare-pieced English word at least this common in general text (wordfreq's Zipf scale)
    # is everyday vocabulary the tokenizer happens to split (pharmacist 3.3, shrinkage 2.9),
    # not a name (telotristat 0, acromegaly 1.8); 99 turns this off. Chosen with the scope
    # probe on, by the product's decisions on the tune half (``tune_scope.py sweep``).
    en_common_zipf: float = 2.5
    # A word sharing this many first letters with a corpus word is a form of it (embolising,
    # embolization), not a new name.
    en_stem: int = 6
    # Whether an unknown word right before a glossary disease head noun counts (breast cancer).
    en_disease_modifiers: bool = True
    # Highest jieba dictionary frequency of a rare Chinese noun (unknown words count 0).
    zh_max_frequency: int = 50
    # jieba word classes that count: common nouns (n) and transliterated names (nrt). Person
    # and place names (nr, ns) are what jieba guesses for fragments (中双, 高达); other proper
    # nouns (nz) include everyday compounds (真实世界).
    zh_noun_classes: frozenset[str] = frozenset({"n", "nrt"})
    # A Chinese noun more frequent than that is still rare when its pieces under the embedding
    # tokenizer score at most this (膀胱: jieba 316, -39); -999 turns this off.
    zh_max_logprob: float = -35.0
    # Whether a rare noun ending like the glossary's endpoint names (…率, …期) is a measure the
    # question asks for in other words (多长时间 for 无进展生存期), not an entity. Off since the
    # tune half held batch 8: 哺乳期 (breastfeeding) ends like 生存期 too.
    zh_measures_known: bool = False
    # Whether a rare noun of three or more characters whose first ones the corpus holds is a
    # derivation of a corpus word (样本量 of 小样本), like a form of an English corpus word.
    zh_derived_known: bool = False
    # Whether a run of single characters jieba cannot group into words (二 / 氮 / 嗪, 嗜 / 铬 /
    # 粒), absent from the corpus and rare by the embedding tokenizer (``zh_max_logprob``), is a
    # name neither knows: a drug or protein jieba's dictionary lacks, not an everyday phrase.
    zh_fragment_names: bool = True
    # Whether a site right before a bare disease ending makes a disease the corpus lacks (肺 +
    # 炎, pneumonitis; 胃 + 癌), like an unknown English word before a disease head.
    zh_site_diseases: bool = True


class ScopeCheck:
    """Finds the entity-like words of a question that the corpus and glossary never mention."""

    def __init__(
        self,
        corpus_texts: Iterable[str] | CorpusText,
        glossary_forms: Iterable[str] = (),
        *,
        word_logprob: WordLogprob | None = None,
        thresholds: ScopeThresholds | None = None,
    ) -> None:
        glossary_forms = list(glossary_forms)
        forms = [normalize_text(f) for f in glossary_forms]
        # A saved generation's text is memory-mapped (``answer.corpus_text``; it holds the forms).
        if not isinstance(corpus_texts, CorpusText):
            corpus_texts = CorpusText.of(corpus_texts, glossary_forms)
        self._text = corpus_texts
        self._latin = corpus_texts.words(_LATIN_WORD)
        # Without hyphens too: 5FU is the corpus's 5-FU, PD1 its PD-1.
        self._latin_unhyphenated = frozenset(w.replace("-", "") for w in self._latin if "-" in w)
        # And the parts of its joined words (line of first-line), for counts of them (2nd-line).
        self._latin_parts = frozenset(
            p for w in self._latin if "-" in w or "/" in w for p in re.split(r"[-/]", w) if p
        )
        # Longest first, so 长效兰瑞肽 is cut out whole before 兰瑞肽.
        zh_forms = sorted({f for f in forms if _CJK_WORD.match(f)}, key=len, reverse=True)
        self._zh = ChineseNames(corpus_texts, self._logprob, zh_forms)
        self._subject = re.compile(r"(?!)")  # no glossary yet: no subject is known
        self._disease_heads: frozenset[str] = frozenset()
        self._stem_cache: dict[int, frozenset[str]] = {}
        self._misspellings = Misspellings(glossary_forms)  # lantreotide, 兰锐肽: slips
        # The last questions' Chinese names, by text and thresholds (``_unknown_chinese``).
        self._chinese_cache: dict[tuple[str, ScopeThresholds], list[tuple[str, bool]]] = {}
        en_zipf("the")  # wordfreq's English list, loaded once here: before workers fork
        self.word_logprob = word_logprob if word_logprob is not None else embedder_word_logprob()
        self.thresholds = thresholds or ScopeThresholds()

    @property
    def corpus_text(self) -> CorpusText:
        """The normalised corpus and glossary text the check looks words up in."""
        return self._text

    def learn_glossary(self, terms: Iterable[Term]) -> None:
        """Take the endings of the glossary's Chinese drug and disease names (…肽, …癌) and the
        head nouns of its English disease names (carcinoma, syndrome), and its drug, regimen and
        trial names (what a question can be about while also naming something uncovered)."""
        terms = list(terms)
        forms = sorted(
            {normalize_text(f) for t in terms if t.type in _SUBJECT_TYPES for f in t.forms},
            key=len,
            reverse=True,
        )
        self._subject = re.compile(
            "|".join(
                re.escape(f) if _CJK_WORD.match(f) else rf"(?<![a-z0-9]){re.escape(f)}(?![a-z0-9])"
                for f in forms
                if len(f) >= 2
            )
            or r"(?!)"
        )
        self._disease_heads = frozenset(
            singular(form.split()[-1])
            for t in terms
            if t.type == "disease"
            for form in t.en
            if " " in form and form.split()[-1].isalpha() and form.split()[-1].islower()
        )
        # From each row's first Chinese name, the review's: later ones are other names of the
        # drug (brands such as 可瑞达, 善龙), whose endings say nothing about drug names.
        self._zh.endings = ZH_ENTITY_END | {
            form[-1]
            for t in terms
            if t.type in _ENTITY_TYPES
            for form in t.zh[:1]
            if _CJK_WORD.match(form)
        }
        self._zh.site_marks = Marks(
            normalize_text(form)
            for t in terms
            if t.type == "site"
            for form in t.zh
            if _CJK_WORD.match(normalize_text(form))
        )
        # Endings of the endpoint names only (…率, …期; not …性, which ends 前瞻性 too). A
        # harvested definition of an endpoint (客观缓解率, typed other) is the same name.
        endpoints = {form for t in terms if t.type == "endpoint" for form in t.zh}
        endings_by_type: dict[str, set[str]] = {}
        for t in terms:
            for form in t.zh:
                if _CJK_WORD.match(form[-1:]) and (t.type == "endpoint" or form not in endpoints):
                    endings_by_type.setdefault(form[-1], set()).add(t.type)
        self._zh.measure_endings = frozenset(
            ending for ending, types in endings_by_type.items() if types == {"endpoint"}
        )
        self._zh.disease_endings = ZH_DISEASE_END | {
            form[-1] for t in terms if t.type == "disease" for form in t.zh if _CJK_WORD.match(form)
        }

    def disease_mentions(
        self, question: str, max_english: int, max_chinese: int
    ) -> list[DiseaseMention]:
        """The diseases the question narrows (``answer.disease_mentions``) by the glossary's
        disease heads and endings; a drug or trial before the head is no modifier."""
        return find_disease_mentions(
            question,
            en_heads=self._disease_heads,
            subject=self._subject,
            zh_endings=self._zh.disease_endings,
            max_english=max_english,
            max_chinese=max_chinese,
        )

    def unknown_entities(self, question: str) -> list[str]:
        """Entity-like words of ``question`` absent from the corpus, in question order."""
        return [word for word, _ in self.unknowns(question)]

    def rare_words(self, question: str) -> list[str]:
        """The unknown entities only the rare-noun rule found: a Chinese noun jieba's dictionary
        rarely sees, with no ending of a drug or disease name (样本量, 伤肾, but also 胆结石).
        Such a word is as often a clinician's own word for what the review says in others as a
        subject it never discusses, so it alone does not make a question uncovered: the scope
        probe decides, with its threshold for such questions (``answer.scope_probe``)."""
        return [word for word, rare in self.unknowns(question) if rare]

    def unknowns(self, question: str) -> list[tuple[str, bool]]:
        """Each unknown entity of ``question`` in question order, with whether it is only a
        rare word (``rare_words``)."""
        found: dict[str, bool] = {}
        for word in self.latin_unknowns(question):
            found.setdefault(word, False)
        for word, rare in self._unknown_chinese(normalize_text(question)):
            found[word] = found.get(word, rare) and rare
        return list(found.items())

    def latin_unknowns(self, question: str) -> list[str]:
        """The unknown entities written in Latin letters (the English thresholds decide)."""
        matches = list(_LATIN_WORD.finditer(question))
        unknown: list[str] = []
        previous_end = -1  # where the last unknown word ended, to name "rheumatoid arthritis" whole
        for i, match in enumerate(matches):
            word = match.group()
            # The head a site word names must follow it ("breast cancer"), not start the next
            # item of a list ("SSTR status, tumour burden").
            adjacent = (
                i + 1 < len(matches) and not question[match.end() : matches[i + 1].start()].strip()
            )
            following = matches[i + 1].group() if adjacent else ""
            if self._unknown_site(word, following):
                unknown.append(f"{word} {following}")  # named with its head: "breast cancer"
            elif self._unknown_latin(word, question[: match.start()], question[match.end() :]):
                # A corpus name's word with another number is named with it (KEYNOTE 604).
                if number := self._other_number(word, question[match.end() :]):
                    word = f"{word} {number}"
                if unknown and question[previous_end : match.start()] == " ":
                    unknown[-1] = f"{unknown[-1]} {word}"
                else:
                    unknown.append(word)
                previous_end = match.end()
        return unknown

    def chinese_unknowns(self, question: str) -> list[str]:
        """The unknown entities written in Chinese (the Chinese thresholds decide)."""
        return [word for word, _ in self._unknown_chinese(normalize_text(question))]

    def answers_in_part(self, question: str, unknown: Sequence[str]) -> bool:
        """Whether a part of the question asks about a drug, regimen or trial the review covers
        while every part naming something uncovered names none ("What did everolimus do in
        pancreatic NETs, and in breast cancer?"): that part is answered and the rest named. A
        part naming both (sunitinib in renal cell carcinoma) makes the whole question
        uncovered."""
        if not unknown:
            return False
        covered = uncovered = False
        # A part naming nothing ("PFS到底多少") asks on about what the part before it named, and
        # a comparison part compares with that: both join it.
        parts: list[str] = []
        for part in _PART_BREAK.split(normalize_text(question)):
            names = self._subject.search(part) or any(normalize_text(u) in part for u in unknown)
            if parts and (_COMPARISON_PART.match(part) or not names):
                parts[-1] = f"{parts[-1]} {part}"
            else:
                parts.append(part)
        for part in parts:
            names_unknown = any(normalize_text(u) in part for u in unknown)
            names_subject = self._subject.search(part) is not None
            if names_unknown and names_subject:
                return False
            covered |= names_subject
            uncovered |= names_unknown
        return covered and uncovered

    def corrected(self, question: str) -> str:
        """``question`` with the glossary names typed with a slip written as the glossary does
        (lantreotide: lanreotide, 兰锐肽: 兰瑞肽), for the checks that read names (the probe)."""
        for match in reversed(list(_LATIN_WORD.finditer(question))):
            word = match.group()
            if not self._knows_latin(word) and (form := self._misspellings.latin(word)):
                question = question[: match.start()] + form + question[match.end() :]
        for name, _ in self._unknown_chinese(normalize_text(question), correct=False):
            if form := self._misspellings.chinese(name):
                question = question.replace(name, form)
        return question

    def _unknown_chinese(self, folded: str, correct: bool = True) -> list[tuple[str, bool]]:
        """The Chinese unknown names of ``folded`` with whether each is only a rare word; with
        ``correct``, not those that are a glossary name typed with a slip (兰锐肽)."""
        key = (folded, self.thresholds)
        names = self._chinese_cache.get(key)
        if names is None:
            # One jieba pass per question: the unknown words and ``corrected`` both read it.
            names = self._zh.find(folded, self.thresholds)
            if len(self._chinese_cache) >= 64:
                self._chinese_cache.pop(next(iter(self._chinese_cache)), None)
            self._chinese_cache[key] = names
        return [(w, rare) for w, rare in names if not (correct and self._misspellings.chinese(w))]

    def _absent(self, word: str) -> bool:
        """A content word (letters, not a stop word) the corpus holds in no form."""
        lowered = word.lower()
        return (
            lowered.isalpha()
            and len(lowered) >= 3
            and lowered not in ENGLISH_STOP_WORDS
            and not self._knows_latin(word)
            and not self._knows_stem(lowered)
        )

    def _unknown_site(self, word: str, following: str) -> bool:
        """A word naming the site or kind of a disease ("breast" cancer, "dumping" syndrome):
        right before a head noun of the glossary's diseases, and unknown to the corpus."""
        return (
            self.thresholds.en_disease_modifiers
            and singular(following.lower()) in self._disease_heads
            and self._absent(word)
        )

    def _unknown_latin(self, word: str, before: str, after: str = "") -> bool:
        """A trial-, drug-, disease- or syndrome-like word the corpus lacks: letters with digits,
        capitals, a name inside the sentence, or a part the tokenizer does not hold whole
        (``everolimus-containing`` is known by its entity part)."""
        if word.isdigit() or len(word) < 3 or self._knows_latin(word):
            return False
        if self._misspellings.latin(word):
            return False
        if _AGE.match(word) or _DURATION.match(word) or self._count_of_known(word):
            return False
        prefix, _, rest = word.partition("-")
        if prefix.lower() in _EN_PREFIXES and rest and self._knows_latin(rest):
            return False  # anti-PD-1/PD-L1, anti-CTLA-4: a class of what the corpus names
        if self._known_with_everyday_words(word):
            return False  # DLL3-directed, SSTR-positive: a corpus name with everyday words
        if self._part_of_corpus_name(word, after):
            return False  # ECOG ACRIN, PEN two twenty one: a corpus name written apart
        letters = [c for c in word if c.isalpha()]
        capitals = sum(c.isupper() for c in word)
        if letters and any(c.isdigit() for c in word):
            return True
        if capitals >= 3 and capitals >= len(letters) - 1:
            return True
        # An abbreviation in mixed case (CgA, IgG), not a plural of capitals (AEs: AE's plural).
        if capitals == 2 and len(letters) == 3 and not word.endswith("s"):
            return True
        parts = [p for p in re.split(r"[-/]", word) if p]
        first = parts[0]
        if first[0].isupper() and first[1:].islower() and not _SENTENCE_START.search(before):
            return True
        return any(
            len(p) >= 3
            and not self._knows_latin(p)
            and not self._knows_stem(p.lower())
            and self._logprob(p) <= self.thresholds.en_max_logprob
            and en_zipf(p.lower()) < self.thresholds.en_common_zipf
            for p in parts
        )

    def _known_with_everyday_words(self, word: str) -> bool:
        """A corpus word joined to lowercase everyday words (common in general text,
        ``en_common_zipf``) and numbers: DLL3-directed, SSTR-positive. Not gallium-68 (no
        part is a corpus word) nor KEYNOTE-177 (a capitalised name the corpus lacks)."""
        parts = [p for p in re.split(r"[-/]", word) if p]
        named = [not p.isdigit() and self._knows_latin(p) for p in parts]
        return (
            len(parts) > 1
            and any(named)
            and all(
                k
                or p.isdigit()
                or (p.isalpha() and p.islower() and en_zipf(p) >= self.thresholds.en_common_zipf)
                for k, p in zip(named, parts, strict=True)
            )
        )

    def _part_of_corpus_name(self, word: str, after: str) -> bool:
        """A word of a hyphenated corpus name written apart from the rest (ECOG ACRIN, GETNE 什么
        TRASGU, PEN two twenty one), unless a number after it makes another name."""
        is_part = word.isalpha() and word.lower() in self._latin_parts
        return is_part and self._other_number(word, after) is None

    def _other_number(self, word: str, after: str) -> str | None:
        """The number or code after a word of a hyphenated corpus name that makes a name the
        corpus lacks: 604 of KEYNOTE 604 (the corpus has KEYNOTE-158), not 158 of KEYNOTE 158,
        nor a code the corpus holds on its own (E2211 of ECOG ACRIN E2211)."""
        lowered = word.lower()
        following = _FOLLOWING_CODE.match(after)
        if not word.isalpha() or lowered not in self._latin_parts or not following:
            return None
        code = following.group(1)
        known_code = not code.isdigit() and self._knows_latin(code)
        return None if known_code or self._knows_latin(f"{lowered}-{code}") else code

    def _count_of_known(self, word: str) -> bool:
        """Lowercase words and numbers joined (2nd-line, 3-arm, grade3, gr3-4), or phase or day
        shorthand (ph2, d1, q3w): a count or an order of something known, not a trial or gene
        name, which is capitalised (NETTER-1, KEYNOTE-006, MEN1)."""
        if not any(c.isdigit() for c in word) or word != word.lower():
            return False
        return all(
            part.isdigit()
            or _ORDINAL.match(part)
            or _SHORT_CODE.match(part)
            or self._known_part(stem := part.rstrip("0123456789"))
            or self._known_part(stem.removesuffix("s"))
            or self._knows_stem(stem)
            for part in re.split(r"[-/]", word)
            if part
        )

    def _knows_stem(self, lowered: str) -> bool:
        """A form of a corpus word: the same first letters (embolising, embolization), or a
        corpus word behind an English prefix (pretreated, treated)."""
        stem = self.thresholds.en_stem
        if len(lowered) > stem and lowered[:stem] in self._stems(stem):
            return True
        return any(
            lowered.startswith(prefix)
            and len(rest := lowered[len(prefix) :]) >= 4
            and (rest in self._latin or (len(rest) > stem and rest[:stem] in self._stems(stem)))
            for prefix in _EN_PREFIXES
        )

    def _stems(self, length: int) -> frozenset[str]:
        if length not in self._stem_cache:
            self._stem_cache[length] = frozenset(w[:length] for w in self._latin if len(w) > length)
        return self._stem_cache[length]

    def _logprob(self, word: str) -> float:
        return self.word_logprob(word.lower()) if self.word_logprob else 0.0

    def _knows_latin(self, word: str) -> bool:
        lowered = word.lower()
        if self._known_form(lowered) or self._known_form(lowered.replace("-", "")):
            return True
        if lowered.endswith("s") and lowered[:-1] in self._latin:  # SSAs, NETs
            return True
        # A combination (atezolizumab-bevacizumab, STZ/5FU, streptozocin/5-FU) is known when
        # each of its parts is, a hyphenated part (5-FU) whole or by its own parts.
        pieces = [p for p in lowered.split("/") if p]
        if len(pieces) > 1:
            return all(p.isdigit() or self._knows_latin(p) for p in pieces)
        # Codes run together (G1G2 for G1/G2) are known when each code is.
        codes = re.findall(r"[a-z]+\d+", lowered)
        if len(codes) > 1 and "".join(codes) == lowered:
            return all(self._known_form(c) for c in codes)
        parts = [p for p in lowered.split("-") if p]
        return len(parts) > 1 and all(self._known_form(p) or p.isdigit() for p in parts)

    def _known_part(self, lowered: str) -> bool:
        return lowered in self._latin or lowered in self._latin_parts

    def _known_form(self, lowered: str) -> bool:
        return lowered in self._latin or lowered in self._latin_unhyphenated
