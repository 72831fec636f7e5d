"""The document registry: which documents the index holds, where they came from, their state.

Stored as a second Chroma collection, ``<collection>_documents``, beside the chunks, so it
lives wherever the chunks live (the embedded ``PersistentClient`` folder or a Chroma server)
and needs nothing else. One record per document: id = ``doc_id``, the source path as the
record's document text, everything else as metadata; each record carries a constant
one-dimensional embedding because Chroma stores none without one.

Crash safety comes from the order of writes, not from transactions (Chroma has none across
collections): a record says ``writing`` before any chunk of its document is written or deleted
and ``complete`` only after all are; a removal marks it ``removing`` first and deletes the
record last. Chunk IDs are stable, so running the interrupted command again finishes the job
and ends in the state a clean run gives; until then ``nenqa docs list`` shows the record as
``writing`` or ``removing``.

Citations: ``format_citation`` renders ``[n]`` while the index holds one document with a
reference list and ``[label n]`` once it holds more (see docs/corpus.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from nenqa.errors import IngestError
from nenqa.types import Chunk

RecordStatus = Literal["writing", "complete", "removing"]
REGISTRY_SUFFIX = "_documents"
_PLACEHOLDER_EMBEDDING = [1.0]


class DocumentConflictError(IngestError):
    """Another file is already registered under the same document id."""


class UnknownDocumentError(LookupError):
    """No document with this id is registered or indexed."""


@dataclass(frozen=True)
class DocumentRecord:
    """What the registry knows about one document (timestamps are ISO 8601 UTC)."""

    doc_id: str
    path: str
    sha256: str
    kind: str
    label: str
    title: str
    cites: str
    chunks: int
    references: int
    trials: int
    embedding_model: str
    status: RecordStatus
    added_at: str
    updated_at: str

    def same_content(self, other: DocumentRecord | None) -> bool:
        """Whether ``other`` describes the same indexed content (status and times aside)."""
        if other is None:
            return False
        ignored = {"status", "added_at", "updated_at"}
        mine = {k: v for k, v in asdict(self).items() if k not in ignored}
        theirs = {k: v for k, v in asdict(other).items() if k not in ignored}
        return mine == theirs

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    """The current time as ISO 8601 UTC, seconds precision."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class DocumentRegistry:
    """The registry collection of one index (see module docstring); cheap to construct."""

    def __init__(self, client: Any, collection: str) -> None:
        self.name = f"{collection}{REGISTRY_SUFFIX}"
        self._collection = client.get_or_create_collection(
            name=self.name,
            embedding_function=None,
            metadata={"nenqa": "document registry"},
        )

    def get(self, doc_id: str) -> DocumentRecord | None:
        result = self._collection.get(ids=[doc_id], include=["metadatas", "documents"])
        if not result["ids"]:
            return None
        return _record(doc_id, result["documents"][0], result["metadatas"][0])

    def records(self) -> list[DocumentRecord]:
        """Every record, by ``doc_id``."""
        result = self._collection.get(include=["metadatas", "documents"])
        records = [
            _record(doc_id, path, meta)
            for doc_id, path, meta in zip(
                result["ids"], result["documents"], result["metadatas"], strict=True
            )
        ]
        return sorted(records, key=lambda r: r.doc_id)

    def put(self, record: DocumentRecord) -> None:
        meta = {k: v for k, v in asdict(record).items() if k not in {"doc_id", "path"}}
        self._collection.upsert(
            ids=[record.doc_id],
            documents=[record.path],
            metadatas=[meta],
            embeddings=[_PLACEHOLDER_EMBEDDING],
        )

    def mark(self, record: DocumentRecord, status: RecordStatus) -> DocumentRecord:
        """Store ``record`` with ``status`` and a fresh ``updated_at``; returns what was stored."""
        stored = replace(record, status=status, updated_at=now())
        self.put(stored)
        return stored

    def forget(self, doc_id: str) -> None:
        self._collection.delete(ids=[doc_id])


def _record(doc_id: str, path: str | None, meta: Mapping[str, Any] | None) -> DocumentRecord:
    meta = dict(meta or {})
    return DocumentRecord(
        doc_id=doc_id,
        path=path or "",
        sha256=str(meta.get("sha256", "")),
        kind=str(meta.get("kind", "")),
        label=str(meta.get("label", "")) or doc_id,
        title=str(meta.get("title", "")),
        cites=str(meta.get("cites", "")),
        chunks=int(meta.get("chunks", 0)),
        references=int(meta.get("references", 0)),
        trials=int(meta.get("trials", 0)),
        embedding_model=str(meta.get("embedding_model", "")),
        status=meta.get("status", "complete"),
        added_at=str(meta.get("added_at", "")),
        updated_at=str(meta.get("updated_at", "")),
    )


def citation_labels(documents: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Label per ``doc_id`` from ``(doc_id, label)`` pairs; a label two documents share falls
    back to their ids, so a rendered citation always names one document."""
    labels = dict(documents)
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {doc: (label if counts[label] == 1 and label else doc) for doc, label in labels.items()}


def citable_documents(chunks: Iterable[Chunk]) -> dict[str, str]:
    """Label per document that has a reference list (it has ``reference`` chunks)."""
    pairs = {
        (c.doc_id, str(c.metadata.get("doc_label") or c.doc_id))
        for c in chunks
        if c.kind == "reference"
    }
    return citation_labels(sorted(pairs))


def format_citation(number: int, cites: str, labels: Mapping[str, str]) -> str:
    """``[n]`` when at most one document with a reference list is indexed, else ``[label n]``.

    ``cites`` is the chunk's ``cites`` metadata (the document whose list ``number`` is from);
    ``labels`` maps each indexed document with a reference list to its label (see
    ``citation_labels``). A chunk without ``cites`` (indexed before it existed) is taken to
    cite the only document when there is one.
    """
    if len(labels) <= 1:
        return f"[{number}]"
    return f"[{labels.get(cites, cites or '?')} {number}]"
