"""The vector store: chunks and their embeddings in a Chroma collection.

Embedded ``PersistentClient`` by default; ``Settings.chroma_url`` switches to ``HttpClient``
against a Chroma server. Every call to Chroma goes through ``chroma_errors``, so a server that
does not answer is ``IndexUnreachableError`` and a full disk or read-only directory is
``IndexWriteError``, each with what to do; the HTTP client reconnects on its own, so requests
succeed again as soon as the server is back.

Embeddings are always computed by our own embedder and passed in, and our embedding function
is registered with the collection so Chroma never falls back to its default model (which would
try to download weights).
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import httpx
import numpy as np
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaError

from nenqa.settings import Settings
from nenqa.text import detect_language
from nenqa.types import Chunk, Span
from retriever.generation import Generation, fingerprint_of

_LIST_FIELDS = ("refs", "trials")
_BATCH = 2000
_NO_SPACE = ("disk is full", "no space left")
_READ_ONLY = ("readonly database", "read-only file system", "permission denied")
_LOW_SPACE = 1 << 20  # bytes; below this a failed write is reported as a full disk

log = logging.getLogger("nenqa.store")


class IndexUnavailableError(RuntimeError):
    """The index cannot be reached or was built for another embedding model."""


class IndexUnreachableError(IndexUnavailableError):
    """The Chroma server did not answer (stopped, restarting, hung); retrying later can work."""


class IndexWriteError(IndexUnavailableError):
    """The index could not be written: no space left on its disk, or a read-only directory."""


def index_location(settings: Settings) -> str:
    """Where the index lives, for messages: the server URL or the embedded directory."""
    return settings.chroma_url or str(settings.index_dir)


@contextmanager
def chroma_errors(settings: Settings, *, writing: bool = False) -> Iterator[None]:
    """Turn Chroma's failures into ``IndexUnreachableError`` / ``IndexWriteError``.

    With ``writing``, any Chroma error of an embedded index is an ``IndexWriteError`` (a full
    disk can surface as "Error in compaction"); otherwise only those that name a full or
    read-only disk are, and other Chroma errors pass through unchanged.
    """
    where = index_location(settings)
    try:
        yield
    except httpx.TransportError as error:  # refused, reset mid-request, timed out
        raise IndexUnreachableError(
            f"the Chroma server at {where} did not answer ({type(error).__name__}: {error}); "
            "start it again with the same --path: nenqa reconnects on its own"
        ) from error
    except ValueError as error:
        if "Could not connect to a Chroma server" not in str(error):
            raise
        raise IndexUnreachableError(
            f"the Chroma server at {where} is not running (or not reachable); start it with "
            "`chroma run --path DIR --host HOST --port PORT`: nenqa reconnects on its own"
        ) from error
    except (ChromaError, OSError) as error:
        problem = index_write_problem(error, where)
        if problem is None and writing and not settings.chroma_url:
            free = _free_bytes(settings.index_dir)
            what = "no space left for" if free < _LOW_SPACE else "could not write"
            problem = IndexWriteError(
                f"{what} the index at {where} ({type(error).__name__}: {error}); its disk has "
                f"{free // 1024} KiB free: make room (or make it writable) and run the same "
                "command again: what was written is kept and the rest is added"
            )
        if problem is None:
            raise
        raise problem from error


def index_write_problem(error: BaseException, where: str) -> IndexWriteError | None:
    """An ``IndexWriteError`` saying what to do, if ``error`` is a full or read-only disk."""
    code = getattr(error, "errno", None)
    text = str(error).lower()
    if code == errno.ENOSPC or any(words in text for words in _NO_SPACE):
        return IndexWriteError(
            f"no space left for the index at {where} ({error}); free some space and run the "
            "same command again: what was written is kept and the rest is added"
        )
    if code in {errno.EROFS, errno.EACCES} or any(words in text for words in _READ_ONLY):
        return IndexWriteError(
            f"the index at {where} is read-only ({error}); Chroma opens its database for "
            "writing even to read, so give it a writable directory (NENQA_INDEX_DIR)"
        )
    return None


def _free_bytes(directory: Path) -> int:
    with suppress(OSError):
        return shutil.disk_usage(directory).free
    return 0


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
        "language": chunk.language,
    }
    if chunk.sentence_offsets is not None:
        meta["sentence_offsets"] = json.dumps([list(pair) for pair in chunk.sentence_offsets])
    return meta


def chunk_from_record(chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
    """Rebuild a ``Chunk`` from what Chroma returns."""
    extra = {
        k: v
        for k, v in meta.items()
        if k not in {"doc_id", "kind", "section", "spans", "sentence_offsets", *_LIST_FIELDS}
    }
    # An index written before chunks carried their sentences has no "sentence_offsets": the
    # chunk loads with None and SentenceBank splits its text with the one splitter instead.
    offsets = meta.get("sentence_offsets")
    # An index written before chunks said their language: the text says it.
    language = meta.get("language")
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
        sentence_offsets=(
            None
            if offsets is None
            else tuple((int(lo), int(hi)) for lo, hi in json.loads(str(offsets)))
        ),
        language=language if language in ("zh", "en") else detect_language(text),
    )


def make_client(settings: Settings) -> chromadb.ClientAPI:
    """A Chroma client for the configured backend, telemetry off.

    Raises ``IndexUnreachableError`` when the server does not answer and ``IndexWriteError``
    when the embedded directory cannot be written.
    """
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise IndexUnavailableError(
                f"NENQA_CHROMA_URL must look like http://host:port, got {settings.chroma_url!r}"
            )
        with chroma_errors(settings):
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        _set_http_timeout(client, settings.chroma_timeout_s)
        return client
    with chroma_errors(settings):
        settings.index_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.index_dir), settings=chroma_settings)


def _set_http_timeout(client: chromadb.ClientAPI, seconds: float) -> None:
    # chromadb's HTTP client waits forever (timeout=None), so a hung server would hold every
    # request thread; its session is private, hence the guarded reach into it.
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(seconds)
    else:
        log.warning("cannot set a timeout on this chromadb version's HTTP client")


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
        self.settings = settings
        self._embedding_function = embedding_function
        self._client = make_client(settings)
        with chroma_errors(settings):
            collections = {c.name for c in self._client.list_collections()}
            if rebuild and settings.collection in collections:
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
        with chroma_errors(self.settings):
            return self._collection.count()

    def generation(self) -> Generation:
        """The index's last published generation, read from the index itself (``Generation(0,
        "")`` before the first), so every process serving it reads the same."""
        with chroma_errors(self.settings):
            collection = self._client.get_collection(
                self.settings.collection, embedding_function=self._embedding_function
            )
        meta = collection.metadata or {}
        return Generation(int(meta.get("generation", 0)), str(meta.get("fingerprint", "")))

    def publish(self) -> Generation:
        """Publish the chunks now indexed as the next generation (after a change is complete);
        returns the current one unchanged when the chunks are the same."""
        current = self.generation()
        fingerprint = fingerprint_of(self.ids())
        if fingerprint == current.fingerprint:
            return current
        published = Generation(current.number + 1, fingerprint)
        metadata = {
            "embedding_model": self.model_id,
            "generation": published.number,
            "fingerprint": published.fingerprint,
        }
        with chroma_errors(self.settings, writing=True):
            self._collection.modify(metadata=metadata)  # replaces the whole metadata
        return published

    def ids(self, where: dict[str, Any] | None = None) -> set[str]:
        """IDs of the stored chunks, optionally filtered by metadata."""
        with chroma_errors(self.settings):
            result = self._collection.get(where=where, include=[])
        return set(result["ids"])

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        for start in range(0, len(chunks), _BATCH):
            part = chunks[start : start + _BATCH]
            with chroma_errors(self.settings, writing=True):
                self._collection.upsert(
                    ids=[c.chunk_id for c in part],
                    documents=[c.text for c in part],
                    metadatas=[chunk_metadata(c) for c in part],
                    embeddings=np.asarray(embeddings[start : start + _BATCH], dtype=np.float32),
                )

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), _BATCH):
            with chroma_errors(self.settings, writing=True):
                self._collection.delete(ids=ids[start : start + _BATCH])

    def all_chunks(self) -> list[Chunk]:
        """Every stored chunk, in a stable order (by chunk ID)."""
        return sorted(self.iter_chunks(), key=lambda c: c.chunk_id)

    def iter_chunks(self) -> Iterator[Chunk]:
        """Every stored chunk, a page at a time in the store's own order (the search tables'
        build streams them: at 1M chunks a list of them all outgrows a machine)."""
        offset, total = 0, self.count()
        while offset < total:
            with chroma_errors(self.settings):
                page = self._collection.get(
                    include=["documents", "metadatas"], limit=_BATCH, offset=offset
                )
            for cid, text, meta in zip(
                page["ids"], page["documents"], page["metadatas"], strict=True
            ):
                yield chunk_from_record(cid, text, meta)
            offset += _BATCH

    def get_chunks(self, ids: Iterable[str]) -> list[Chunk]:
        """The stored chunks with these IDs (those still stored), a page at a time: what a
        change added, read without reading the rest."""
        wanted, found = sorted(ids), []
        for start in range(0, len(wanted), _BATCH):
            with chroma_errors(self.settings):
                page = self._collection.get(
                    ids=wanted[start : start + _BATCH], include=["documents", "metadatas"]
                )
            found.extend(
                chunk_from_record(cid, text, meta)
                for cid, text, meta in zip(
                    page["ids"], page["documents"], page["metadatas"], strict=True
                )
            )
        return found

    def query(
        self, embedding: np.ndarray, limit: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Nearest chunk IDs with cosine similarity, best first.

        Chroma returns fewer than ``limit`` rows when fewer chunks match (and none from an empty
        collection), so no ``count()`` first: that call holds the GIL for about a millisecond,
        which serialised concurrent requests.
        """
        if limit <= 0:
            return []
        with chroma_errors(self.settings):
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
