"""The Chinese names of a question the corpus never mentions (``answer.scope``'s Chinese half).

jieba cuts the question after the glossary's forms are cut out of it; a name is a noun jieba's
dictionary rarely sees or the embedding tokenizer finds rare (the rare-noun rule), a word ending
like a drug or disease name, a run of single characters jieba cannot group, or a site with a
disease ending the corpus never joins to it (肺炎). Each name comes with whether only the
rare-noun rule found it (a rare word, left to the scope probe).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jieba.posseg

from answer.corpus_text import CorpusText
from answer.disease_mentions import CJK_WORD
from answer.word_rarity import zh_frequency
from answer.zh_tokens import (
    ZH_FUNCTION_CLASSES,
    Marks,
    fragment,
    leading_numeral,
    merged,
    name_part,
    name_tail,
    unsplit_phrase,
)

if TYPE_CHECKING:
    from answer.scope import ScopeThresholds

# Endings of Chinese disease, drug and vaccine names outside the glossary (糖尿病, 胰岛素,
# 二甲双胍, 疫苗). Kept beside the glossary's endings: without them the eval set's tune half
# answers a diabetes question (``benchmarks/tune_scope.py``; docs/benchmarks.md, issue 13).
# Not …药: it ends the words for a kind of medicine (口服药, 靶向药, 三药), not one drug's name.
ZH_ENTITY_END = frozenset("癌瘤病症炎喘胍素苗")
# Chinese disease-name endings beside the glossary's (肾细胞癌: narrowed by what precedes 癌).
ZH_DISEASE_END = frozenset("癌瘤病症征")
# An inflammation (肺炎): a disease name after a site, though no disease the review names.
ZH_INFLAMMATION = frozenset("炎")
# Characters that join two drugs written short into a regimen (纳武加铂: nivolumab plus
# platinum), which jieba may glue into one word with them.
ZH_JOINERS = frozenset("加联及与和")


@dataclass
class ChineseNames:
    """The corpus text and what the glossary teaches (``ScopeCheck.learn_glossary``): its
    Chinese forms (cut out before jieba, longest first), a mark per site form, and the endings
    of its drug, disease and endpoint names."""

    text: CorpusText
    logprob: Callable[[str], float]
    forms: Sequence[str] = ()
    site_marks: Marks = field(default_factory=Marks)
    endings: frozenset[str] = ZH_ENTITY_END
    measure_endings: frozenset[str] = frozenset()
    disease_endings: frozenset[str] = ZH_DISEASE_END

    def find(self, folded: str, thresholds: ScopeThresholds) -> list[tuple[str, bool]]:
        """Each unknown name of ``folded`` (normalised text) with whether only the rare-noun
        rule found it, in question order."""
        # A site's form leaves a mark of its own, so a disease named with it is named whole
        # (胃 + 泌素瘤); any other form leaves a comma. Both split the text alike for jieba.
        for form in self.forms:
            if form in folded:
                folded = folded.replace(form, self.site_marks.get(form, "，"))
        pairs = [(p.word, p.flag) for p in jieba.posseg.cut(folded) if p.word.strip()]
        # Each unknown name's tokens, [start, end) in ``pairs``, and whether a name rule (an
        # ending, a run of fragments) found it, not the rare-noun rule alone.
        spans: list[tuple[int, int, bool]] = []
        for i, (word, flag) in enumerate(pairs):
            if not CJK_WORD.match(word):
                continue
            if (start := self._modified_disease(pairs, i, thresholds)) is not None:
                spans.append((start, i + 1 + name_tail(pairs[i + 1 :]), True))
                continue
            # A suffix jieba cut off on its own (肝细胞 / 癌) belongs to the word before it,
            # unless that is a function word (对 / 铂耐药: the character starts a word) or a
            # quantity (几大类 / 药, 三种 / 药); a numeral character can start a name (双 / 胍).
            previous, previous_flag = pairs[i - 1] if i > 0 else ("", "")
            if (
                len(word) == 1
                and CJK_WORD.match(previous)
                and previous_flag[:1] not in ZH_FUNCTION_CLASSES
                and not (previous_flag == "m" and len(previous) > 1)
            ):
                word = pairs[i - 1][0] + word
                flag = "suffix"
            if len(word) < 2 or word in self.text or unsplit_phrase(word):
                continue
            measure = thresholds.zh_measures_known and word[-1] in self.measure_endings
            derived = thresholds.zh_derived_known and len(word) >= 3 and word[:-1] in self.text
            rare_noun = (
                flag in thresholds.zh_noun_classes
                and not measure
                and not derived
                and (
                    zh_frequency(word) <= thresholds.zh_max_frequency
                    or self.logprob(word) <= thresholds.zh_max_logprob
                )
            )
            named = word[-1] in self.endings
            if rare_noun or named:
                start = i - 1 if flag == "suffix" else i
                spans.append((start, i + 1 + name_tail(pairs[i + 1 :]), named))
        if thresholds.zh_fragment_names:
            spans += [(start, end, True) for start, end in self._fragments(pairs, thresholds)]
        # Names next to each other are one (肢端 + 肥大症), found by a name rule if any part is.
        unknown = [
            (self._name(pairs, start, end), not named) for start, end, named in merged(spans)
        ]
        # Named once, whole: 特罗司他, not also 特罗司.
        return [
            (w, rare)
            for w, rare in unknown
            if not any(w != other and w in other for other, _ in unknown)
            and not self._combination(w)
        ]

    def _combination(self, name: str) -> bool:
        """Whether ``name`` is two things the corpus writes, joined (纳武 + 加 + 铂): a regimen
        written short, not a new name. One part may be a single character (铂), not both; the
        first part may carry one character jieba glued on before it (里 + 纳武)."""
        for i, character in enumerate(name):
            left, right = name[:i], name[i + 1 :]
            if character not in ZH_JOINERS or not left or not right:
                continue
            lefts = [left, left[1:]] if len(left) > 2 else [left]
            if right in self.text and any(
                part in self.text and max(len(part), len(right)) >= 2 for part in lefts
            ):
                return True
        return False

    def _modified_disease(
        self, pairs: list[tuple[str, str]], i: int, thresholds: ScopeThresholds
    ) -> int | None:
        """Where a disease name starts in ``pairs`` when the corpus knows its ending after a
        site but not the name (``zh_site_diseases``): at the bare ending (肺 + 炎, 胃 + 癌;
        the site is named with it). Not a word the corpus lacks before a known head: 胸部 +
        肿瘤 is the review's thoracic tumours, 垂体 + 肿瘤 is not, and nothing tells them apart."""
        word = pairs[i][0]
        if not thresholds.zh_site_diseases or i == 0:
            return None
        site = self.site_marks.inverse.get(pairs[i - 1][0])
        if not site:
            return None
        # The ending alone, or joined by jieba to the next word (胃 + 癌能用).
        bare = len(word) == 1 or (len(word) == 2 and word[1] not in self.endings)
        ending = word[0]
        known = ending not in self.disease_endings | ZH_INFLAMMATION or site + ending in self.text
        return None if known or not bare else i

    def _fragments(
        self, pairs: list[tuple[str, str]], thresholds: ScopeThresholds
    ) -> list[list[int]]:
        """Runs of two or more single characters that are nouns, numerals, morphemes or
        unclassed (not a free verb, adjective or function word), whose joined text the corpus
        lacks and the tokenizer finds rare, with a noun right after them: ``[start, end)`` in
        ``pairs``."""
        runs: list[list[int]] = []
        start = None
        for i, pair in enumerate([*pairs, ("", "x")]):
            if fragment(pair):
                start = i if start is None else start
                continue
            if start is not None and i - start >= 2:
                text = "".join(word for word, _ in pairs[start:i])
                if text not in self.text and self.logprob(text) <= thresholds.zh_max_logprob:
                    # With the noun jieba found right after it, the name's head (链脲 + 霉素).
                    head = i < len(pairs) and CJK_WORD.match(pairs[i][0]) and pairs[i][1][:1] == "n"
                    runs.append([start, i + 1 if head else i])
            start = None
        return runs

    def _name(self, pairs: list[tuple[str, str]], start: int, end: int) -> str:
        """An unknown name with the words before it that the corpus lacks too (甲状腺 + 髓 +
        样癌, 鲁比 + 卡丁), to its disease ending (…癌, not 癌能) and, for a disease, with the
        site right before it (胃 + 泌素瘤)."""
        while start > 0 and name_part(pairs[start - 1]) and pairs[start - 1][0] not in self.text:
            start -= 1
        if start > 0 and leading_numeral(pairs[start - 1]):
            start -= 1  # a chemical name's number (二 + 氮嗪), as jieba cuts a word it lacks
        name = "".join(word for word, _ in pairs[start:end])
        last = pairs[end - 1][0]
        joined = last[0] in self.disease_endings and last[1:] not in self.endings
        if len(last) == 2 and joined:
            name = name[:-1]  # jieba joined the ending to the next word (癌能 of 前列腺癌能延长)
            if len(name) == 1:  # the ending alone (癌用 of 宫颈小细胞癌用): named with its words
                while start > 0 and name_part(pairs[start - 1]):
                    start -= 1
                    name = pairs[start][0] + name
        site = self.site_marks.inverse.get(pairs[start - 1][0]) if start > 0 else None
        if site and name[-1] in self.disease_endings | ZH_INFLAMMATION:
            name = site + name
        return name
