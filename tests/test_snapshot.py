"""Saved search tables read on demand: the chunk table from its records, the per-position
layout from arrays, BM25 built in a stream with bm25s's scores to the bit."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from eval.qa_schema import load_qa
from nenqa.settings import PROJECT_ROOT, Settings
from nenqa.types import Chunk, Span
from retriever.chunk_table import ChunkLayout, ChunkTable, layout_of
from retriever.generation import Generation, fingerprint_of
from retriever.lexical import LexicalIndex, LexicalIndexWriter, tokenize
from retriever.search import build_tables, current_tables, glossary_of
from retriever.snapshot import load_tables
from retriever.table_build import lexical_text
from tests.conftest import rendered_default_corpus

QUESTIONS = [item.question for item in load_qa(PROJECT_ROOT / "eval" / "qa.jsonl")]


@pytest.fixture(scope="module")
def corpus() -> list[Chunk]:
    chunks = rendered_default_corpus(Settings().data_dir).chunks
    return sorted(chunks, key=lambda c: c.chunk_id)  # the order the store reads them in


@pytest.fixture(scope="module")
def saved(corpus, tmp_path_factory):
    """The default corpus's tables built by streaming, saved, and opened as a worker does."""
    root = tmp_path_factory.mktemp("generations")
    generation = Generation(1, fingerprint_of(c.chunk_id for c in corpus))
    settings = Settings()
    # In the store's own order (not by ID): the build orders the table itself.
    build_tables(
        generation,
        iter(corpus[::-1]),
        root=root,
        register=lambda terms: glossary_of(settings, terms),
    )
    tables = load_tables(root, generation)
    assert tables is not None and isinstance(tables.chunks, ChunkTable)
    return tables


def test_bm25_written_in_a_stream_scores_as_bm25s_to_the_bit(corpus, tmp_path, monkeypatch):
    # A tiny spill size: every text's postings cross several slices of the spill files.
    monkeypatch.setattr(LexicalIndexWriter, "_SPILL", 64)
    texts = [lexical_text(c) for c in corpus]
    writer = LexicalIndexWriter(tmp_path / "bm25")
    for text in texts:
        writer.add(tokenize(text))
    assert writer.finish() == len(texts)
    streamed = LexicalIndex.load(tmp_path / "bm25", size=len(texts))
    in_memory = LexicalIndex(texts)
    for question in QUESTIONS:
        tokens = tokenize(question)
        assert np.array_equal(streamed.scores(tokens), in_memory.scores(tokens)), question
        assert streamed.rank(question, 40) == in_memory.rank(question, 40)
    assert not list(tmp_path.glob("bm25/*.spill"))


def test_saved_tables_rank_the_default_corpus_as_the_in_memory_build_did(corpus, saved):
    # The former build, in memory: bm25s over every parent's text, and per language over its
    # parents and the renderings with a sentence their document does not already print.
    parents = [c for c in corpus if c.rendering_of is None]
    ids = {c.chunk_id for c in parents}
    twins = [c for c in corpus if c.rendering_of in ids]
    assert [c.chunk_id for c in saved.chunks] == [c.chunk_id for c in [*parents, *twins]]
    assert saved.parent_count == len(parents)
    printed: dict[tuple[str, str], str] = {}
    for c in parents:
        key = (c.doc_id, c.language)
        printed[key] = printed.get(key, "") + "".join(c.text.split())
    chosen = [
        t
        for t in twins
        if not all(
            "".join(t.text[a:b].split()) in printed.get((t.doc_id, t.language), "")
            for a, b in t.sentence_offsets or ((0, len(t.text)),)
        )
    ]
    assert 0 < len(chosen) < len(twins)  # the abstract's renderings add nothing
    assert set(saved.rendering_lexical) == {t.language for t in chosen}
    position = {c.chunk_id: i for i, c in enumerate(saved.chunks)}
    expected = LexicalIndex([lexical_text(c) for c in parents])
    for language, (index, parent_of) in saved.rendering_lexical.items():
        originals = [c for c in parents if c.language == language]
        renderings = [t for t in chosen if t.language == language]
        assert parent_of.tolist() == [-1] * len(originals) + [
            position[t.rendering_of] for t in renderings
        ]
        in_memory = LexicalIndex([lexical_text(c) for c in [*originals, *renderings]])
        for question in QUESTIONS:
            tokens = tokenize(question)
            assert np.array_equal(index.scores(tokens), in_memory.scores(tokens)), question
    for question in QUESTIONS:
        tokens = tokenize(question)
        assert np.array_equal(saved.lexical.scores(tokens), expected.scores(tokens)), question


def test_the_chunk_table_reads_back_every_field_of_every_chunk(corpus, saved):
    table = saved.chunks
    by_id = {c.chunk_id: c for c in corpus}
    assert all(chunk == by_id[chunk.chunk_id] for chunk in table)
    assert any(c.sentence_offsets == () for c in table)  # reference entries quote nothing
    assert any(c.spans and c.metadata for c in table)
    assert table[-1] == list(table)[-1] and table[np.int64(3)] == table[3]
    parents = table[: saved.parent_count]
    assert len(parents) == saved.parent_count and parents[-1] == table[saved.parent_count - 1]
    with pytest.raises(IndexError):
        table[len(table)]


def test_the_saved_layout_answers_as_the_in_memory_one(saved):
    layout = saved.layout
    assert isinstance(layout, ChunkLayout) and isinstance(layout.folded, np.memmap)
    fresh = layout_of(list(saved.chunks), saved.parent_count)
    for position, chunk in enumerate(saved.chunks):
        assert layout.position(chunk.chunk_id) == fresh.position(chunk.chunk_id) == position
        parent = int(layout.folded[position])
        assert saved.chunks[parent].chunk_id == (chunk.rendering_of or chunk.chunk_id)
        if chunk.rendering_of:
            assert layout.rendering(parent, chunk.language) == position
    assert layout.position("no-such-chunk") is None
    spinet = [
        p
        for p in range(saved.parent_count)
        if "SPINET" in saved.chunks[p].trials and saved.chunks[p].kind == "passage"
    ]
    assert spinet and layout.naming.get("spinet") == fresh.naming.get("spinet") == spinet
    for kind in ("passage", "trial", "reference"):
        every = [p for p, chunk in enumerate(saved.chunks) if chunk.kind == kind]
        assert every and layout.positions_of_kind(kind) == fresh.positions_of_kind(kind) == every


def test_a_corpus_of_only_renderings_without_parents_builds_an_empty_table(tmp_path):
    orphan = Chunk(
        "t-1", "d", "passage", "lanreotide", "1", spans=(Span(0, 3),),
        metadata={"rendering_of": "gone"}, language="en",
    )  # fmt: skip
    tables = build_tables(Generation(1, fingerprint_of(["t-1"])), [orphan], root=tmp_path)
    assert len(tables.chunks) == 0 and tables.rendering_lexical == {}
    assert tables.lexical.rank("lanreotide", 5) == []


class _Store:
    """What ``current_tables`` reads of a store: its settings, generation and chunks."""

    def __init__(self, settings: Settings, chunks: list[Chunk]) -> None:
        self.settings, self._chunks = settings, chunks

    def generation(self) -> Generation:
        return Generation(1, fingerprint_of(c.chunk_id for c in self._chunks))

    def iter_chunks(self):
        return iter(self._chunks)


def test_processes_needing_new_tables_at_once_build_them_once(corpus, tmp_path):
    """A worker noticing a new generation while the command that published it builds its
    tables waits for them instead of building them too."""
    settings = Settings(index_dir=tmp_path / "index")
    reads: list[str] = []
    started = threading.Event()

    class SlowStore(_Store):
        def iter_chunks(self):
            reads.append(threading.current_thread().name)
            started.set()
            time.sleep(0.5)  # the other process asks while this one builds
            return iter(self._chunks)

    store = SlowStore(settings, corpus)
    results = {}

    def open_tables(name: str) -> None:
        results[name] = current_tables(store)  # type: ignore[arg-type]

    builder = threading.Thread(target=open_tables, args=("builder",), name="builder")
    builder.start()
    started.wait(10)
    worker = threading.Thread(target=open_tables, args=("worker",), name="worker")
    worker.start()
    builder.join(60)
    worker.join(60)
    assert reads == ["builder"]  # the worker opened what the builder saved
    assert len(results["worker"][0].chunks) == len(results["builder"][0].chunks) == len(corpus)
    assert isinstance(results["worker"][0].chunks, ChunkTable)


def test_tables_that_cannot_be_saved_are_still_built_with_a_warning(corpus, tmp_path, caplog):
    settings = Settings(index_dir=tmp_path / "index")
    settings.index_dir.mkdir()
    (settings.index_dir / "generations").write_text("a file where the folder would go")
    tables, glossary = current_tables(_Store(settings, corpus))  # type: ignore[arg-type]
    assert len(tables.chunks) == len(corpus) and tables.lexical.rank("SPINET 兰瑞肽", 3)
    assert glossary.expand("TTF") and "could not save the search tables" in caplog.text
    assert not list(tmp_path.glob("**/.0*"))  # no temporary folder left behind


def test_a_foreign_folder_in_the_generations_place_is_replaced_by_the_rebuild(corpus, tmp_path):
    generation = Generation(1, fingerprint_of(c.chunk_id for c in corpus))
    foreign = tmp_path / f"000001-{generation.fingerprint}"
    foreign.mkdir()
    (foreign / "meta.json").write_text('{"format": 0}')
    assert load_tables(tmp_path, generation) is None
    build_tables(generation, corpus, root=tmp_path)
    reopened = load_tables(tmp_path, generation)
    assert reopened is not None and len(reopened.chunks) == len(corpus)
    assert sorted(p.name for p in tmp_path.iterdir()) == [foreign.name]
