"""Diseases a question narrows by the words before their head noun ("renal cell carcinoma",
膀胱小细胞癌), which the quoted evidence must mention too (``answer.relevance``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import jieba.posseg
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from nenqa.glossary import normalize_text
from nenqa.text import CJK_RANGE, singular

# A word of Chinese characters only; a Latin word, with its hyphens and slashes (NETTER-2, 5-FU).
CJK_WORD = re.compile(f"^[{CJK_RANGE}]+$")
LATIN_WORD = re.compile(r"[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*")
# jieba's classes of the words that narrow a disease before its head: nouns (膀胱, 导管),
# distinguishing words (非小), adjectives (小) and morphemes (肾).
_ZH_MODIFIER_CLASSES = frozenset("nbazgj")
# Auxiliaries sklearn's stop words lack ("how many responses did lung-origin tumours have").
_EN_AUXILIARIES = frozenset({"did", "does", "doing", "done"})
_ROMAN_NUMERAL = re.compile(r"^[ivx]+$")


@dataclass(frozen=True)
class DiseaseMention:
    """A disease the question narrows by the words before its head noun ("renal cell
    carcinoma", 膀胱小细胞癌): evidence about the head alone (small cell carcinoma of the lung)
    does not answer it, so the quoted evidence must mention every modifier too."""

    text: str
    modifiers: tuple[str, ...]
    chinese: bool


def find_disease_mentions(
    question: str,
    *,
    en_heads: frozenset[str],
    subject: re.Pattern[str],
    zh_endings: frozenset[str],
    max_english: int,
    max_chinese: int,
) -> list[DiseaseMention]:
    """The diseases the question names with up to ``max_english`` words before an English
    head noun (content words before carcinoma, tumour, syndrome...) or ``max_chinese``
    before a Chinese one (jieba's noun-like words before a word ending like a disease, …癌,
    …瘤)."""
    mentions = []
    matches = list(LATIN_WORD.finditer(question)) if max_english > 0 else []
    for i, match in enumerate(matches):
        if singular(match.group().lower()) not in en_heads:
            continue
        following = matches[i + 1].group().lower() if i + 1 < len(matches) else ""
        joined = following and not question[match.end() : matches[i + 1].start()].strip()
        if joined and following not in ENGLISH_STOP_WORDS:
            continue  # the head narrows a noun after it ("tumour growth"), not a disease
        modifiers: list[str] = []
        start, j = match.start(), i - 1
        while j >= 0 and len(modifiers) < max_english:
            word = matches[j].group()
            if (
                question[matches[j].end() : start].strip()
                or not _en_modifier(word)
                or subject.fullmatch(word.lower())
            ):
                break  # a drug or trial before the head is what is asked about, not a site
            modifiers.insert(0, word.lower())
            start, j = matches[j].start(), j - 1
        if modifiers:
            text = question[start : match.end()]
            mentions.append(DiseaseMention(text, tuple(modifiers), chinese=False))
    if max_chinese <= 0:
        return mentions
    pairs = [(p.word, p.flag) for p in jieba.posseg.cut(normalize_text(question))]
    for i, (word, _) in enumerate(pairs):
        if not (CJK_WORD.match(word) and word[-1] in zh_endings):
            continue
        modifiers = []
        j = i - 1
        while (
            j >= 0
            and len(modifiers) < max_chinese
            and CJK_WORD.match(pairs[j][0])
            and pairs[j][1][:1] in _ZH_MODIFIER_CLASSES
        ):
            modifiers.insert(0, pairs[j][0])
            j -= 1
        if modifiers:
            text = "".join(modifiers) + word
            mentions.append(DiseaseMention(text, tuple(modifiers), chinese=True))
    return mentions


def _en_modifier(word: str) -> bool:
    """A word that can narrow a disease before its head noun (renal, lung-origin): letters, not
    a function word, an auxiliary, a roman numeral, a verb form (-ing, -ed: "controlling
    midgut tumours"; participles such as "advanced" are left unchecked) or metastatic."""
    lowered = word.lower()
    return (
        len(lowered) >= 3
        and lowered.replace("-", "").isalpha()
        and lowered not in ENGLISH_STOP_WORDS
        and lowered not in _EN_AUXILIARIES
        and not _ROMAN_NUMERAL.match(lowered)
        and not lowered.endswith(("ing", "ed"))
        and not lowered.startswith("metasta")  # spread, like advanced: no site or kind
    )
