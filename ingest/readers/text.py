"""Markdown and plain-text documents into a ``Document`` that keeps its own reference list.

What is recognised (docs/corpus.md has the user's version):

- Markdown front matter between ``---`` lines at the top: ``title``, ``authors`` (separated by
  ``;`` or ``,``, a ``[...]`` list, or ``- name`` lines), ``year``, ``journal``, ``doi`` and
  ``label`` (the short name a citation uses when there is more than one document).
- Sections: Markdown ATX headings (``#`` .. ``######``); in plain text, a line standing alone
  that is short, has no sentence-final punctuation and starts with a section number (``2``,
  ``2.1``, ``3.``). A leading number is kept as the section number. A first heading of Markdown
  level 1 (plain text: a first short line without a number) is the title, not a section.
- Paragraphs: blocks of non-blank lines; in Markdown each list item is its own paragraph and
  fenced code is skipped. In plain text (often extracted from a PDF) a block that stops
  mid-sentence is joined to the next one, as a page break would have cut it.
- The reference list: after a heading (or a line on its own) ``References`` / ``Bibliography``
  / ``参考文献`` (``[参 考 文 献]`` too), up to the next heading of the same or a higher level.
  Entries start with ``[n]``, ``n.`` or ``n)`` after an optional list marker; other lines
  continue the entry before. Markdown footnote definitions ``[^n]: ...`` are entries too.
  Numbers must run 1..N.
- Citations: ``^[n]`` (as in the default review), ``[^n]``, and, when there is a reference
  list, bare ``[n]``, ``[n-m]``, ``[n, m]``. Citing a number the list lacks is refused, so no
  chunk carries a reference number that names nothing.

Offsets (``Span``) are character offsets into the decoded text; line numbers in errors count
``\\n`` from 1, as editors do.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.references import parse_reference_entry, repair_reference
from ingest.review import _ends_sentence, _Stitched
from nenqa.errors import EmptyFileError, MalformedRecordError
from nenqa.text import cited_numbers, detect_language, has_cjk, sentence_spans
from nenqa.types import Document, FrontMatter, Paragraph, Reference, Section, Sentence, Span

# Citation numbers of up to 9 digits are read (and refused when the list is shorter);
# the bound keeps int() and range expansion cheap whatever the input.
_NUMBER = r"\d{1,9}"
_LIST = rf"{_NUMBER}(?:\s*[-–—~～,，、]\s*{_NUMBER})*"
_CARET_CITATION = re.compile(rf"\^\[(?P<body>{_LIST})\]")
_FOOTNOTE_CITATION = re.compile(rf"\[\^(?P<body>{_NUMBER})\](?!:)")
_BARE_CITATION = re.compile(rf"(?<![\w\]^])\[(?P<body>{_LIST})\](?![(\[:])")
_ATX_HEADING = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?[ \t#]*$")
_FOOTNOTE_DEFINITION = re.compile(rf"^\[\^(?P<number>{_NUMBER})\]:[ \t]*")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+")
_FENCE = re.compile(r"^ {0,3}(?:```|~~~)")
_SECTION_NUMBER = re.compile(r"^(?P<number>\d{1,2}(?:\.\d{1,2}){0,3})\.?[ \t]+(?P<title>\S.*)$")
_REFERENCE_ENTRY = re.compile(
    rf"^[ \t]*(?:[-*+][ \t]+)?"
    rf"(?:\[(?P<bracketed>{_NUMBER})\]|(?P<dotted>{_NUMBER})[.)](?=\s))[ \t]*"
)
_REFERENCES_TITLES = frozenset(
    {"references", "reference", "bibliography", "works cited", "literature cited", "参考文献"}
)
_FRONT_MATTER_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)[ \t]*:[ \t]*(?P<value>.*)$")
_FRONT_MATTER_ITEM = re.compile(r"^[ \t]+-[ \t]+(?P<value>.+)$|^-[ \t]+(?P<flush>.+)$")
_DOI = re.compile(r"\b(?:doi\s*[:：]\s*)?(?P<doi>10\.\d{4,9}/[^\s\"<>]+?)[.,;]?(?:\s|$)", re.I)
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
# CJK ideographs and the full-width punctuation around them: no space when lines join.
_WIDE = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
_MAX_HEADING_CHARS = 80
_MAX_TITLE_CHARS = 150


@dataclass(frozen=True)
class TextDocument:
    """A parsed text document and what its front matter said about how to cite it."""

    document: Document
    label: str | None
    title: str


@dataclass(frozen=True)
class _Line:
    text: str
    start: int
    number: int


@dataclass
class _Block:
    kind: Literal["heading", "paragraph", "footnote"]
    lines: list[_Line] = field(default_factory=list)
    level: int = 0
    title: str = ""
    number: int = 0  # footnote number
    content_start: int = 0  # where the first line's content starts (after '#', markers)
    list_item: bool = False

    @property
    def text(self) -> str:
        return " ".join(line.text.strip() for line in self.lines)


@dataclass
class _EntryDraft:
    number: int
    line: int
    start: int
    end: int
    parts: list[str]


def parse_text(text: str, *, path: Path, sha256: str, doc_id: str, markdown: bool) -> TextDocument:
    """Parse decoded ``text`` (Markdown when ``markdown``, else plain text) into a document.

    Raises ``MalformedRecordError`` (bad front matter, unclosed code fence, reference list out
    of sequence, a citation of a missing reference) and ``EmptyFileError`` (no paragraphs),
    each naming ``path`` and the line.
    """
    return _TextParser(path, text, markdown).parse(doc_id=doc_id, sha256=sha256)


def is_references_heading(text: str) -> bool:
    """Whether ``text`` titles a reference list (``References``, ``[参 考 文 献]`` ...)."""
    folded = re.sub(r"[\s*_#\[\]【】:：]+", "", text).casefold()
    return folded in {t.replace(" ", "") for t in _REFERENCES_TITLES}


class _TextParser:
    def __init__(self, path: Path, text: str, markdown: bool) -> None:
        self.path = path
        self.text = text
        self.markdown = markdown
        self.lines: list[_Line] = []
        offset = 0
        for number, raw in enumerate(text.split("\n"), start=1):
            self.lines.append(_Line(raw.rstrip("\r"), offset, number))
            offset += len(raw) + 1
        self._line_starts = [line.start for line in self.lines]

    def malformed(self, line: int, reason: str) -> MalformedRecordError:
        return MalformedRecordError(self.path, line, reason)

    def line_of(self, offset: int) -> int:
        return max(1, bisect.bisect_right(self._line_starts, offset))

    def parse(self, *, doc_id: str, sha256: str) -> TextDocument:
        front, body_at = self._front_matter()
        blocks = self._blocks(self.lines[body_at:])
        title, blocks = self._title(front, blocks)
        body, reference_lines, footnotes = self._split_references(blocks)
        references = self._references(reference_lines, footnotes)
        sections = self._sections(body, title, references)
        if not any(section.paragraphs for section in sections):
            raise EmptyFileError(
                self.path, body_at + 1, "no paragraphs of text found; nothing to index"
            )
        authors = tuple(_authors(front.get("authors", "")))
        year_match = _YEAR.search(front.get("year", "") or front.get("date", ""))
        doi_match = _DOI.search(front.get("doi", "")) or _DOI.search(
            "\n".join(line.text for line in self.lines[:60])
        )
        document = Document(
            doc_id=doc_id,
            path=str(self.path),
            sha256=sha256,
            front=FrontMatter(
                title_zh=title if has_cjk(title) else "",
                title_en="" if has_cjk(title) else title,
                authors_zh=tuple(a for a in authors if has_cjk(a)),
                authors_en=tuple(a for a in authors if not has_cjk(a)),
                journal=front.get("journal", ""),
                year=int(year_match.group()) if year_match else None,
                doi=doi_match.group("doi") if doi_match else "",
            ),
            sections=tuple(sections),
            references=tuple(references),
            source_text=self.text,
        )
        return TextDocument(document=document, label=front.get("label") or None, title=title)

    # --- front matter and blocks -------------------------------------------------------

    def _front_matter(self) -> tuple[dict[str, str], int]:
        """Key/values of a leading ``---`` block and the index of the first body line."""
        if not self.markdown or self.lines[0].text.strip() != "---":
            return {}, 0
        closing = next(
            (i for i, line in enumerate(self.lines[1:], 1) if line.text.strip() in {"---", "..."}),
            None,
        )
        if closing is None:
            raise self.malformed(
                1, "front matter opened with '---' on line 1 is never closed with '---'"
            )
        values: dict[str, str] = {}
        key = None
        for line in self.lines[1:closing]:
            pair = _FRONT_MATTER_KEY.match(line.text)
            item = _FRONT_MATTER_ITEM.match(line.text)
            if pair:
                key = pair.group("key").lower()
                values[key] = _unquote(pair.group("value"))
            elif item and key is not None:
                value = _unquote(item.group("value") or item.group("flush"))
                values[key] = f"{values[key]}; {value}" if values[key] else value
        return values, closing + 1

    def _blocks(self, lines: list[_Line]) -> list[_Block]:
        blocks: list[_Block] = []
        current: _Block | None = None
        fence_line: int | None = None
        for line in lines:
            stripped = line.text.strip()
            if self.markdown and _FENCE.match(line.text):
                current = None
                fence_line = None if fence_line is not None else line.number
                continue
            if fence_line is not None:
                continue
            if not stripped:
                current = None
                continue
            heading = _ATX_HEADING.match(line.text) if self.markdown else None
            if heading:
                current = None
                title = (heading.group("text") or "").strip()
                if title:
                    blocks.append(
                        _Block("heading", [line], level=len(heading.group("hashes")), title=title)
                    )
                continue
            footnote = _FOOTNOTE_DEFINITION.match(line.text) if self.markdown else None
            if footnote:
                current = _Block(
                    "footnote",
                    [line],
                    number=int(footnote.group("number")),
                    content_start=footnote.end(),
                )
                blocks.append(current)
                continue
            item = _LIST_ITEM.match(line.text) if self.markdown else None
            if item and current is not None and current.kind == "paragraph":
                current = None
            if current is None:
                current = _Block("paragraph", content_start=item.end() if item else 0)
                current.list_item = bool(item)
                blocks.append(current)
            current.lines.append(line)
        if fence_line is not None:
            raise self.malformed(fence_line, "code fence opened here is never closed")
        return [self._plain_heading(block) for block in blocks]

    def _plain_heading(self, block: _Block) -> _Block:
        """A one-line paragraph that is a numbered heading or a reference list title."""
        if block.kind != "paragraph" or len(block.lines) != 1 or block.list_item:
            return block
        text = block.text
        if is_references_heading(text):
            return _Block("heading", block.lines, level=1, title=text)
        if self.markdown or len(text) > _MAX_HEADING_CHARS or _ends_sentence(text):
            return block
        if _SECTION_NUMBER.match(text) and not _CARET_CITATION.search(text):
            return _Block("heading", block.lines, level=1, title=text)
        return block

    def _title(self, front: dict[str, str], blocks: list[_Block]) -> tuple[str, list[_Block]]:
        first = blocks[0] if blocks else None
        if first is not None and not is_references_heading(first.text):
            if self.markdown and first.kind == "heading" and first.level == 1:
                return front.get("title") or first.title, blocks[1:]
            if (
                not self.markdown
                and first.kind == "paragraph"
                and len(first.lines) == 1
                and len(first.text) <= _MAX_TITLE_CHARS
                and not _ends_sentence(first.text)
                and not _SECTION_NUMBER.match(first.text)
            ):
                return front.get("title") or first.text, blocks[1:]
        return front.get("title", ""), blocks

    def _split_references(
        self, blocks: list[_Block]
    ) -> tuple[list[_Block], list[_Line], list[_Block]]:
        """Body blocks, the reference list's lines (none without a list) and the footnotes.

        In Markdown the list ends at the next heading of the same or a higher level; in plain
        text it runs to the end (numbered entries there would look like headings).
        """
        footnotes = [block for block in blocks if block.kind == "footnote"]
        blocks = [block for block in blocks if block.kind != "footnote"]
        at = next(
            (
                i
                for i, block in enumerate(blocks)
                if block.kind == "heading" and is_references_heading(block.title)
            ),
            None,
        )
        if at is None:
            return blocks, [], footnotes
        end = len(blocks)
        if self.markdown:
            level = blocks[at].level
            end = next(
                (
                    i
                    for i in range(at + 1, len(blocks))
                    if blocks[i].kind == "heading" and blocks[i].level <= level
                ),
                end,
            )
        lines = [
            line
            for block in blocks[at + 1 : end]
            if not (self.markdown and block.kind == "heading")
            for line in block.lines
        ]
        if not lines and not footnotes:
            raise self.malformed(
                blocks[at].lines[0].number,
                f"the reference list under '{blocks[at].title}' has no entries like '[1] ...'",
            )
        return blocks[:at] + blocks[end:], lines, footnotes

    # --- references --------------------------------------------------------------------

    def _references(self, lines: list[_Line], footnotes: list[_Block]) -> list[Reference]:
        drafts: list[_EntryDraft] = []
        for line in lines:
            entry = _REFERENCE_ENTRY.match(line.text)
            end = line.start + len(line.text.rstrip())
            if entry:
                number = int(entry.group("bracketed") or entry.group("dotted"))
                start = line.start + entry.end()
                parts = [line.text[entry.end() :]]
                drafts.append(_EntryDraft(number, line.number, start, end, parts))
            elif drafts:
                drafts[-1].parts.append(line.text)
                drafts[-1].end = end
        if lines and not drafts:
            raise self.malformed(
                lines[0].number,
                "the reference list has no numbered entries; start each with '[n]' or 'n.'",
            )
        for block in footnotes:
            first = block.lines[0]
            drafts.append(
                _EntryDraft(
                    block.number,
                    first.number,
                    first.start + block.content_start,
                    block.lines[-1].start + len(block.lines[-1].text.rstrip()),
                    [first.text[block.content_start :], *(line.text for line in block.lines[1:])],
                )
            )
        drafts.sort(key=lambda d: (d.number, d.line))
        references = []
        for expected, draft in enumerate(drafts, start=1):
            if draft.number != expected:
                raise self.malformed(
                    draft.line,
                    f"reference [{draft.number}] out of sequence; expected [{expected}] "
                    "(entries are numbered 1, 2, 3 ... each once)",
                )
            text = _joined_entry(draft.parts)
            if not text:
                raise self.malformed(draft.line, f"reference [{draft.number}] is empty")
            references.append(
                parse_reference_entry(
                    draft.number, repair_reference(text), Span(draft.start, draft.end), None
                )
            )
        return references

    # --- sections, paragraphs, sentences -------------------------------------------------

    def _sections(
        self, blocks: list[_Block], title: str, references: list[Reference]
    ) -> list[Section]:
        groups: list[tuple[str, str, list[list[_Block]]]] = [("", title or "正文", [])]
        for block in blocks:
            if block.kind == "heading":
                numbered = _SECTION_NUMBER.match(block.title)
                number, name = (
                    (numbered.group("number"), numbered.group("title").strip())
                    if numbered
                    else ("", block.title)
                )
                groups.append((number, name, []))
                continue
            paragraphs = groups[-1][2]
            if (
                not self.markdown
                and paragraphs
                and not _ends_sentence(" ".join(b.text for b in paragraphs[-1]))
            ):
                paragraphs[-1].append(block)  # a paragraph cut by a page break continues
            else:
                paragraphs.append([block])
        sections: list[Section] = []
        seen: dict[str, int] = {}
        for number, name, paragraphs in groups:
            if not paragraphs:
                continue
            path = f"{number} {name}".strip() if number else name
            seen[path] = seen.get(path, 0) + 1
            if seen[path] > 1:  # chunk IDs include the section path, so keep it unique
                name = f"{name} ({seen[path]})"
                path = f"{number} {name}".strip() if number else name
            built = tuple(self._paragraph(path, group, len(references)) for group in paragraphs)
            sections.append(Section(number=number, title=name, paragraphs=built))
        return sections

    def _paragraph(self, section: str, blocks: list[_Block], reference_count: int) -> Paragraph:
        stitched = _Stitched()
        for block in blocks:
            for k, line in enumerate(block.lines):
                skip = block.content_start if k == 0 else 0
                content = line.text[skip:]
                start = line.start + skip + len(content) - len(content.lstrip())
                end = line.start + len(line.text.rstrip())
                if start >= end:
                    continue
                stitched.add_separator(_line_separator(stitched.text, self.text[start:end]))
                stitched.add_source(self.text, start, end)
        language = detect_language(stitched.text)
        sentences = []
        for lo, hi in sentence_spans(stitched.text):
            spans = stitched.spans(lo, hi)
            if not spans:
                continue
            text = stitched.text[lo:hi]
            sentences.append(
                Sentence(
                    text=text,
                    refs=self._cited(text, self.line_of(spans[0].start), reference_count),
                    spans=spans,
                )
            )
        return Paragraph(section=section, sentences=tuple(sentences), language=language)

    def _cited(self, text: str, line: int, reference_count: int) -> tuple[int, ...]:
        """Reference numbers ``text`` cites; refuses a number outside ``1..reference_count``."""
        bodies = [m.group("body") for m in _CARET_CITATION.finditer(text)]
        bodies += [m.group("body") for m in _FOOTNOTE_CITATION.finditer(text)]
        if reference_count:
            bodies += [m.group("body") for m in _BARE_CITATION.finditer(text)]
        numbers: set[int] = set()
        for body in bodies:
            if not reference_count:
                raise self.malformed(
                    line,
                    f"citation [{body}] but the document has no reference list; add one "
                    "under a heading 'References' with entries '[1] ...'",
                )
            cited = cited_numbers(body, widest=reference_count)
            outside = [n for n in cited if not 1 <= n <= reference_count]
            if outside:
                bad = min(outside) if min(outside) < 1 else max(outside)
                raise self.malformed(
                    line,
                    f"citation [{body}] cites [{bad}], which is not in the reference list "
                    f"[1]-[{reference_count}]",
                )
            numbers.update(cited)
        return tuple(sorted(numbers))


def _line_separator(left: str, right: str) -> str:
    """How two wrapped lines join: nothing inside CJK text or after a hyphen, else a space."""
    if not left or not right:
        return ""
    a, b = left[-1], right[0]
    if a in "-‐" or _WIDE.match(a) or _WIDE.match(b):
        return ""
    return " "


def _joined_entry(parts: list[str]) -> str:
    text = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if not text:
            text = part
        elif text.endswith(("-", "–", "—")):
            text += part
        else:
            text = f"{text} {part}"
    return text


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].strip()
    return value


def _authors(value: str) -> list[str]:
    value = value.strip().removeprefix("[").removesuffix("]")
    separator = ";" if ";" in value else ","
    return [_unquote(name) for name in value.split(separator) if _unquote(name)]
