"""Fusion rules of the hybrid searcher on a hand-made index (no model, no Chroma)."""

from __future__ import annotations

import numpy as np

from nenqa.types import Chunk
from retriever.glossary import Glossary
from retriever.search import HybridSearcher


class StaticEmbedder:
    def embed_queries(self, texts):
        return np.ones((len(texts), 2), dtype=np.float32)


class ListStore:
    """Dense ranking in the listed order, like a store whose nearest chunks are fixed."""

    def __init__(self, chunks, dense_order):
        self.chunks, self.dense_order = chunks, dense_order

    def all_chunks(self):
        return sorted(self.chunks, key=lambda c: c.chunk_id)

    def query(self, embedding, limit, where=None):
        hits = [c for c in self.dense_order if not where or c.kind == where.get("kind")]
        return [(c.chunk_id, 0.9 - 0.01 * i) for i, c in enumerate(hits[:limit])]


def chunk(chunk_id, kind, text, refs, doc_id, cites=None):
    return Chunk(chunk_id, doc_id, kind, text, "s", refs, metadata={"cites": cites or doc_id})


def test_a_reference_lifts_only_the_passages_of_its_own_document():
    reference = chunk("r-a7", "reference", "Lanreotide in bronchopulmonary NET SPINET", (7,), "a")
    own = chunk("p-a", "passage", "兰瑞肽组 TTF 13.3个月", (7,), "a")
    other = chunk("p-b", "passage", "另一综述 依维莫司", (7,), "b")
    filler = [chunk(f"p-f{i}", "passage", f"无关段落 {i}", (), "a") for i in range(5)]
    # Dense puts the other document's passage ahead of ours; only the lift can reorder them.
    store = ListStore([reference, own, other, *filler], [reference, *filler, other, own])
    searcher = HybridSearcher(store, StaticEmbedder(), Glossary([]))
    ranked = [e.chunk.chunk_id for e in searcher.search("SPINET lanreotide bronchopulmonary", 10)]
    assert ranked.index("p-a") < ranked.index("p-b")
    scores = {e.chunk.chunk_id: e.score for e in searcher.search("bronchopulmonary", 10)}
    w = searcher.weights
    no_lift = w.dense / (w.rrf_k + 1 + ranked_position(store, other))
    assert abs(scores["p-b"] - no_lift) < 1e-9, "a reference of document a must not lift b"


def ranked_position(store, target):
    return [c.chunk_id for c in store.dense_order].index(target.chunk_id)
