"""jieba's tokens of a Chinese question, read for names (``answer.scope``): which characters
jieba left alone can be part of a name, which words start one, and where a name jieba cut into
pieces ends."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import jieba.posseg

from answer.word_rarity import zh_frequency
from nenqa.text import CJK_RANGE

_CJK_WORD = re.compile(f"^[{CJK_RANGE}]+$")
# jieba's classes of a character that starts a phrase rather than a name: a verb or modal (能治,
# 缩瘤: can treat, shrink the tumour) or a preposition (比光: than only).
_ZH_PHRASE_START = frozenset({"v", "p"})
# jieba's classes of function words: preposition, conjunction, particle, adverb, pronoun,
# locative. Not numerals: they start names (双 / 胍 of 二甲双胍).
ZH_FUNCTION_CLASSES = frozenset("pcudrf")


def unsplit_phrase(word: str) -> bool:
    """Two characters jieba joined by guess (its dictionary lacks the word) where the first is
    a verb or a preposition on its own (能治, 缩瘤, 比光): a phrase it failed to split, not a
    name. Disease and drug names start with a noun or a transliteration (肺癌, 鲁比)."""
    if len(word) != 2 or zh_frequency(word) > 0:
        return False
    return jieba.posseg.dt.word_tag_tab.get(word[0], "") in _ZH_PHRASE_START


def leading_numeral(pair: tuple[str, str]) -> bool:
    """One Chinese numeral character on its own (二 of 二氮嗪), not a number word (二线) or a
    measure word jieba calls a numeral (例 of 多少例)."""
    word, flag = pair
    return len(word) == 1 and flag == "m" and unicodedata.numeric(word, None) is not None


def fragment(pair: tuple[str, str]) -> bool:
    """A character jieba left alone that can be part of a name: a noun, numeral, bound
    morpheme (…g: 嗪, 嗜) or unclassed one, not a free verb, adjective, particle or function
    word (用, 高, 吗, 的)."""
    word, flag = pair
    return (
        len(word) == 1
        and bool(_CJK_WORD.match(word))
        and (flag.endswith("g") or flag[:1] in {"n", "m", "x", "z", "j"})
    )


def merged(spans: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    """Token spans in order, overlapping or touching ones joined into one name, which a name
    rule found where it found any of its parts."""
    joined: list[tuple[int, int, bool]] = []
    for start, end, named in sorted(spans):
        if joined and start <= joined[-1][1]:
            first, last, either = joined[-1]
            joined[-1] = (first, max(last, end), either or named)
        else:
            joined.append((start, end, named))
    return joined


def name_tail(following: list[tuple[str, str]]) -> int:
    """How many single characters jieba split off the end of a name it does not know (特罗 / 司 /
    他): noun-like or unclassed ones, not a verb, locative or particle (应, 中, 的)."""
    count = 0
    for word, flag in following:
        if len(word) != 1 or not _CJK_WORD.match(word) or flag[:1] not in {"n", "r", "g", "z"}:
            break
        count += 1
    return count


def name_part(pair: tuple[str, str]) -> bool:
    """A word that can begin a name: Chinese, not a function word, verb or numeral."""
    word, flag = pair
    return bool(_CJK_WORD.match(word)) and flag[:1] not in ZH_FUNCTION_CLASSES | {"v", "m"}


class Marks(dict):
    """A private-use character standing for each form, and ``inverse`` from mark to form."""

    def __init__(self, forms: Iterable[str] = ()) -> None:
        super().__init__((form, chr(0xE000 + i)) for i, form in enumerate(sorted(set(forms))))
        self.inverse = {mark: form for form, mark in self.items()}
