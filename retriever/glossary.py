"""Terms the review defines itself, harvested at ingest to extend the bilingual glossary.

The curated table (``data/glossary.tsv``) and the ``Glossary`` that matches and expands terms
are ground code (``nenqa.glossary``); what only the retriever needs lives here: the pairs the
review writes as ``中文(English term, ABBR)``.
"""

from __future__ import annotations

import re

from nenqa.glossary import Term
from nenqa.text import CJK_RANGE as _CJK

# 中文(english words, ABBR) with either half- or full-width brackets.
_DEFINITION = re.compile(
    rf"([{_CJK}A-Za-z0-9\-]*[{_CJK}])\s*[(（]\s*([A-Za-z][A-Za-z0-9 \-,'/]+?)"
    r"(?:\s*[,，]\s*([A-Za-z0-9\-/]{2,12}))?\s*[)）]"
)
# Words after which a new noun phrase starts in the text preceding a definition.
_PHRASE_BREAK = re.compile(r".*(?:的|为|是|和|及|与|或|、|，|,|在|对|将|即|如|包括|通过)")
# A free numeral before a definition (a year, an edition: 2019年第5版世界卫生组织) and the unit
# after it: the defined term starts after them. Digits inside a Latin name (Ki-67, 5-FU, G3) stay.
_NUMERAL = re.compile(r".*(?<![A-Za-z0-9.\-])\d+(?:\.\d+)?(?![A-Za-z0-9.\-])[年月日版期届次]?")


def harvest_definitions(text: str) -> list[Term]:
    """Pairs the review defines inline, e.g. ``治疗失败时间(time to treatment failure, TTF)``."""
    terms: list[Term] = []
    for match in _DEFINITION.finditer(text):
        before, english, abbr = match.group(1), match.group(2).strip(), match.group(3)
        head = _NUMERAL.sub("", _PHRASE_BREAK.sub("", before))[-12:]
        if len(head) < 2 or len(english) < 3:
            continue
        terms.append(Term((head,), (english,), (abbr,) if abbr else (), "other"))
    return terms
