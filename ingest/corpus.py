"""Corpus updates as ``nenqa docs`` and the admin API both make them: which files, which documents.

The writes themselves are ``ingest.pipeline``'s (``add_documents``, ``remove_document``); this
module holds the rules around them that both entry points follow: documents are parsed with the
default corpus's trial records as link targets, the admin API reads only inside the data folder,
a reindex covers the registered and the default-corpus documents and refuses to lose unregistered
chunks, and an index built with another embedding model is re-embedded whole or not at all.
Errors are specific exceptions; the CLI prints them, ``server/errors.py`` maps them to statuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.pipeline import (
    ChunkIndex,
    DocumentChange,
    ParsedCorpus,
    PassageEmbedder,
    add_documents,
    inventory,
    parse_sources,
    remove_document,
)
from ingest.registry import DocumentRegistry, UnknownDocumentError
from ingest.translation import Renderer
from ingest.trials import load_trials

TRIALS_FILE = "trials.jsonl"


class OutsideDataFolderError(ValueError):
    """A path given to the admin API lies outside the server's data folder."""


class OrphanChunksError(RuntimeError):
    """The index holds chunks no registered document owns; reindexing everything would lose them."""


class NothingToReindexError(LookupError):
    """There are no documents to reindex."""


class EmbeddingModelChangedError(RuntimeError):
    """The index was built with another embedding model than the configured one."""


@dataclass(frozen=True)
class Removal:
    """What removing one document did: its chunks, and the documents whose citations it held."""

    doc_id: str
    chunks: int
    cited_by: list[str]


def parse_documents(paths: Sequence[Path], data_dir: Path) -> ParsedCorpus:
    """Parse ``paths`` with the review's trial records (``data_dir/trials.jsonl``) to link to.

    Raises ``IngestError`` naming the file and line; nothing is written.
    """
    trials_file = data_dir / TRIALS_FILE
    review_trials = load_trials(trials_file) if trials_file.exists() else []
    return parse_sources(paths, review_trials=review_trials)


def paths_in_data_folder(raw_paths: Sequence[str], data_dir: Path) -> list[Path]:
    """The files named by ``raw_paths`` (relative to ``data_dir`` or absolute).

    Raises ``OutsideDataFolderError`` for any that resolves outside ``data_dir``, so an admin
    key cannot make the server read arbitrary files.
    """
    folder = data_dir.resolve()
    paths = []
    for raw in raw_paths:
        path = Path(raw) if Path(raw).is_absolute() else folder / raw
        if not path.resolve().is_relative_to(folder):
            raise OutsideDataFolderError(
                f"{raw}: only files inside the data folder ({folder}) can be added"
            )
        paths.append(path)
    return paths


def check_embedding_model(built_with: str | None, model_id: str) -> None:
    """Refuse to add to an index built with another model (``EmbeddingModelChangedError``)."""
    if built_with not in (None, model_id):
        raise EmbeddingModelChangedError(
            f"the index was built with embedding model {built_with!r}, but {model_id!r} is "
            "configured; `nenqa docs reindex` re-embeds every document with it"
        )


def reindex_paths(
    index: ChunkIndex | None,
    registry: DocumentRegistry,
    data_dir: Path,
    doc_ids: Sequence[str] = (),
) -> list[Path]:
    """The files to parse again: those of ``doc_ids``, or with none of every document.

    Every document means the registered ones plus the default-corpus documents ``nenqa ingest``
    indexed without a record. Raises ``UnknownDocumentError`` for an id the registry lacks,
    ``OrphanChunksError`` when a full reindex would lose chunks no document owns, and
    ``NothingToReindexError`` when there is nothing to parse.
    """
    records = {r.doc_id: r for r in registry.records()}
    if doc_ids:
        unknown = [d for d in doc_ids if d not in records]
        if unknown:
            raise UnknownDocumentError(
                f"no registered document {unknown[0]!r}; `nenqa docs list` (GET /admin/documents)"
                " shows them"
            )
        return [Path(records[d].path) for d in doc_ids]
    paths = [Path(r.path) for r in records.values()]
    if index is not None:
        report = inventory(index, registry, data_dir)
        if report.orphans:
            raise OrphanChunksError(
                f"{report.orphans} chunks in the index belong to no registered document and "
                "would be lost; record their files first with `nenqa docs add PATH` "
                "(POST /admin/documents)"
            )
        paths += [path for _, path, _ in report.unregistered]
    if not paths:
        raise NothingToReindexError(
            "no documents to reindex; add some with `nenqa docs add PATH` (POST /admin/documents)"
        )
    return paths


def mark_every_document_writing(registry: DocumentRegistry) -> None:
    """Before an index is rebuilt for a new model: a crash then shows every record unfinished."""
    for record in registry.records():
        registry.mark(record, "writing")


def update_documents(
    paths: Sequence[Path],
    data_dir: Path,
    index: ChunkIndex,
    registry: DocumentRegistry,
    embedder: PassageEmbedder,
    *,
    model_id: str,
    reembed: bool,
    batch_size: int,
    renderer: Renderer | None = None,
) -> list[DocumentChange]:
    """Parse ``paths``, give them their renderings (``renderer``; its ``report`` says where
    they came from) and bring their chunks and records up to date (``add_documents``).

    Everything is parsed before the index is touched: an ``IngestError`` or a
    ``DocumentConflictError`` leaves it as it was.
    """
    corpus = parse_documents(paths, data_dir)
    if renderer is not None:
        renderer.render(corpus)
    return add_documents(
        corpus, index, registry, embedder, model_id=model_id, reembed=reembed, batch_size=batch_size
    )


def remove_documents(
    doc_ids: Sequence[str], index: ChunkIndex, registry: DocumentRegistry
) -> list[Removal]:
    """Remove each document (chunks and record), in order; raises ``UnknownDocumentError``.

    ``cited_by`` names the documents whose chunks cite reference numbers of the removed one:
    their citations now name a document that is gone.
    """
    removals = []
    for doc_id in doc_ids:
        cited_by = [r.doc_id for r in registry.records() if r.cites == doc_id != r.doc_id]
        removals.append(Removal(doc_id, remove_document(doc_id, index, registry), cited_by))
    return removals


def changed(changes: Sequence[DocumentChange]) -> bool:
    """Whether any document's chunks were written or deleted (a service must reload)."""
    return any(change.added or change.removed for change in changes)
