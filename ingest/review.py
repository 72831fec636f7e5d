"""Parse the review as extracted from its PDF into a ``Document``: front matter, sections,
sentences with citation numbers, and the numbered reference list.

The extraction keeps the PDF's artefacts; this module repairs them without losing track of the
source: paragraphs cut by a page break (a block that ends without sentence-final punctuation,
then blank lines, then its continuation) are joined, reference entries split over pages are
joined, and every ``Sentence`` carries the ``Span``s of the original text it was made from.

Choices the rest of the pipeline relies on:

- Sentence text keeps the citation markers exactly as printed (``^[4-5]``); ``Sentence.refs``
  holds the numbers, ranges expanded, sorted and unique. Body characters are never rewritten,
  so the source pieces of a sentence reassemble its text except for break whitespace.
- The expert profile printed above the title becomes the section ``专家简介``; the abstracts are
  the sections ``摘要`` and ``Abstract`` (language ``en``); the text before section 1 is
  ``引言``. The conflict-of-interest statement and the keyword lines are not kept.
- Reference entries are normalised: en dashes used as hyphens become ``-`` and ``[J] .``
  becomes ``[J].``; their ``span`` covers the whole entry in the source, alternate form included.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ingest.references import DASHES, ReferenceDraft, join_reference
from nenqa.errors import (
    EmptyFileError,
    EncodingError,
    MalformedRecordError,
    UnreadableFileError,
)
from nenqa.text import (
    CLOSERS,
    detect_language,
    parse_citation_markers,
    sentence_spans,
    strip_citation_markers,
)
from nenqa.types import (
    Document,
    FrontMatter,
    Paragraph,
    Reference,
    Section,
    Sentence,
    Span,
)

# Sentence-final punctuation; a block ending in one of these (possibly followed by closing
# brackets, quotes or citation markers) is complete, anything else was cut by a page break.
SENTENCE_FINAL = "。！？；.!?"

# Journals recognised by the ISSN in the DOI or article number (the review never prints its own
# journal name outside the expert profile).
JOURNALS_BY_ISSN = {"1007-3639": "中国癌症杂志 (China Oncology)"}

_SUPERSCRIPT_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹"

_COLUMN_LABEL = re.compile(r"^·.*·$")
_HEADING = re.compile(r"^(?P<number>\d{1,2})\s+(?P<title>[^\s\d.。，,；;：:！？!?].{0,29})$")
_ABSTRACT_ZH = re.compile(r"^\[\s*摘\s*要\s*\]\s*")
_ABSTRACT_EN = re.compile(r"^\[\s*\**\s*Abstract\s*\**\s*\]\s*", re.IGNORECASE)
_KEYWORDS = re.compile(r"^\[\s*\**\s*(?:关\s*键\s*词|Key\s*words)\s*\**\s*\]", re.IGNORECASE)
_REFERENCES_HEADING = re.compile(r"^\[?\s*(?:参\s*考\s*文\s*献|References)\s*\]?$", re.I)
_BODY_END = re.compile(r"^(?:利益冲突|Conflicts? of interest)", re.IGNORECASE)
_DOI = re.compile(r"\bDOI\s*[:：]\s*(?P<doi>10\.\d{4,9}/\S+?)[.。]?(?:\s|$)", re.IGNORECASE)
_ISSN_YEAR = re.compile(r"(?P<issn>\d{4}-\d{3}[\dX])\((?P<year>(?:19|20)\d{2})\)")
_DOI_ISSN_YEAR = re.compile(r"(?P<issn>\d{4}-\d{3}[\dX])\.(?P<year>(?:19|20)\d{2})\.")
_EN_AUTHOR = (
    rf"[A-Z][A-Z'-]+(?:\s[A-Z][A-Z'-]+)?\s[A-Z][a-z]+(?:-[a-z]+)?[{_SUPERSCRIPT_DIGITS}\d,]*"
)
_EN_TITLE_AUTHORS = re.compile(
    rf"^(?P<title>[A-Z][^()\[\]]+?)\s+(?P<authors>{_EN_AUTHOR}(?:,?\s*{_EN_AUTHOR})*)\s*(?:\(|$)"
)
_LIST_MARKER = re.compile(r"^[-*+]\s+")
_REFERENCE_NUMBER = re.compile(r"^\[(?P<number>\d+)\]\s*")


@dataclass(frozen=True)
class _Line:
    """One physical line of the source: its text without the newline, offsets and number."""

    text: str
    start: int
    number: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


class _Stitched:
    """Repaired text built from pieces of the source, remembering where each piece came from."""

    def __init__(self) -> None:
        self.text = ""
        self._pieces: list[tuple[int, int, int]] = []  # (text_start, source_start, length)

    def add_source(self, source: str, start: int, end: int) -> None:
        self._pieces.append((len(self.text), start, end - start))
        self.text += source[start:end]

    def add_separator(self, separator: str) -> None:
        self.text += separator

    def spans(self, start: int, end: int) -> tuple[Span, ...]:
        """The source spans behind ``text[start:end]``; separators contribute none."""
        spans: list[Span] = []
        for text_start, source_start, length in self._pieces:
            lo, hi = max(start, text_start), min(end, text_start + length)
            if lo >= hi:
                continue
            span = Span(source_start + lo - text_start, source_start + hi - text_start)
            if spans and spans[-1].end == span.start:
                span = Span(spans[-1].start, span.end)
                spans.pop()
            spans.append(span)
        return tuple(spans)


def normalise_for_matching(text: str) -> str:
    """Fold width and compatibility forms (NFKC: ``Ⅲ``→``III``, ``（``→``(``) and dashes to ``-``.

    For matching and lookup only: offsets of the result do not line up with the input.
    """
    folded = unicodedata.normalize("NFKC", text).translate(DASHES)
    return folded.replace("\\geq", "≥").replace("\\leq", "≤")


def read_utf8(path: Path) -> str:
    """The file's text, decoded as strict UTF-8 (a UTF-8 byte-order mark is dropped).

    Raises ``UnreadableFileError`` (missing, a directory, no permission), ``EmptyFileError``
    (no bytes or only whitespace) and ``EncodingError`` (UTF-16/32, invalid UTF-8, NUL bytes),
    each naming the file and line.
    """
    return decode_utf8(read_source_bytes(path), path)


def read_source_bytes(path: Path) -> bytes:
    """The file's bytes; ``UnreadableFileError`` (line 0) says why they cannot be read."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UnreadableFileError(path, 0, "file not found") from None
    except IsADirectoryError:
        raise UnreadableFileError(path, 0, "is a directory, expected a text file") from None
    except PermissionError:
        raise UnreadableFileError(path, 0, "permission denied; make the file readable") from None
    except OSError as error:
        raise UnreadableFileError(path, 0, f"cannot be read: {error.strerror}") from None
    return data


def decode_utf8(data: bytes, path: Path) -> str:
    """``data`` decoded as strict UTF-8; errors name ``path`` and the offending line."""
    for bom, name in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if data.startswith(bom):
            raise EncodingError(path, 1, f"file is {name} (byte-order mark); re-save it as UTF-8")
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        byte = data[error.start]
        hint = ""
        try:
            data.decode("gb18030")
            hint = "; it decodes as GB18030/GBK, convert it with `iconv -f gb18030 -t utf-8`"
        except UnicodeDecodeError:
            pass
        raise EncodingError(
            path, line, f"byte 0x{byte:02x} at column {column} is not valid UTF-8{hint}"
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise EncodingError(path, line, "contains NUL bytes; this is not a text file")
    if not text.strip():
        raise EmptyFileError(path, 1, "file is empty; expected the extracted review as text")
    return text


def parse_review(path: Path) -> Document:
    """Parse the extracted review at ``path`` into a ``Document``.

    ``doc_id`` is the file name's stem, ``sha256`` the digest of the file's bytes. Raises the
    errors of ``read_utf8`` and ``MalformedRecordError`` when a required part (title,
    ``[摘要]``, numbered sections in order, the reference list numbered 1..N) is missing, or a
    citation marker cites a number the reference list lacks.
    """
    path = Path(path)
    data = read_source_bytes(path)
    text = decode_utf8(data, path)
    digest = hashlib.sha256(data).hexdigest()
    return _ReviewParser(path, text).parse(doc_id=_doc_id(path), sha256=digest)


def _doc_id(path: Path) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-") or "document"


def _lines(text: str) -> list[_Line]:
    lines, offset = [], 0
    for number, raw in enumerate(text.splitlines(keepends=True), start=1):
        body = raw.rstrip("\r\n")
        lines.append(_Line(body, offset, number))
        offset += len(raw)
    return lines


def _blocks(lines: list[_Line]) -> list[list[_Line]]:
    """Runs of consecutive non-blank lines (markdown paragraphs)."""
    blocks: list[list[_Line]] = []
    current: list[_Line] = []
    for line in lines:
        if line.text.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _block_text(block: list[_Line]) -> str:
    return " ".join(line.text.strip() for line in block)


def _ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with sentence-final punctuation (closers and markers allowed after)."""
    stripped = strip_citation_markers(text).rstrip()
    stripped = stripped.rstrip(CLOSERS + " ")
    return bool(stripped) and stripped[-1] in SENTENCE_FINAL


def _join_separator(left: str, right: str) -> str:
    """No space inside CJK text (``兰`` + ``瑞肽``); one space between Latin words or numbers."""
    if not left or not right:
        return ""
    a, b = left[-1], right[0]
    return " " if (a.isascii() and a.isalnum()) and (b.isascii() and b.isalnum()) else ""


class _ReviewParser:
    """Walks the blocks of the extracted review once, front to back."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.lines = _lines(text)
        self.blocks = _blocks(self.lines)
        self._line_starts = [line.start for line in self.lines]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self._line_starts, offset)

    def malformed(self, line: int, reason: str) -> MalformedRecordError:
        return MalformedRecordError(self.path, line, reason)

    def parse(self, *, doc_id: str, sha256: str) -> Document:
        abstract_at = self._find_block(_ABSTRACT_ZH)
        if abstract_at is None:
            raise self.malformed(1, "no Chinese abstract '[摘要] ...' found; is this the review?")
        references_at = self._find_block(_REFERENCES_HEADING)
        if references_at is None:
            raise self.malformed(len(self.lines), "no reference list heading '[参 考 文 献]' found")
        if references_at <= abstract_at:
            raise self.malformed(
                self.blocks[references_at][0].number,
                "the reference list heading comes before the abstract '[摘要]'; the abstract "
                "comes first and the references last",
            )
        profile, title_block, authors_block = self._front_blocks(abstract_at)
        body_start = max(
            i
            for i in range(abstract_at, references_at)
            if _KEYWORDS.match(_block_text(self.blocks[i]))
            or _ABSTRACT_EN.match(_block_text(self.blocks[i]))
            or i == abstract_at
        )
        front = self._front_matter(title_block, authors_block, abstract_at, body_start)

        sections: list[Section] = []
        if profile:
            sections.append(self._section("", "专家简介", [[block] for block in profile]))
        sections.append(self._labelled_section("摘要", abstract_at, _ABSTRACT_ZH))
        english = next(
            (
                i
                for i in range(abstract_at, body_start + 1)
                if _ABSTRACT_EN.match(_block_text(self.blocks[i]))
            ),
            None,
        )
        if english is not None:
            sections.append(self._labelled_section("Abstract", english, _ABSTRACT_EN))
        sections.extend(self._body_sections(body_start + 1, references_at))
        references = self._references(references_at)
        self._check_citations(sections, references)
        return Document(
            doc_id=doc_id,
            path=str(self.path),
            sha256=sha256,
            front=front,
            sections=tuple(sections),
            references=tuple(references),
            source_text=self.text,
        )

    # --- front matter -------------------------------------------------------------------

    def _find_block(self, pattern: re.Pattern[str]) -> int | None:
        return next(
            (i for i, block in enumerate(self.blocks) if pattern.match(_block_text(block))), None
        )

    def _front_blocks(
        self, abstract_at: int
    ) -> tuple[list[list[_Line]], list[_Line], list[_Line] | None]:
        """Expert profile blocks, the Chinese title block and the authors block before it."""
        candidates = [
            i
            for i in range(abstract_at)
            if not _COLUMN_LABEL.match(_block_text(self.blocks[i]))
            and not _ends_sentence(_block_text(self.blocks[i]))
            and len(_block_text(self.blocks[i])) <= 80
        ]
        if not candidates:
            raise self.malformed(
                self.blocks[abstract_at][0].number,
                "no title found before the abstract (a short line without final punctuation)",
            )
        title_at = candidates[0]
        profile = [
            block
            for block in self.blocks[:title_at]
            if not _COLUMN_LABEL.match(_block_text(block)) and _ends_sentence(_block_text(block))
        ]
        authors = self.blocks[title_at + 1] if title_at + 1 < abstract_at else None
        return profile, self.blocks[title_at], authors

    def _front_matter(
        self,
        title_block: list[_Line],
        authors_block: list[_Line] | None,
        abstract_at: int,
        body_start: int,
    ) -> FrontMatter:
        front_text = "\n".join(
            _block_text(block) for block in self.blocks[abstract_at : body_start + 1]
        )
        doi_match = _DOI.search(front_text)
        doi = doi_match.group("doi") if doi_match else ""
        issn_year = _ISSN_YEAR.search(front_text) or _DOI_ISSN_YEAR.search(doi)
        title_en = ""
        authors_en: tuple[str, ...] = ()
        for block in self.blocks[abstract_at : body_start + 1]:
            match = _EN_TITLE_AUTHORS.match(_block_text(block))
            if match:
                title_en = match.group("title").strip()
                authors_en = tuple(
                    re.sub(rf"[{_SUPERSCRIPT_DIGITS}\d,]+$", "", name.group()).strip()
                    for name in re.finditer(_EN_AUTHOR, match.group("authors"))
                )
                break
        authors_zh: tuple[str, ...] = ()
        if authors_block is not None:
            authors_zh = tuple(
                name
                for part in re.split(r"[，,、]", _block_text(authors_block))
                if (name := re.sub(rf"[\s{_SUPERSCRIPT_DIGITS}*]+", "", part))
            )
        return FrontMatter(
            title_zh=_block_text(title_block),
            title_en=title_en,
            authors_zh=authors_zh,
            authors_en=authors_en,
            journal=JOURNALS_BY_ISSN.get(issn_year.group("issn"), "") if issn_year else "",
            year=int(issn_year.group("year")) if issn_year else None,
            doi=doi,
        )

    # --- sections, paragraphs, sentences ------------------------------------------------

    def _labelled_section(self, title: str, index: int, label: re.Pattern[str]) -> Section:
        block = self.blocks[index]
        first = block[0]
        skip = label.match(first.text.lstrip())
        if skip is None:  # the caller found the block by this label
            raise self.malformed(first.number, f"expected the label of '{title}'")
        offset = first.start + (len(first.text) - len(first.text.lstrip())) + skip.end()
        return self._section("", title, [[block]], first_offset=offset)

    def _section(
        self,
        number: str,
        title: str,
        paragraphs: list[list[list[_Line]]],
        *,
        first_offset: int | None = None,
    ) -> Section:
        """A section from paragraphs, each given as the blocks that are joined into it."""
        path = f"{number} {title}".strip() if number else title
        built = []
        for k, blocks in enumerate(paragraphs):
            stitched = self._stitch(blocks, first_offset if k == 0 else None)
            built.append(self._paragraph(path, stitched))
        return Section(number=number, title=title, paragraphs=tuple(built))

    def _stitch(self, blocks: list[list[_Line]], first_offset: int | None) -> _Stitched:
        stitched = _Stitched()
        for block in blocks:
            for line in block:
                start = line.start + len(line.text) - len(line.text.lstrip())
                if first_offset is not None and line is blocks[0][0]:
                    start = max(start, first_offset)
                end = line.start + len(line.text.rstrip())
                if start >= end:
                    continue
                stitched.add_separator(_join_separator(stitched.text, self.text[start:end]))
                stitched.add_source(self.text, start, end)
        return stitched

    def _paragraph(self, section: str, stitched: _Stitched) -> Paragraph:
        language = detect_language(stitched.text)
        sentences = tuple(
            Sentence(
                text=stitched.text[lo:hi],
                refs=parse_citation_markers(stitched.text[lo:hi]),
                spans=stitched.spans(lo, hi),
            )
            for lo, hi in sentence_spans(stitched.text)
        )
        return Paragraph(section=section, sentences=sentences, language=language)

    def _body_sections(self, start: int, stop: int) -> list[Section]:
        """Introduction (``引言``) and the numbered sections, joining paragraphs cut by breaks.

        A block that ends without sentence-final punctuation is joined to the blocks after it
        until one does; headings (``1 生物治疗``: number, space, short title) are never joined.
        """
        groups: list[tuple[str, str, int, list[list[list[_Line]]]]] = [("", "引言", 0, [])]
        pending: list[list[_Line]] = []
        for block in self.blocks[start:stop]:
            text = _block_text(block)
            heading = _HEADING.match(text) if len(block) == 1 else None
            if _BODY_END.match(text):
                break
            # After a cut paragraph "12 个月" continues it, unless 12 numbers the next section.
            if heading and pending and int(heading.group("number")) != len(groups):
                heading = None
            if heading and not _ends_sentence(text):
                if pending:
                    groups[-1][3].append(pending)
                    pending = []
                groups.append(
                    (heading.group("number"), heading.group("title"), block[0].number, [])
                )
                continue
            pending.append(block)
            if _ends_sentence(text):
                groups[-1][3].append(pending)
                pending = []
        if pending:
            groups[-1][3].append(pending)
        numbered = groups[1:]
        if not numbered:
            line = self.blocks[start][0].number if start < len(self.blocks) else 1
            raise self.malformed(line, "no numbered section heading such as '1 生物治疗' found")
        for expected, (number, title, line, _) in enumerate(numbered, start=1):
            if int(number) != expected:
                raise self.malformed(
                    line, f"section heading '{number} {title}' out of order; expected {expected}"
                )
        return [
            self._section(number, title, paragraphs)
            for number, title, _, paragraphs in groups
            if paragraphs or number
        ]

    # --- references ---------------------------------------------------------------------

    def _references(self, heading_at: int) -> list[Reference]:
        """The numbered list after the heading; unnumbered items continue or translate an entry.

        An unnumbered item after an entry that ends mid-sentence (``568-``, ``small-cell``)
        continues it; after a complete entry it is that entry's alternate (English) form.
        """
        heading_line = self.blocks[heading_at][0].number
        drafts: list[ReferenceDraft] = []
        for line in self.lines[heading_line:]:
            stripped = line.text.strip()
            if not stripped:
                continue
            body = _LIST_MARKER.sub("", stripped, count=1)
            has_marker = body != stripped
            numbered = _REFERENCE_NUMBER.match(body)
            end = line.start + len(line.text.rstrip())
            if numbered:
                start = line.start + line.text.index(body)
                drafts.append(ReferenceDraft(int(numbered["number"]), line.number, start, end))
                drafts[-1].parts.append(body[numbered.end() :])
                continue
            if not drafts:
                if has_marker:
                    raise self.malformed(
                        line.number, "reference list starts without a number like '[1]'"
                    )
                continue
            draft = drafts[-1]
            if not _ends_sentence(draft.alternate or draft.parts[-1]):
                if draft.alternate is not None:
                    draft.alternate = join_reference(draft.alternate, body)
                else:
                    draft.parts.append(body)
            elif has_marker and draft.alternate is None:
                draft.alternate = body
            elif has_marker:
                raise self.malformed(
                    line.number,
                    f"unnumbered entry after reference [{draft.number}], which already has "
                    "an alternate form; number it like '[n]'",
                )
            else:
                break  # the trailer after the list, e.g. (收稿日期: ...)
            draft.end = end
        if not drafts:
            raise self.malformed(heading_line, "reference list is empty")
        for expected, draft in enumerate(drafts, start=1):
            if draft.number != expected:
                raise self.malformed(
                    draft.line,
                    f"reference [{draft.number}] out of sequence; expected [{expected}]",
                )
        return [draft.parse() for draft in drafts]

    def _check_citations(self, sections: list[Section], references: list[Reference]) -> None:
        known = {reference.number for reference in references}
        for section in sections:
            for paragraph in section.paragraphs:
                for sentence in paragraph.sentences:
                    unknown = [n for n in sentence.refs if n not in known]
                    if unknown:
                        raise self.malformed(
                            self.line_of(sentence.start),
                            f"citation marker cites [{unknown[0]}], which is not in the "
                            f"reference list [1]-[{max(known)}]",
                        )
