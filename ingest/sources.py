"""One source file into a ``ParsedSource``: its document, its chunks and how to cite it.

Formats, chosen by file type (docs/corpus.md describes them for users):

| suffix                  | kind       | reader                                            |
|-------------------------|------------|---------------------------------------------------|
| ``.md``, ``.markdown``  | ``review`` | ``ingest.review``, for the journal layout (``[摘要]``) |
| ``.md``, ``.markdown``  | ``markdown`` | ``ingest.readers.text``, any other Markdown     |
| ``.txt``                | ``text``   | ``ingest.readers.text`` (plain text)              |
| ``.pdf``                | ``pdf``    | ``ingest.readers.pdf`` (text layer, via pypdf)    |
| ``.jsonl``              | ``trials`` | ``ingest.trials`` (one ``TrialRecord`` per line)  |
| ``.json``               | ``ctgov``  | ``ingest.readers.ctgov`` (ClinicalTrials.gov v2)  |

Every chunk gets three metadata fields on top of what its chunker gives:

- ``doc_label``: the document's short citation label (front matter ``label``, else the first
  author's family name and the year, e.g. ``Liang 2022``, else the document id);
- ``cites``: the ``doc_id`` whose reference list the chunk's ``refs`` numbers belong to: the
  document itself for reviews and text documents with a reference list; for trial records
  (``X.trials.jsonl``) the document ``X``, and for ``trials.jsonl`` the default review; ``""``
  when the numbers belong to no list (registry records have none);
- ``source_kind``: the kind in the table above.

Chunk IDs: the chunker's ID (kind prefix, digest of document, section, position and text) is
folded, with everything else the index stores for the chunk (metadata, source offsets, refs,
trials), into the final ID. Same ID therefore means the same stored record, and an ingest that
writes only the IDs it lacks ends exactly where a clean ingest ends. The price: an edit that
shifts the source offsets of later chunks gives those chunks new IDs, and they are embedded
again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ingest.chunking import chunk_document, reference_chunks
from ingest.readers.ctgov import parse_ctgov, registry_chunks
from ingest.readers.pdf import parse_pdf
from ingest.readers.text import TextDocument, parse_text
from ingest.review import (
    decode_utf8,
    parse_review,
    read_source_bytes,
)
from ingest.trials import load_trials, review_text_start, trial_chunks
from nenqa.text import detect_language
from nenqa.types import Chunk, Document, FrontMatter, TrialRecord

SourceKind = Literal["review", "markdown", "text", "pdf", "trials", "ctgov"]

DEFAULT_REVIEW = "nen-drug-trials-review-2022.md"
DEFAULT_SOURCES = (DEFAULT_REVIEW, "trials.jsonl")
SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".pdf", ".json", ".jsonl")
TRIALS_SUFFIX = ".trials.jsonl"

_JOURNAL_LAYOUT = re.compile(r"^[ \t]*\[\s*摘\s*要\s*\]", re.MULTILINE)
_MAX_LABEL_CHARS = 40


@dataclass
class ParsedSource:
    """One parsed source file, ready to be written to the index."""

    doc_id: str
    path: Path
    sha256: str
    kind: SourceKind
    label: str
    title: str
    cites: str
    chunks: list[Chunk]
    document: Document | None = None
    trials: list[TrialRecord] = field(default_factory=list)

    @property
    def references(self) -> int:
        return len(self.document.references) if self.document else 0


def document_id(path: Path) -> str:
    """The id a document file gets: its name's stem, lower case, runs of other characters ``-``.

    Trial-record files keep their plain stem (``trials.jsonl`` is ``trials``), as before.
    """
    if path.suffix == ".jsonl":
        return path.stem
    return re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-") or "document"


def cited_document(path: Path) -> str:
    """The document whose reference numbers a trial-record file uses (see module docstring)."""
    if path.name.endswith(TRIALS_SUFFIX):
        return document_id(path.with_name(path.name.removesuffix(TRIALS_SUFFIX) + ".md"))
    return document_id(Path(DEFAULT_REVIEW))


def read_source(path: Path, *, review_trials: Sequence[TrialRecord] = ()) -> ParsedSource:
    """Parse one source file by its type; ``review_trials`` are what CT.gov studies link to.

    Raises the ``IngestError`` subclasses of ``nenqa.errors``, each naming the file, the line
    and the reason; nothing is written anywhere.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    data = read_source_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    doc_id = document_id(path)
    if suffix == ".pdf":
        return _text_source(path, "pdf", parse_pdf(path, data, sha256=digest, doc_id=doc_id))
    if suffix == ".jsonl":
        trials = load_trials(path)
        return _with_document_metadata(
            ParsedSource(
                doc_id=doc_id,
                path=path,
                sha256=digest,
                kind="trials",
                label=doc_id,
                title=f"trial records ({len(trials)})",
                cites=cited_document(path),
                chunks=trial_chunks(trials, doc_id),
                trials=trials,
            )
        )
    text = decode_utf8(data, path)
    if suffix == ".json":
        studies = parse_ctgov(path, text, review_trials)
        return _with_document_metadata(
            ParsedSource(
                doc_id=doc_id,
                path=path,
                sha256=digest,
                kind="ctgov",
                label=doc_id,
                title="; ".join(f"{s.record.name} ({s.record.nct})" for s in studies[:3])
                + (f"; ... ({len(studies)} studies)" if len(studies) > 3 else ""),
                cites="",
                chunks=registry_chunks(studies, doc_id),
                trials=[s.record for s in studies],
            )
        )
    if suffix in {".md", ".markdown"} and _JOURNAL_LAYOUT.search(text):
        document = parse_review(path)
        return _document_source(path, "review", document, None, document.front.title_zh)
    parsed = parse_text(text, path=path, sha256=digest, doc_id=doc_id, markdown=suffix != ".txt")
    return _text_source(path, "markdown" if suffix != ".txt" else "text", parsed)


def document_label(front: FrontMatter, fallback: str) -> str:
    """``"Family YEAR"`` from the first author and the year, else ``fallback`` (see module)."""
    author = next((a for a in front.authors_en if a and a != "et al."), "")
    family = _family_name(author) if author else next(iter(front.authors_zh), "")
    label = " ".join(part for part in (family, str(front.year or "")) if part)
    return (label if family else fallback)[:_MAX_LABEL_CHARS]


def _text_source(path: Path, kind: SourceKind, parsed: TextDocument) -> ParsedSource:
    return _document_source(path, kind, parsed.document, parsed.label, parsed.title)


def _document_source(
    path: Path, kind: SourceKind, document: Document, label: str | None, title: str
) -> ParsedSource:
    return _with_document_metadata(
        ParsedSource(
            doc_id=document.doc_id,
            path=path,
            sha256=document.sha256,
            kind=kind,
            label=(label or document_label(document.front, document.doc_id))[:_MAX_LABEL_CHARS],
            title=title or document.front.title_en or document.doc_id,
            cites=document.doc_id if document.references else "",
            chunks=[*chunk_document(document), *reference_chunks(document)],
            document=document,
        )
    )


def _with_document_metadata(source: ParsedSource) -> ParsedSource:
    extra = {"doc_label": source.label, "cites": source.cites, "source_kind": source.kind}
    chunks = [
        replace(c, metadata={**c.metadata, **extra}, language=chunk_language(c))
        for c in source.chunks
    ]
    source.chunks = [replace(c, chunk_id=stored_record_id(c)) for c in chunks]
    return source


def chunk_language(chunk: Chunk) -> Literal["zh", "en"]:
    """The language of what a chunk says: a paragraph's, a trial's review text's, an entry's."""
    if chunk.kind == "reference":
        return detect_language(reference_entry(chunk))
    if chunk.kind == "trial" and (start := review_text_start(chunk.text)) is not None:
        return detect_language(chunk.text[start:])
    language = chunk.metadata.get("language")  # a passage's paragraph language
    return "en" if language == "en" else "zh" if language == "zh" else detect_language(chunk.text)


def reference_entry(chunk: Chunk) -> str:
    """The entry as printed, without its ``[n]`` label and the alternate form after it."""
    first = chunk.text.split("\n", 1)[0]
    label = f"[{chunk.refs[0]}] " if chunk.refs else ""
    return first.removeprefix(label)


def stored_record_id(chunk: Chunk) -> str:
    """The chunk's final ID: its kind prefix and a digest of its chunker ID, text, metadata,
    offsets, refs and trials (see the module docstring)."""
    record = {
        "chunker_id": chunk.chunk_id,
        "doc_id": chunk.doc_id,
        "kind": chunk.kind,
        "section": chunk.section,
        "text": chunk.text,
        "refs": list(chunk.refs),
        "trials": list(chunk.trials),
        "spans": [[span.start, span.end] for span in chunk.spans],
        "metadata": chunk.metadata,
    }
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:16]
    return f"{chunk.chunk_id.split('-', 1)[0]}-{digest}"


def _family_name(author: str) -> str:
    """``LIANG Yun`` → ``Liang``; ``Smith J`` / ``Smith, John`` → ``Smith``; ``John Smith`` →
    ``Smith``."""
    if "," in author:
        family = author.split(",")[0]
    else:
        tokens = author.split()
        if not tokens:
            return ""
        if tokens[0].isupper() and len(tokens[0]) > 1 and not tokens[-1].isupper():
            family = tokens[0]
        elif len(tokens) > 1 and re.fullmatch(r"[A-Z]{1,3}\.?", tokens[-1]):
            family = " ".join(tokens[:-1])
        else:
            family = tokens[-1]
    family = family.strip()
    return family.capitalize() if family.isupper() else family
