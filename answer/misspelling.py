"""A glossary name typed with a slip is that name, not one the review never mentions.

In English a slip is one letter inserted, dropped, changed or two swapped ("lantreotide",
"everolimous"); only in a word of letters alone, at least seven long, so trial numbers
(KEYNOTE-158, KEYNOTE-159) and short codes stay distinct. In Chinese the common slip is an input
method's: another character of the same reading (兰锐肽 for 兰瑞肽, 依维莫斯 for 依维莫司). Two
different drugs one character apart read differently (阿帕替尼 apatinib, 阿昔替尼 axitinib),
so a name of three or more characters counts when its toneless pinyin is a glossary form's.
"""

from __future__ import annotations

from collections.abc import Iterable

from pypinyin import lazy_pinyin

from answer.disease_mentions import CJK_WORD as _CJK_WORD


class Misspellings:
    """Finds the glossary form a question's unknown word is a slip for."""

    def __init__(self, forms: Iterable[str], *, min_letters: int = 7, min_characters: int = 3):
        forms = list(forms)
        self.min_letters = min_letters
        self.min_characters = min_characters
        # By length, in order: the same form wins in every process when two are a slip away.
        latin = sorted({f.lower() for f in forms if f.isascii() and f.isalpha()})
        self._latin: dict[int, list[str]] = {}
        for lowered in latin:
            if len(lowered) >= min_letters:
                self._latin.setdefault(len(lowered), []).append(lowered)
        self._readings = {
            reading(form): form
            for form in forms
            if _CJK_WORD.match(form) and len(form) >= min_characters
        }

    def latin(self, word: str) -> str | None:
        """The glossary form ``word`` is one slip away from, if any."""
        lowered = word.lower()
        if not (lowered.isascii() and lowered.isalpha() and len(lowered) >= self.min_letters):
            return None
        for length in (len(lowered) - 1, len(lowered), len(lowered) + 1):
            for form in self._latin.get(length, ()):
                if one_edit(lowered, form):
                    return form
        return None

    def chinese(self, word: str) -> str | None:
        """The glossary form that reads like ``word`` (another character, the same sound)."""
        if len(word) < self.min_characters or not _CJK_WORD.match(word):
            return None
        return self._readings.get(reading(word))


def reading(word: str) -> str:
    """A Chinese word's toneless pinyin, syllables apart."""
    return " ".join(lazy_pinyin(word))


def one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one inserted, dropped, changed or swapped
    letter."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((i for i, (x, y) in enumerate(zip(short, long, strict=False)) if x != y), len(short))
    return short[i:] == long[i + 1 :]
