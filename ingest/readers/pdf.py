"""PDF documents: the text layer (via pypdf) parsed as plain text into a ``Document``.

pypdf's plain extraction follows the content stream (so two-column pages come out column by
column) but leaves no blank lines between paragraphs. Lines that stand alone in a page's layout
get blank lines around them before the text is parsed: the reference list heading, numbered
headings (``2 Methods``: a short line after a finished sentence) and a short first line
without final punctuation (the title). Pages are joined by a blank line; a paragraph cut by a
page break is joined again by the plain-text rules.

Scanned PDFs have no text layer and are refused (run OCR first). Offsets and line numbers
refer to the text so reconstructed; errors add the page they are on. Characters pypdf could
not map (NUL and other control characters) are dropped.
"""

from __future__ import annotations

import bisect
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ingest.readers.text import TextDocument, is_references_heading, parse_text
from ingest.review import _ends_sentence
from nenqa.errors import EmptyFileError, IngestError, MalformedRecordError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_YEAR = re.compile(r"(?:19|20)\d{2}")
_HEADING = re.compile(r"^\d{1,2}(?:\.\d{1,2}){0,3}\.?\s+[A-Z\u3400-\u9fff]")
_MAX_HEADING_CHARS = 80
_MAX_TITLE_CHARS = 150


@dataclass(frozen=True)
class PdfText:
    """The text layer of a PDF and its document information."""

    text: str
    page_lines: tuple[int, ...]  # the 1-based line of the text where each page starts
    title: str
    author: str
    year: int | None

    def page_of_line(self, line: int) -> int:
        return max(1, bisect.bisect_right(self.page_lines, line))


def extract_pdf_text(path: Path, data: bytes) -> PdfText:
    """The text layer of the PDF ``data`` read from ``path``.

    Raises ``MalformedRecordError`` (not a readable PDF, encrypted, a page that cannot be
    extracted) and ``EmptyFileError`` (no text layer), naming ``path``.
    """
    with _quiet_pypdf():
        return _extract(path, data)


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """pypdf logs a warning for each damage it works around; the error we raise says enough."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _extract(path: Path, data: bytes) -> PdfText:
    from pypdf import PdfReader

    # pypdf raises many exception types on damaged files (PdfReadError, ValueError, KeyError,
    # RecursionError ...); each means the same thing here: this PDF cannot be read.
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise MalformedRecordError(
                path, 0, "the PDF is encrypted; save an unencrypted copy and add that"
            )
        pages = list(reader.pages)
    except IngestError:
        raise
    except Exception as error:
        raise MalformedRecordError(
            path,
            0,
            f"unsupported file type: not a readable PDF ({_describe(error)}); "
            "re-export the PDF, or save its text as .txt and add that",
        ) from None
    texts: list[str] = []
    page_lines: list[int] = []
    line = 1
    for number, page in enumerate(pages, start=1):
        try:
            extracted = page.extract_text() or ""
        except Exception as error:
            raise MalformedRecordError(
                path, 0, f"page {number}: the text cannot be extracted ({_describe(error)})"
            ) from None
        extracted = _CONTROL.sub("", extracted.replace("\r\n", "\n").replace("\r", "\n"))
        extracted = _separate_standalone_lines(extracted, first_page=number == 1)
        page_lines.append(line)
        texts.append(extracted)
        line += extracted.count("\n") + 2
    text = "\n\n".join(texts)
    if not text.strip():
        raise EmptyFileError(
            path,
            0,
            "the PDF has no text layer (scanned pages?); run OCR on it or save its text as .txt",
        )
    title, author, year = _document_information(reader)
    return PdfText(text, tuple(page_lines), title, author, year)


def parse_pdf(path: Path, data: bytes, *, sha256: str, doc_id: str) -> TextDocument:
    """Parse a PDF's text layer like a plain text file (see ``ingest.readers.text``).

    The PDF's own title and author (document information) fill what the text does not give.
    Errors name the line of the extracted text and its page.
    """
    pdf = extract_pdf_text(path, data)
    try:
        parsed = parse_text(pdf.text, path=path, sha256=sha256, doc_id=doc_id, markdown=False)
    except IngestError as error:
        page = pdf.page_of_line(error.line) if error.line else None
        where = f" (page {page} of the PDF's text layer)" if page else ""
        raise type(error)(path, error.line, f"{error.reason}{where}") from None
    document = parsed.document
    front = document.front
    if not (front.title_en or front.title_zh) and pdf.title:
        front = replace(front, title_en=pdf.title)
    if not (front.authors_en or front.authors_zh) and pdf.author:
        front = replace(front, authors_en=tuple(a.strip() for a in pdf.author.split(";")))
    if front.year is None and pdf.year is not None:
        front = replace(front, year=pdf.year)
    if front is not document.front:
        document = replace(document, front=front)
    return TextDocument(document=document, label=None, title=parsed.title or pdf.title)


def _separate_standalone_lines(text: str, *, first_page: bool) -> str:
    """``text`` with blank lines around its title, headings and reference list heading."""
    out: list[str] = []
    after_sentence = True
    for i, line in enumerate(text.split("\n")):
        stripped = line.strip()
        standalone = bool(stripped) and (
            is_references_heading(stripped)
            or (
                after_sentence
                and len(stripped) <= _MAX_HEADING_CHARS
                and _HEADING.match(stripped) is not None
                and not _ends_sentence(stripped)
            )
            or (
                first_page
                and i == 0
                and len(stripped) <= _MAX_TITLE_CHARS
                and not _ends_sentence(stripped)
            )
        )
        out.extend(["", line, ""] if standalone else [line])
        if stripped:
            after_sentence = standalone or _ends_sentence(stripped)
    return "\n".join(out)


def _document_information(reader) -> tuple[str, str, int | None]:
    try:
        info = reader.metadata or {}
        title = str(info.get("/Title") or "").strip()
        author = str(info.get("/Author") or "").strip()
        created = _YEAR.search(str(info.get("/CreationDate") or ""))
    except Exception:  # damaged document information is not worth refusing the text for
        return "", "", None
    year = int(created.group()) if created else None
    return _CONTROL.sub("", title), _CONTROL.sub("", author), year


def _describe(error: Exception) -> str:
    message = str(error).strip() or type(error).__name__
    return message if len(message) <= 200 else message[:200] + "..."
