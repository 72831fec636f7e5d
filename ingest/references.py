"""One reference-list entry as printed (GB/T 7714 or Harvard style) into a ``Reference``.

Shared by the review parser and the Markdown/plain-text reader: entries cut by a page break are
joined (``568-`` + ``571.``), en dashes used as hyphens become ``-`` and ``[J] .`` becomes
``[J].``, then authors, title, journal (or publisher), year and volume/pages are split out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nenqa.types import Reference, Span

DASHES = str.maketrans({"–": "-", "—": "-", "‐": "-", "‑": "-", "‒": "-", "−": "-"})
_REFERENCE_TYPE = re.compile(r"\s*\[(?P<type>[A-Z]{1,2}(?:/OL)?)\]\s*\.?\s*")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")


@dataclass
class ReferenceDraft:
    """A reference entry while its lines are being collected."""

    number: int
    line: int
    start: int
    end: int
    parts: list[str] = field(default_factory=list)
    alternate: str | None = None

    def parse(self) -> Reference:
        text = self.parts[0]
        for part in self.parts[1:]:
            text = join_reference(text, part)
        return parse_reference_entry(
            self.number,
            repair_reference(text),
            Span(self.start, self.end),
            repair_reference(self.alternate) if self.alternate else None,
        )


def join_reference(left: str, right: str) -> str:
    """Join an entry cut by a page break: ``568-`` + ``571.`` without a space, words with one."""
    left, right = left.rstrip(), right.lstrip()
    if left.endswith(("-", "–", "—")):
        return left + right
    return f"{left} {right}"


def repair_reference(text: str) -> str:
    text = text.translate(DASHES)
    text = re.sub(r"\]\s+\.", "].", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def _strip_emphasis(text: str) -> str:
    return re.sub(r"\*+([^*]+)\*+", r"\1", text).strip()


def parse_reference_entry(number: int, text: str, span: Span, alternate: str | None) -> Reference:
    """Split one GB/T 7714 entry into authors, title, journal (or publisher), year, volume/pages.

    Authors end at ``et al.`` or the first ``". "``; a Harvard-style ``Authors (2019) Title``
    gives the year in parentheses. ``et al.`` is kept as the last author so the printed list
    reads back unchanged.
    """
    authors_text, rest, year = "", text, None
    harvard = re.match(r"^(?P<authors>[^.\[]+?)\s*\((?P<year>(?:19|20)\d{2})\)\s+", text)
    et_al = re.search(r"\bet al\.", text)
    if harvard:
        authors_text, rest = harvard.group("authors"), text[harvard.end() :]
        year = int(harvard.group("year"))
    elif et_al:
        authors_text, rest = text[: et_al.end()], text[et_al.end() :]
    else:
        first_stop = re.search(r"[.。]\s", text)
        if first_stop:
            authors_text, rest = text[: first_stop.start()], text[first_stop.end() :]
    authors = tuple(
        name.strip() for name in re.split(r",\s*", authors_text.rstrip(". ")) if name.strip()
    )
    if authors and authors[-1] == "et al":
        authors = (*authors[:-1], "et al.")

    kind = _REFERENCE_TYPE.search(rest)
    if kind:
        title, after = rest[: kind.start()], rest[kind.end() :]
    else:
        title, after = rest, ""
    title = _strip_emphasis(title.strip().rstrip("."))

    journal, volume_pages = "", ""
    italic = re.match(r"\*(?P<journal>[^*]+)\*\s*,?\s*", after)
    if italic:
        journal, after = italic.group("journal").strip(), after[italic.end() :]
    year_match = _YEAR.search(after)
    if not italic and kind and kind.group("type") != "EB/OL":
        # Books: "Lyon: IARC Press, 2019." — publisher up to the year.
        journal = after[: year_match.start()].strip(" ,.") if year_match else after.strip(" .")
    if kind and kind.group("type") == "EB/OL":
        url = re.search(r"<?(?P<url>https?://[^\s>]+)>?", after)
        journal = url.group("url") if url else ""
    elif year_match:
        year = year if year is not None else int(year_match.group())
        tail = after[year_match.end() :].lstrip(" ,")
        if not re.match(r"^\.\s*\S", tail):  # "2022. Online ahead of print." has no volume
            volume_pages = tail.rstrip(" .")
    if year is None and year_match:
        year = int(year_match.group())
    return Reference(
        number=number,
        text=text,
        authors=authors,
        title=title,
        journal=_strip_emphasis(journal),
        year=year,
        volume_pages=volume_pages,
        span=span,
        alternate=alternate,
    )
