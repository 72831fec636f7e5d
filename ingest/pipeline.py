"""Ingest: parse sources, chunk them, embed what is new and bring the index up to date.

Everything is parsed and validated before the index is touched, so a malformed file leaves the
index as it was. Chunk IDs are stable, so an unchanged corpus writes nothing; a changed document
gets its new chunks written first and its stale ones deleted after, so an interrupted run leaves
either the old state plus some new chunks (which the next run completes) or the complete result.

``sync_index`` is the registry-free core (``nenqa ingest``); ``add_documents`` and
``remove_document`` (``nenqa docs``, the admin API) also keep the document registry of
``ingest.registry`` in step, in the crash-safe order described there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from ingest.registry import (
    DocumentConflictError,
    DocumentRecord,
    DocumentRegistry,
    UnknownDocumentError,
    now,
)
from ingest.renderings import is_renderings_file
from ingest.sources import (
    DEFAULT_SOURCES,
    SUPPORTED_SUFFIXES,
    ParsedSource,
    document_id,
    read_source,
)
from nenqa.errors import IngestError
from nenqa.types import Chunk, Document, TrialRecord

ProgressCallback = Callable[[int, int], None]


class PassageEmbedder(Protocol):
    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


class ChunkIndex(Protocol):
    def ids(self, where: dict | None = None) -> set[str]: ...
    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...


@dataclass
class ParsedCorpus:
    """Everything one ingest run read, before any write."""

    documents: list[Document] = field(default_factory=list)
    trials: list[TrialRecord] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    sources: list[ParsedSource] = field(default_factory=list)


@dataclass
class IngestSummary:
    """What one ingest did; ``chunks`` counts the parents, ``renderings`` their twins."""

    documents: int
    chunks: int
    renderings: int
    references: int
    trials: int
    added: int
    removed: int
    unchanged: int
    seconds: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DocumentChange:
    """What ``add_documents`` did to one document; chunk counts as ``sync_index`` gives them."""

    doc_id: str
    action: Literal["added", "updated", "reindexed", "unchanged"]
    added: int
    removed: int
    unchanged: int
    record: DocumentRecord


@dataclass(frozen=True)
class IndexInventory:
    """The registry's records against what the index holds.

    ``indexed`` counts each record's chunks in the index (a record whose count differs from
    its ``chunks`` is incomplete); ``unregistered`` are default-corpus documents that
    ``nenqa ingest`` indexed without registering them, as (doc_id, path, chunks); ``orphans``
    counts chunks of any other document the registry does not know.
    """

    records: list[DocumentRecord]
    indexed: dict[str, int]
    unregistered: list[tuple[str, Path, int]]
    orphans: int

    def status(self, record: DocumentRecord) -> str:
        """The record's status, or ``incomplete`` when complete but its chunks are not all there."""
        if record.status == "complete" and self.indexed.get(record.doc_id, 0) != record.chunks:
            return "incomplete"
        return record.status


def default_sources(data_dir: Path) -> list[Path]:
    """The default corpus: the review and its trial records under ``data_dir``."""
    return [data_dir / name for name in DEFAULT_SOURCES]


def expand_sources(paths: Sequence[Path]) -> list[Path]:
    """Files named directly, plus the supported files inside named folders (sorted).

    Renderings files (``<stem>.zh.jsonl``, ``<stem>.en.jsonl``) are read with their source,
    never as sources of their own.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.suffix.lower() in SUPPORTED_SUFFIXES and not is_renderings_file(p)
                )
            )
        elif not path.exists():
            raise IngestError(path, 0, "no such file or folder")
        elif is_renderings_file(path):
            raise IngestError(
                path, 0, "a renderings file is read with the source beside it; add that source"
            )
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise IngestError(
                path,
                0,
                f"unsupported file type {path.suffix!r}; expected one of "
                f"{', '.join(SUPPORTED_SUFFIXES)}",
            )
        else:
            files.append(path)
    return files


def parse_sources(
    paths: Sequence[Path], *, review_trials: Sequence[TrialRecord] = ()
) -> ParsedCorpus:
    """Parse and chunk every source; raises ``IngestError`` naming the file and line.

    ClinicalTrials.gov studies (``.json``) are linked to ``review_trials`` plus the trial
    records of any ``.jsonl`` file among ``paths``. Two files that would get the same document
    id are refused.
    """
    files = expand_sources(paths)
    parsed: dict[int, ParsedSource] = {}
    # Trial records first, so registry studies in the same run can link to them.
    order = sorted(range(len(files)), key=lambda i: files[i].suffix.lower() == ".json")
    linkable = list(review_trials)
    for i in order:
        source = read_source(files[i], review_trials=linkable)
        parsed[i] = source
        if source.kind == "trials":
            linkable.extend(source.trials)
    corpus = ParsedCorpus()
    owner: dict[str, Path] = {}
    for i in range(len(files)):
        source = parsed[i]
        if source.doc_id in owner:
            raise IngestError(
                source.path,
                0,
                f"document id {source.doc_id!r} is also the id of {owner[source.doc_id]}; "
                "rename one of the files",
            )
        owner[source.doc_id] = source.path
        corpus.sources.append(source)
        corpus.doc_ids.append(source.doc_id)
        corpus.chunks.extend(source.chunks)
        corpus.trials.extend(source.trials)
        if source.document is not None:
            corpus.documents.append(source.document)
    seen: set[str] = set()
    for chunk in corpus.chunks:
        if chunk.chunk_id in seen:
            raise IngestError(chunk.doc_id, 0, f"duplicate chunk {chunk.chunk_id}: {chunk.text!r}")
        seen.add(chunk.chunk_id)
    return corpus


def sync_index(
    corpus: ParsedCorpus,
    index: ChunkIndex,
    embedder: PassageEmbedder,
    *,
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
    reembed: bool = False,
) -> tuple[int, int, int]:
    """Write the corpus's new chunks, then delete its documents' stale ones.

    Returns (added, removed, unchanged). Only documents in ``corpus`` are touched. ``reembed``
    writes every chunk again with a fresh embedding (after a model or chunker change).
    """
    existing = index.ids(where={"doc_id": {"$in": corpus.doc_ids}}) if corpus.doc_ids else set()
    wanted = {c.chunk_id for c in corpus.chunks}
    new = [c for c in corpus.chunks if reembed or c.chunk_id not in existing]
    _write(index, embedder, new, batch_size, _Progress(len(new), on_progress))
    stale = sorted(existing - wanted)
    if stale:
        index.delete(stale)
    return len(new), len(stale), len(wanted) - len(new)


def add_documents(
    corpus: ParsedCorpus,
    index: ChunkIndex,
    registry: DocumentRegistry,
    embedder: PassageEmbedder,
    *,
    model_id: str,
    reembed: bool = False,
    relocate: bool = False,
    batch_size: int = 32,
    on_progress: ProgressCallback | None = None,
) -> list[DocumentChange]:
    """Bring each source's chunks and registry record up to date; a no-op for unchanged files.

    Raises ``DocumentConflictError`` before any write when a document id is registered from
    another path, unless ``relocate`` (``nenqa ingest``: the corpus folder may move). Per
    document: the record is marked ``writing``, new chunks are embedded and
    written, stale ones deleted, and the record marked ``complete``. An unchanged file with a
    complete record writes nothing and embeds nothing.
    """
    previous = {s.doc_id: registry.get(s.doc_id) for s in corpus.sources}
    for source in corpus.sources:
        before = previous[source.doc_id]
        path = str(source.path.resolve())
        moved = before is not None and before.status != "removing" and before.path != path
        if moved and not relocate:
            raise DocumentConflictError(
                source.path,
                0,
                f"document id {source.doc_id!r} is already registered from {before.path}; "
                f"remove it first (`nenqa docs remove {source.doc_id}`) or rename this file",
            )
    plans = []
    for source in corpus.sources:
        existing = index.ids(where={"doc_id": source.doc_id})
        wanted = {c.chunk_id for c in source.chunks}
        new = [c for c in source.chunks if reembed or c.chunk_id not in existing]
        plans.append((source, new, sorted(existing - wanted)))
    progress = _Progress(sum(len(new) for _, new, _ in plans), on_progress)
    changes = []
    for source, new, stale in plans:
        before = previous[source.doc_id]
        record = _record(source, model_id, before)
        unchanged = len(source.chunks) - len(new)
        complete = before is not None and before.status == "complete"
        if not (new or stale) and complete and record.same_content(before):
            changes.append(DocumentChange(source.doc_id, "unchanged", 0, 0, unchanged, before))
            continue  # nothing to embed, delete or record
        registry.mark(record, "writing")
        _write(index, embedder, new, batch_size, progress)
        if stale:
            index.delete(stale)
        stored = registry.mark(record, "complete")
        action = "added" if before is None else "reindexed" if reembed else "updated"
        changes.append(
            DocumentChange(source.doc_id, action, len(new), len(stale), unchanged, stored)
        )
    return changes


def remove_document(doc_id: str, index: ChunkIndex, registry: DocumentRegistry) -> int:
    """Delete every chunk of ``doc_id`` and its record; returns how many chunks went.

    Works for documents ``nenqa ingest`` indexed without a record too. Raises
    ``UnknownDocumentError`` when neither the registry nor the index knows ``doc_id``.
    """
    record = registry.get(doc_id)
    ids = index.ids(where={"doc_id": doc_id})
    if record is None and not ids:
        raise UnknownDocumentError(
            f"no document {doc_id!r} in the index; `nenqa docs list` shows the documents"
        )
    if record is not None:
        registry.mark(record, "removing")
    if ids:
        index.delete(sorted(ids))
    registry.forget(doc_id)
    return len(ids)


def inventory(index: ChunkIndex, registry: DocumentRegistry, data_dir: Path) -> IndexInventory:
    """Compare the registry with the index (one ID query per document; see ``IndexInventory``)."""
    records = registry.records()
    indexed = {r.doc_id: len(index.ids(where={"doc_id": r.doc_id})) for r in records}
    unregistered = []
    for path in default_sources(data_dir):
        doc_id = document_id(path)
        if doc_id not in indexed:
            count = len(index.ids(where={"doc_id": doc_id}))
            if count:
                unregistered.append((doc_id, path, count))
    known = [*indexed, *(doc_id for doc_id, _, _ in unregistered)]
    others = index.ids(where={"doc_id": {"$nin": known}}) if known else index.ids()
    return IndexInventory(records, indexed, unregistered, len(others))


def summarize(corpus: ParsedCorpus, counts: tuple[int, int, int], started: float) -> IngestSummary:
    added, removed, unchanged = counts
    return IngestSummary(
        documents=len(corpus.sources),
        chunks=sum(1 for c in corpus.chunks if c.rendering_of is None),
        renderings=sum(1 for c in corpus.chunks if c.rendering_of is not None),
        references=sum(len(d.references) for d in corpus.documents),
        trials=len(corpus.trials),
        added=added,
        removed=removed,
        unchanged=unchanged,
        seconds=round(time.perf_counter() - started, 2),
    )


class _Progress:
    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback

    def advance(self, count: int) -> None:
        self.done += count
        if self.callback:
            self.callback(self.done, self.total)


def _write(
    index: ChunkIndex,
    embedder: PassageEmbedder,
    chunks: Sequence[Chunk],
    batch_size: int,
    progress: _Progress,
) -> None:
    # Texts of similar length share a batch, so little of each forward pass is padding (the
    # order of the writes does not matter: chunk IDs are stable and upserts idempotent).
    chunks = sorted(chunks, key=lambda c: len(c.text))
    for start in range(0, len(chunks), batch_size):
        part = chunks[start : start + batch_size]
        index.upsert(part, embedder.embed_passages([c.text for c in part]))
        progress.advance(len(part))


def _record(source: ParsedSource, model_id: str, before: DocumentRecord | None) -> DocumentRecord:
    stamp = now()
    return DocumentRecord(
        doc_id=source.doc_id,
        path=str(source.path.resolve()),
        sha256=source.sha256,
        kind=source.kind,
        label=source.label,
        title=source.title,
        cites=source.cites,
        chunks=len(source.chunks),
        references=source.references,
        trials=len(source.trials),
        embedding_model=model_id,
        status="complete",
        added_at=before.added_at if before is not None and before.added_at else stamp,
        updated_at=stamp,
    )
