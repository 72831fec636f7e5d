"""The vector store: chunks and their embeddings in a Chroma collection.

Embedded ``PersistentClient`` by default; ``Settings.chroma_url`` switches to ``HttpClient``
against a Chroma server. Embeddings are always computed by our own embedder and passed in, and
our embedding function is registered with the collection so Chroma never falls back to its
default model (which would try to download weights).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings

from ingest.types import Chunk, Span
from nenqa.settings import Settings

_LIST_FIELDS = ("refs", "trials")
_BATCH = 2000


class IndexUnavailableError(RuntimeError):
    """The index cannot be reached or was built for another embedding model."""


def encode_list(values: Iterable[object]) -> str:
    """Flat-metadata form of a list, ``",7,9,"``, so ``$contains ",7,"`` selects one value."""
    items = [str(v) for v in values]
    return f",{','.join(items)}," if items else ""


def decode_list(value: object) -> list[str]:
    return [v for v in str(value or "").split(",") if v]


def chunk_metadata(chunk: Chunk) -> dict[str, str | int | float | bool]:
    """Chroma metadata for a chunk: scalars only, lists encoded with ``encode_list``."""
    meta: dict[str, str | int | float | bool] = {
        **chunk.metadata,
        "doc_id": chunk.doc_id,
        "kind": chunk.kind,
        "section": chunk.section,
        "refs": encode_list(chunk.refs),
        "trials": encode_list(chunk.trials),
        "spans": json.dumps([[s.start, s.end] for s in chunk.spans]),
    }
    return meta


def chunk_from_record(chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
    """Rebuild a ``Chunk`` from what Chroma returns."""
    extra = {
        k: v
        for k, v in meta.items()
        if k not in {"doc_id", "kind", "section", "spans", *_LIST_FIELDS}
    }
    return Chunk(
        chunk_id=chunk_id,
        doc_id=str(meta["doc_id"]),
        kind=meta["kind"],
        text=text,
        section=str(meta.get("section", "")),
        refs=tuple(int(v) for v in decode_list(meta.get("refs"))),
        trials=tuple(decode_list(meta.get("trials"))),
        spans=tuple(Span(a, b) for a, b in json.loads(str(meta.get("spans") or "[]"))),
        metadata=extra,
    )


def make_client(settings: Settings) -> chromadb.ClientAPI:
    """A Chroma client for the configured backend, telemetry off."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise IndexUnavailableError(
                f"NENQA_CHROMA_URL must look like http://host:port, got {settings.chroma_url!r}"
            )
        return chromadb.HttpClient(
            host=url.hostname,
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.index_dir), settings=chroma_settings)


class ChunkStore:
    """One Chroma collection of chunks, bound to one embedding model."""

    def __init__(
        self,
        settings: Settings,
        embedding_function: Any,
        model_id: str,
        *,
        rebuild: bool = False,
    ) -> None:
        self.model_id = model_id
        self._client = make_client(settings)
        if rebuild and settings.collection in {c.name for c in self._client.list_collections()}:
            self._client.delete_collection(settings.collection)
        self._collection = self._client.get_or_create_collection(
            name=settings.collection,
            embedding_function=embedding_function,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding_model": model_id},
        )
        built_with = (self._collection.metadata or {}).get("embedding_model")
        if built_with != model_id:
            raise IndexUnavailableError(
                f"the index in collection {settings.collection!r} was built with embedding model "
                f"{built_with!r}, but {model_id!r} is configured; run `nenqa ingest --rebuild`"
            )

    def count(self) -> int:
        return self._collection.count()

    def ids(self, where: dict[str, Any] | None = None) -> set[str]:
        """IDs of the stored chunks, optionally filtered by metadata."""
        result = self._collection.get(where=where, include=[])
        return set(result["ids"])

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        for start in range(0, len(chunks), _BATCH):
            part = chunks[start : start + _BATCH]
            self._collection.upsert(
                ids=[c.chunk_id for c in part],
                documents=[c.text for c in part],
                metadatas=[chunk_metadata(c) for c in part],
                embeddings=np.asarray(embeddings[start : start + _BATCH], dtype=np.float32),
            )

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), _BATCH):
            self._collection.delete(ids=ids[start : start + _BATCH])

    def all_chunks(self) -> list[Chunk]:
        """Every stored chunk, in a stable order (by chunk ID)."""
        chunks: list[Chunk] = []
        offset, total = 0, self.count()
        while offset < total:
            page = self._collection.get(
                include=["documents", "metadatas"], limit=_BATCH, offset=offset
            )
            for cid, text, meta in zip(
                page["ids"], page["documents"], page["metadatas"], strict=True
            ):
                chunks.append(chunk_from_record(cid, text, meta))
            offset += _BATCH
        return sorted(chunks, key=lambda c: c.chunk_id)

    def query(
        self, embedding: np.ndarray, limit: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Nearest chunk IDs with cosine similarity, best first."""
        limit = min(limit, self.count())
        if limit <= 0:
            return []
        result = self._collection.query(
            query_embeddings=[np.asarray(embedding, dtype=np.float32)],
            n_results=limit,
            where=where,
            include=["distances"],
        )
        return [
            (cid, 1.0 - float(dist))
            for cid, dist in zip(result["ids"][0], result["distances"][0], strict=True)
        ]
