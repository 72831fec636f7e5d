"""Is a question inside what the review covers? Named medical entities it never mentions.

A question naming a drug, disease, trial or vaccine that appears nowhere in the indexed corpus
(text, reference entries, trial records) nor in the bilingual glossary asks about something the
review cannot answer, however close its other words are (``肝细胞癌 … 阿替利珠单抗联合贝伐珠单抗``
shares the drugs with a passage, not the disease). Only entity-like words count: generic words
that a paraphrase brings in (``cohort``, ``差别``) never do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import jieba

from nenqa.glossary import normalize_text
from nenqa.text import CJK_RANGE

jieba.setLogLevel(logging.WARNING)

# Chinese words ending like a disease, drug or vaccine (糖尿病, 乳腺癌, 胰岛素, 二甲双胍, 疫苗).
_ZH_ENTITY_END = "癌瘤病症炎喘胍素苗药"
_CJK_WORD = re.compile(f"^[{CJK_RANGE}]+$")
_LATIN_WORD = re.compile(r"[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*")
# INN stems of drug names, disease and organ-system morphology (cabozantinib, metformin,
# hepatitis, antihypertensive, corticosteroid).
_EN_ENTITY_END = re.compile(
    r"(?:mab|nib|tide|platin|formin|statin|sartan|pril|olol|vir|cillin|mycin|azole|"
    r"itis|osis|emia|pathy|ectomy|tensive|tension|steroid|vaccine|diabetes|asthma)$",
    re.IGNORECASE,
)
_EN_ENTITY_START = re.compile(r"^(?:anti|hyper|hypo|cardio|nephro|neuro)[a-z]{5,}", re.IGNORECASE)
# Organs and common clinical topics outside oncology; entities like the others, so a question
# naming one the corpus never mentions (kidney, pregnancy) is out of scope.
_EN_CLINICAL_WORDS = frozenset(
    "kidney kidneys renal heart cardiac coronary brain stroke pregnancy pregnant infant infants "
    "child children pediatric paediatric insulin vaccine vaccines vaccination influenza covid "
    "hiv hepatitis depression migraine arthritis epilepsy dementia obesity allergy".split()
)

_AGE = re.compile(r"^\d+-(?:year|month|week|day)s?-old$", re.IGNORECASE)


class ScopeCheck:
    """Finds the entity-like words of a question that the corpus and glossary never mention."""

    def __init__(self, corpus_texts: Iterable[str], glossary_forms: Iterable[str] = ()) -> None:
        texts = [normalize_text(t) for t in corpus_texts]
        forms = [normalize_text(f) for f in glossary_forms]
        self._text = "\n".join([*texts, *forms])
        self._latin = {m.group().lower() for m in _LATIN_WORD.finditer(self._text)}

    def unknown_entities(self, question: str) -> list[str]:
        """Entity-like words of ``question`` absent from the corpus, in question order."""
        folded = normalize_text(question)
        unknown: list[str] = []
        for word in _LATIN_WORD.findall(question):
            if _is_latin_entity(word) and not self._knows_latin(word):
                unknown.append(word)
        words = [w for w in jieba.cut(folded) if w.strip()]
        for i, word in enumerate(words):
            if not _CJK_WORD.match(word) or word[-1] not in _ZH_ENTITY_END:
                continue
            # A suffix jieba cut off on its own (肝细胞 / 癌) belongs to the word before it.
            if len(word) == 1 and i > 0 and _CJK_WORD.match(words[i - 1]):
                word = words[i - 1] + word
            if len(word) >= 2 and word not in self._text:
                unknown.append(word)
        return list(dict.fromkeys(unknown))

    def _knows_latin(self, word: str) -> bool:
        lowered = word.lower()
        if lowered in self._latin or lowered.replace("-", "") in self._latin:
            return True
        if lowered.endswith("s") and lowered[:-1] in self._latin:  # SSAs, NETs
            return True
        # A combination (atezolizumab-bevacizumab) is known when each of its parts is.
        parts = [p for p in re.split(r"[-/]", lowered) if p]
        return len(parts) > 1 and all(p in self._latin or p.isdigit() for p in parts)


def _is_latin_entity(word: str) -> bool:
    """Trial-, drug-, disease- or organ-like: letters with digits, capitals, a drug or disease
    stem, or a clinical word outside oncology."""
    if word.isdigit() or len(word) < 3 or _AGE.match(word):
        return False
    has_letter = any(c.isalpha() for c in word)
    has_digit = any(c.isdigit() for c in word)
    capitals = sum(c.isupper() for c in word)
    return (
        (has_letter and has_digit)
        or (capitals >= 3 and capitals >= len([c for c in word if c.isalpha()]) - 1)
        or bool(_EN_ENTITY_END.search(word) or _EN_ENTITY_START.match(word))
        or word.lower() in _EN_CLINICAL_WORDS
    )
