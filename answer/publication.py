"""A corpus change published as the index's next generation, its files written first.

``nenqa ingest`` / ``nenqa docs`` and the admin API both publish through ``publish_generation``:
the next generation's search tables, the scope check's corpus text and (with a model) its quotable
sentences are saved before the generation is published, so every server that notices it only
opens them (docs/reliability.md).
"""

from __future__ import annotations

import time
from typing import Any

from answer.corpus_text import glossary_forms, open_corpus_text
from answer.sentence_store import open_bank
from retriever.generation import Generation, fingerprint_of
from retriever.search import current_tables
from retriever.store import ChunkStore


def publish_generation(store: ChunkStore, embedder: Any = None) -> dict[str, float]:
    """Save the next generation's search tables, the scope check's corpus text, and with the
    command's ``embedder`` its quotable sentences, then publish it: every server notices a
    generation whose files are already there and only opens them (docs/reliability.md). Each
    is written from the previous generation's and the change where it can (seconds at 100k
    chunks, not minutes). Without a model loaded (``docs remove``) the first server writes the
    sentences the same way. Returns the seconds each took and when it was published."""
    current = store.generation()
    fingerprint = fingerprint_of(store.ids())
    upcoming = (
        current
        if fingerprint == current.fingerprint
        else (Generation(current.number + 1, fingerprint))
    )
    started = time.perf_counter()
    tables, glossary = current_tables(store, upcoming)
    seconds = {"tables": time.perf_counter() - started}
    index_dir = store.settings.index_dir
    started = time.perf_counter()
    open_corpus_text(
        tables.chunks, glossary_forms(glossary), index_dir=index_dir, generation=upcoming
    )
    seconds["corpus_text"] = time.perf_counter() - started
    if embedder is not None:
        started = time.perf_counter()
        open_bank(embedder, tables.chunks, index_dir=index_dir, generation=upcoming)
        seconds["sentences"] = time.perf_counter() - started
    # Servers on this index (a Chroma server's) reload within seconds. Another writer that
    # published first takes the number: servers then write this change's files themselves.
    store.publish()
    seconds["published_at"] = time.time()
    return seconds
