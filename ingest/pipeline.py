"""Ingest: parse sources, chunk them, embed what is new and bring the index up to date.

Everything is parsed and validated before the index is touched, so a malformed file leaves the
index as it was. Chunk IDs are stable, so an unchanged corpus writes nothing; a changed document
gets its new chunks written first and its stale ones deleted after, so an interrupted run leaves
either the old state plus some new chunks (which the next run completes) or the complete result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ingest.chunking import chunk_document, reference_chunks
from ingest.errors import IngestError
from ingest.review import parse_review
from ingest.trials import load_trials, trial_chunks
from ingest.types import Chunk, Document, TrialRecord

DEFAULT_SOURCES = ("nen-drug-trials-review-2022.md", "trials.jsonl")
SUPPORTED_SUFFIXES = (".md", ".jsonl")


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


@dataclass
class IngestSummary:
    documents: int
    chunks: int
    references: int
    trials: int
    added: int
    removed: int
    unchanged: int
    seconds: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def default_sources(data_dir: Path) -> list[Path]:
    """The default corpus: the review and its trial records under ``data_dir``."""
    return [data_dir / name for name in DEFAULT_SOURCES]


def expand_sources(paths: Sequence[Path]) -> list[Path]:
    """Files named directly, plus the supported files inside named folders (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in SUPPORTED_SUFFIXES))
        elif not path.exists():
            raise IngestError(path, 0, "no such file or folder")
        elif path.suffix not in SUPPORTED_SUFFIXES:
            raise IngestError(
                path, 0, f"unsupported file type {path.suffix!r}; expected .md or .jsonl"
            )
        else:
            files.append(path)
    return files


def parse_sources(paths: Sequence[Path]) -> ParsedCorpus:
    """Parse and chunk every source; raises ``IngestError`` naming the file and line."""
    corpus = ParsedCorpus()
    for path in expand_sources(paths):
        if path.suffix == ".md":
            document = parse_review(path)
            corpus.documents.append(document)
            corpus.doc_ids.append(document.doc_id)
            corpus.chunks.extend(chunk_document(document))
            corpus.chunks.extend(reference_chunks(document))
        else:
            trials = load_trials(path)
            corpus.trials.extend(trials)
            corpus.doc_ids.append(path.stem)
            corpus.chunks.extend(trial_chunks(trials, path.stem))
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
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, int]:
    """Write the corpus's new chunks, then delete its documents' stale ones.

    Returns (added, removed, unchanged). Only documents in ``corpus`` are touched.
    """
    existing = index.ids(where={"doc_id": {"$in": corpus.doc_ids}}) if corpus.doc_ids else set()
    wanted = {c.chunk_id for c in corpus.chunks}
    new = [c for c in corpus.chunks if c.chunk_id not in existing]
    total = len(new)
    for start in range(0, total, batch_size):
        part = new[start : start + batch_size]
        index.upsert(part, embedder.embed_passages([c.text for c in part]))
        if on_progress:
            on_progress(min(start + batch_size, total), total)
    stale = sorted(existing - wanted)
    if stale:
        index.delete(stale)
    return len(new), len(stale), len(wanted) - len(new)


def summarize(corpus: ParsedCorpus, counts: tuple[int, int, int], started: float) -> IngestSummary:
    added, removed, unchanged = counts
    return IngestSummary(
        documents=len(corpus.documents) + (1 if corpus.trials else 0),
        chunks=len(corpus.chunks),
        references=sum(len(d.references) for d in corpus.documents),
        trials=len(corpus.trials),
        added=added,
        removed=removed,
        unchanged=unchanged,
        seconds=round(time.perf_counter() - started, 2),
    )
