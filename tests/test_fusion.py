"""Fusion rules of the hybrid searcher on a hand-made index (no model, no Chroma)."""

from __future__ import annotations

import numpy as np

from nenqa.glossary import Glossary
from nenqa.types import Chunk
from retriever.generation import Generation
from retriever.search import FusionWeights, HybridSearcher


class StaticEmbedder:
    def embed_queries(self, texts):
        return np.ones((len(texts), 2), dtype=np.float32)


class ListStore:
    """Dense ranking in the listed order, like a store whose nearest chunks are fixed."""

    def __init__(self, chunks, dense_order):
        self.chunks, self.dense_order = chunks, dense_order

    def generation(self):
        return Generation(0, "")

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


def twin(parent, text, language="en"):
    """A rendering chunk of ``parent`` (same document, kind, section and refs)."""
    return Chunk(
        f"{parent.chunk_id}-{language}",
        parent.doc_id,
        parent.kind,
        text,
        parent.section,
        parent.refs,
        metadata={**parent.metadata, "rendering_of": parent.chunk_id},
        language=language,
    )


def test_an_english_rendering_brings_back_its_chinese_parent_once():
    spinet = chunk("p-spinet", "passage", "SPINET研究 兰瑞肽组 TTF 13.3个月", (7,), "a")
    spinet_en = twin(spinet, "In SPINET the lanreotide group reached a TTF of 13.3 months")
    filler = [chunk(f"p-f{i}", "passage", f"无关段落 {i}", (), "a") for i in range(5)]
    # Dense finds the rendering first and the parent last: the parent takes the better place.
    store = ListStore([spinet, spinet_en, *filler], [spinet_en, *filler, spinet])
    searcher = HybridSearcher(store, StaticEmbedder(), Glossary([]))
    results = searcher.search("lanreotide group TTF months", 6)
    ids = [e.chunk.chunk_id for e in results]
    assert ids[0] == "p-spinet" and ids.count("p-spinet") == 1
    assert all(e.chunk.rendering_of is None for e in results)
    assert len(searcher) == 6 and searcher.twin_count == 1
    assert searcher.rendering("p-spinet", "en") == spinet_en
    assert searcher.rendering("p-spinet", "zh") is None
    assert searcher.rendering("p-f0", "en") is None


def test_a_parent_ranks_at_the_better_place_of_itself_and_its_rendering():
    target = chunk("p-t", "passage", "仑伐替尼 ORR 44.2%", (17,), "a")
    target_en = twin(target, "lenvatinib ORR 44.2%")
    filler = [chunk(f"p-f{i}", "passage", f"无关段落 {i}", (), "a") for i in range(6)]
    store = ListStore([target, target_en, *filler], [*filler[:3], target_en, *filler[3:], target])
    weights = FusionWeights(dense_renderings=True)
    searcher = HybridSearcher(store, StaticEmbedder(), Glossary([]), weights=weights)
    results = searcher.search("zzz", 10)  # no lexical hit: the dense ranking alone
    scores = {e.chunk.chunk_id: e.score for e in results}
    w = searcher.weights
    # Dense place 4 (its rendering's), not 8 (its own); the fillers after it move up one place.
    assert [e.chunk.chunk_id for e in results].index("p-t") == 3
    assert abs(scores["p-t"] - w.dense / (w.rrf_k + 4)) < 1e-9
    assert abs(scores["p-f3"] - w.dense / (w.rrf_k + 5)) < 1e-9


def test_a_rendering_whose_parent_is_not_indexed_is_never_returned():
    orphan = Chunk(
        "p-gone-en",
        "a",
        "passage",
        "lanreotide",
        "s",
        (),
        metadata={"rendering_of": "p-gone"},
        language="en",
    )
    kept = chunk("p-k", "passage", "兰瑞肽", (), "a")
    store = ListStore([orphan, kept], [orphan, kept])
    searcher = HybridSearcher(store, StaticEmbedder(), Glossary([]))
    assert [e.chunk.chunk_id for e in searcher.search("lanreotide", 5)] == ["p-k"]
    assert len(searcher) == 1 and searcher.twin_count == 0


def test_by_default_a_rendering_counts_in_the_lexical_ranking_of_a_question_in_its_language():
    target = chunk("p-t", "passage", "仑伐替尼组客观缓解率较高", (17,), "a")
    target_en = twin(target, "lenvatinib objective response rate TALENT")
    filler = [chunk(f"p-f{i}", "passage", f"无关段落 TALENT {i}", (), "a") for i in range(6)]
    # Dense: the rendering first, the parent last; by default dense twins are not counted.
    store = ListStore([target, target_en, *filler], [target_en, *filler, target])
    searcher = HybridSearcher(store, StaticEmbedder(), Glossary([]))
    english = [e.chunk.chunk_id for e in searcher.search("lenvatinib objective response", 7)]
    assert english[0] == "p-t"
    # A Chinese question's Latin word (TALENT) does not reach the English rendering.
    chinese = {e.chunk.chunk_id: e.score for e in searcher.search("TALENT研究结果", 7)}
    w = searcher.weights
    assert abs(chinese["p-t"] - w.dense / (w.rrf_k + 7)) < 1e-9


def test_a_chinese_question_ranks_exactly_as_without_the_renderings():
    passages = [
        chunk("p-a", "passage", "SPINET研究 兰瑞肽组 TTF 13.3个月", (7,), "a"),
        chunk("p-b", "passage", "TALENT研究 仑伐替尼 ORR 40.4%", (17,), "a"),
        chunk("p-c", "passage", "兰瑞肽维持治疗 REMINET", (9,), "a"),
    ]
    renderings = [twin(p, f"English rendering of {p.chunk_id} lanreotide TTF") for p in passages]
    plain = HybridSearcher(ListStore(passages, passages), StaticEmbedder(), Glossary([]))
    rendered = HybridSearcher(
        ListStore([*passages, *renderings], [*passages, *renderings]),
        StaticEmbedder(),
        Glossary([]),
    )
    for question in ("SPINET研究中兰瑞肽的TTF", "仑伐替尼ORR"):
        expected = [(e.chunk.chunk_id, e.score) for e in plain.search(question, 3)]
        assert [(e.chunk.chunk_id, e.score) for e in rendered.search(question, 3)] == expected
    # An English question gets the renderings' ranking on top, weighted rendering_lexical.
    english = {e.chunk.chunk_id: e.score for e in rendered.search("lanreotide TTF", 3)}
    baseline = {e.chunk.chunk_id: e.score for e in plain.search("lanreotide TTF", 3)}
    w = rendered.weights
    assert english["p-a"] - baseline["p-a"] >= w.rendering_lexical / (w.rrf_k + 3) - 1e-9
