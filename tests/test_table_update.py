"""A generation's search tables updated from the previous generation's and the change are the
full build's: the same chunks at the same positions, layout, definitions and BM25 arrays, score
for score."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from eval.qa_schema import load_qa
from nenqa.settings import PROJECT_ROOT, Settings
from nenqa.types import Chunk
from retriever.chunk_table import ChunkLayout, ChunkTable
from retriever.generation import Generation, fingerprint_of
from retriever.lexical import register_terms, tokenize
from retriever.search import build_tables, glossary_of
from retriever.snapshot import generation_folder, load_tables
from retriever.table_build import load_documents
from tests.conftest import rendered_default_corpus

QUESTIONS = [item.question for item in load_qa(PROJECT_ROOT / "eval" / "qa.jsonl")]
LEXICAL_FILES = (
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
    "counts.csc.npy",
    "lengths.npy",
    "vocab.ends.npy",
    "vocab.ids.npy",
)


@pytest.fixture(scope="module")
def corpus() -> list[Chunk]:
    return sorted(rendered_default_corpus(Settings().data_dir).chunks, key=lambda c: c.chunk_id)


class _Source:
    """The store as an update reads it: the IDs now and the chunks asked for."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = {c.chunk_id: c for c in chunks}
        self.asked: list[str] = []

    def ids(self) -> set[str]:
        return set(self.chunks)

    def get_chunks(self, ids) -> list[Chunk]:
        self.asked.extend(ids)
        return [self.chunks[i] for i in ids]


def _never_read():
    raise AssertionError("the update read every chunk of the store")
    yield


def _register(terms):
    return glossary_of(Settings(), terms)


def _generation(number: int, chunks: list[Chunk]) -> Generation:
    return Generation(number, fingerprint_of(c.chunk_id for c in chunks))


def _with_twins(corpus: list[Chunk], parents: list[Chunk]) -> list[Chunk]:
    ids = {c.chunk_id for c in parents}
    return [*parents, *(c for c in corpus if c.rendering_of in ids)]


def _change(corpus: list[Chunk]) -> tuple[list[Chunk], list[Chunk]]:
    """Chunks a change adds and removes: passages with their twins (of two passages that
    define the same terms, one added and one removed), trial records, a reference entry and
    its twin; none defines a term the rest does not."""
    parents = [c for c in corpus if c.rendering_of is None]
    passages = [c for c in parents if c.kind == "passage"]
    trials = [c for c in parents if c.kind == "trial"]
    references = [c for c in parents if c.kind == "reference"]
    twice = [c for c in passages if c.chunk_id in {"p-1a9add5012d988e5", "p-f1b366bf0ac7b124"}]
    quiet = [c for c in passages if "(" not in c.text and "（" not in c.text]
    added = _with_twins(corpus, [twice[0], *quiet[3:9:2], *trials[:2], references[5]])
    removed = _with_twins(corpus, [twice[1], *quiet[10:14], trials[-1], references[7]])
    return added, removed


def _assert_same_tables(updated: Path, full: Path) -> None:
    meta_u, meta_f = (json.loads((f / "meta.json").read_text()) for f in (updated, full))
    assert meta_u == meta_f
    assert list(ChunkTable.open(updated)) == list(ChunkTable.open(full))
    layout_u, layout_f = ChunkLayout.load(updated), ChunkLayout.load(full)
    for name in ChunkLayout._ARRAYS:
        assert np.array_equal(getattr(layout_u, name), getattr(layout_f, name)), name
    for name in ("citing", "naming"):
        expected = {k: v.tolist() for k, v in getattr(layout_f, name).items()}
        assert {k: v.tolist() for k, v in getattr(layout_u, name).items()} == expected
        assert list({k: 0 for k, _ in getattr(layout_u, name).items()}) == list(expected)
    assert (updated / "definitions.json").read_text() == (full / "definitions.json").read_text()
    assert np.array_equal(np.load(updated / "harvest.npy"), np.load(full / "harvest.npy"))
    keys_u, of_u = load_documents(updated)
    keys_f, of_f = load_documents(full)
    assert [keys_u[i] for i in of_u] == [keys_f[i] for i in of_f]
    folders = ["lexical", *(f"rendering-{lang}" for lang in meta_f["rendering_languages"])]
    for folder in folders:
        for name in LEXICAL_FILES:
            a, b = np.load(updated / folder / name), np.load(full / folder / name)
            assert a.dtype == b.dtype and np.array_equal(a, b), (folder, name)
        assert (updated / folder / "vocab.text").read_bytes() == (
            full / folder / "vocab.text"
        ).read_bytes()
        assert (updated / folder / "params.index.json").read_text() == (
            full / folder / "params.index.json"
        ).read_text()
        if folder != "lexical":
            for suffix in (".npy", ".rows.npy"):
                a, b = np.load(updated / f"{folder}{suffix}"), np.load(full / f"{folder}{suffix}")
                assert np.array_equal(a, b), (folder, suffix)


def _update_then_full(tmp_path, corpus, before, after, *, source_reads_all=False):
    """Tables of ``before`` built in full, then ``after``'s updated from them, and ``after``'s
    built in full elsewhere: returns (updated folder, full folder, the source)."""
    first, second = _generation(1, before), _generation(2, after)
    build_tables(first, iter(before[::-1]), root=tmp_path / "a", register=_register)
    source = _Source(after)
    stored = iter(after) if source_reads_all else _never_read()
    build_tables(second, stored, root=tmp_path / "a", register=_register, source=source)
    build_tables(second, iter(after[::-1]), root=tmp_path / "b", register=_register)
    return (
        generation_folder(tmp_path / "a", second),
        generation_folder(tmp_path / "b", second),
        source,
    )


def test_an_updated_generation_is_the_full_build_of_its_chunks(corpus, tmp_path):
    added, removed = _change(corpus)
    gone = {c.chunk_id for c in added}
    before = [c for c in corpus if c.chunk_id not in gone]
    after = [c for c in corpus if c.chunk_id not in {c.chunk_id for c in removed}]
    updated, full, source = _update_then_full(tmp_path, corpus, before, after)
    assert sorted(source.asked) == sorted(c.chunk_id for c in added)  # nothing else was read
    _assert_same_tables(updated, full)
    tables = load_tables(tmp_path / "a", _generation(2, after))
    reference = load_tables(tmp_path / "b", _generation(2, after))
    assert tables is not None and reference is not None and tables.rendering_lexical
    for question in QUESTIONS:
        tokens = tokenize(question)
        assert np.array_equal(tables.lexical.scores(tokens), reference.lexical.scores(tokens))
        for language, (index, _) in tables.rendering_lexical.items():
            expected = reference.rendering_lexical[language][0].scores(tokens)
            assert np.array_equal(index.scores(tokens), expected), (language, question)
    # Both generations stay saved: the previous one is still there to open.
    assert load_tables(tmp_path / "a", _generation(1, before)) is not None


def test_removing_a_document_updates_the_tables_to_the_full_build(corpus, tmp_path):
    trials = {c.doc_id for c in corpus if c.kind == "trial"}
    after = [c for c in corpus if c.doc_id not in trials]
    assert 0 < len(after) < len(corpus)
    updated, full, source = _update_then_full(tmp_path, corpus, corpus, after)
    assert source.asked == []
    _assert_same_tables(updated, full)


def test_a_change_that_defines_a_new_term_is_built_in_full(corpus, tmp_path, caplog):
    definer = next(c for c in corpus if c.chunk_id == "p-2a72e35d5f480838")  # 美国临床肿瘤学会
    gone = {c.chunk_id for c in _with_twins(corpus, [definer])}
    before = [c for c in corpus if c.chunk_id not in gone]
    with caplog.at_level(logging.INFO, logger="nenqa.snapshot"):
        updated, full, _ = _update_then_full(
            tmp_path, corpus, before, corpus, source_reads_all=True
        )
    assert "every text is cut again" in caplog.text
    _assert_same_tables(updated, full)


def test_jieba_cuts_after_a_new_glossary_as_a_fresh_process_would(corpus):
    texts = [c.text for c in corpus[:60]]
    register_terms(["兰瑞肽", "神经内分泌瘤"])
    first = [tokenize(t) for t in texts]
    register_terms(["兰瑞肽", "神经内分泌瘤", "依维莫司", "兰瑞肽"])
    register_terms(["兰瑞肽", "神经内分泌瘤"])  # a reload back to the first glossary
    assert [tokenize(t) for t in texts] == first


def test_records_merged_from_a_saved_file_and_new_ones(tmp_path):
    from retriever.chunk_table import write_merged

    old = [b"alpha", b"be", b"gamma!", b"d"]
    (tmp_path / "old.bin").write_bytes(b"HEAD" + b"".join(old))
    lengths = np.array([len(r) for r in old], dtype=np.int64)
    # A new record before old record 0, a run of two, a gap, then two new ones around one.
    sources = np.array([-1, 0, 1, 3, -1, 2, -1])
    fresh = {0: b"new0", 4: b"new4", 6: b"new6"}
    written = write_merged(
        tmp_path / "new.bin", tmp_path / "old.bin", lengths, sources, fresh, offset=4, header=b"H"
    )
    expected = [b"new0", b"alpha", b"be", b"d", b"new4", b"gamma!", b"new6"]
    assert (tmp_path / "new.bin").read_bytes() == b"H" + b"".join(expected)
    assert written.tolist() == [len(r) for r in expected]


def test_a_damaged_previous_generation_is_built_in_full_with_a_warning(corpus, tmp_path, caplog):
    added, _ = _change(corpus)
    before = [c for c in corpus if c.chunk_id not in {c.chunk_id for c in added}]
    first, second = _generation(1, before), _generation(2, corpus)
    build_tables(first, iter(before), root=tmp_path / "a", register=_register)
    counts = generation_folder(tmp_path / "a", first) / "lexical" / "counts.csc.npy"
    counts.write_bytes(counts.read_bytes()[:100])  # cut short, as by a full disk
    with caplog.at_level(logging.WARNING, logger="nenqa.snapshot"):
        build_tables(
            second, iter(corpus), root=tmp_path / "a", register=_register, source=_Source(corpus)
        )
    assert "could not update the tables" in caplog.text
    build_tables(second, iter(corpus[::-1]), root=tmp_path / "b", register=_register)
    _assert_same_tables(
        generation_folder(tmp_path / "a", second), generation_folder(tmp_path / "b", second)
    )


def test_nenqa_docs_saves_a_generations_files_before_it_publishes_it(corpus, tmp_path):
    """A server noticing the new generation finds its tables and scope text already saved
    (it only opens them); the number published is the one they were saved under."""
    from answer.publication import publish_generation
    from retriever.snapshot import snapshots_dir
    from retriever.store import ChunkStore

    settings = Settings(index_dir=tmp_path / "index")
    store = ChunkStore(settings, None, "test/model")
    vectors = np.random.default_rng(0).normal(size=(len(corpus), 8)).astype(np.float32)
    store.upsert(corpus[:-5], vectors[:-5])
    publish_generation(store)
    store.upsert(corpus[-5:], vectors[-5:])
    seen = {}
    publish = store.publish

    def publishing():
        upcoming = _generation(store.generation().number + 1, corpus)
        seen["tables"] = generation_folder(snapshots_dir(settings.index_dir), upcoming).is_dir()
        seen["scope"] = generation_folder(settings.index_dir / "scope", upcoming).is_dir()
        return publish()

    store.publish = publishing  # type: ignore[method-assign]
    publish_generation(store)
    assert seen == {"tables": True, "scope": True}
    assert store.generation() == _generation(2, corpus)
