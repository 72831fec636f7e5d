"""A generation's sentence bank updated from the previous generation's and the change is the
full build's: the same sentences in the same order, token sets, vectors, lookup and IDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import answer.sentence_store as sentence_store
from answer.sentence_store import open_bank, sentences_root
from nenqa.settings import Settings
from nenqa.types import Chunk
from retriever.search import build_tables, glossary_of
from retriever.snapshot import generation_folder, load_tables
from tests.conftest import rendered_default_corpus
from tests.test_sentence_store import ModelEmbedder
from tests.test_table_update import _change, _generation

SAME_FILES = (
    "sentences.bin",
    "sentences.offsets.npy",
    "tokens.bin",
    "tokens.offsets.npy",
    "vectors.npy",
    "references.json",
    "meta.json",
    "chunk_ids.npy",
    "twin_ids.npy",
    "twin_parents.npy",
    "positions.npy",
    "key_hashes.npy",
    "key_indices.npy",
    "lookup/vocab.text",
    "lookup/vocab.ends.npy",
    "lookup/vocab.ids.npy",
    "lookup/ends.npy",
    "lookup/indices.npy",
    "idf/vocab.text",
    "idf/vocab.ends.npy",
    "idf/idf.npy",
    "idf/df.npy",
)


@pytest.fixture(scope="module")
def corpus() -> list[Chunk]:
    return sorted(rendered_default_corpus(Settings().data_dir).chunks, key=lambda c: c.chunk_id)


def _table(root: Path, number: int, chunks: list[Chunk]):
    """The generation's saved tables, as a worker opens them (the bank reads their layout)."""
    generation = _generation(number, chunks)
    register = lambda terms: glossary_of(Settings(), terms)  # noqa: E731
    build_tables(generation, iter(chunks), root=root, register=register)
    tables = load_tables(root, generation)
    assert tables is not None
    return generation, tables.chunks


def _updated_and_full(tmp_path, before, after, monkeypatch):
    first, table_before = _table(tmp_path / "tables", 1, before)
    second, table_after = _table(tmp_path / "tables", 2, after)
    open_bank(ModelEmbedder(), table_before, index_dir=tmp_path / "a", generation=first)
    updating = ModelEmbedder()
    with monkeypatch.context() as patched:

        def full_build(*args, **kwargs):
            raise AssertionError("the bank was built in full, not updated")

        patched.setattr(sentence_store, "_newest_saved", full_build)
        updated = open_bank(updating, table_after, index_dir=tmp_path / "a", generation=second)
    full = open_bank(ModelEmbedder(), table_after, index_dir=tmp_path / "b", generation=second)
    model = sentences_root(tmp_path / "a", "test/model-a").name
    folders = [
        generation_folder(tmp_path / root / "sentences" / model, second) for root in ("a", "b")
    ]
    return updated, full, folders, updating


def _assert_same_bank(updated, full, folders) -> None:
    assert list(updated.sentences) == list(full.sentences)
    assert [s.renderings for s in updated.sentences] == [s.renderings for s in full.sentences]
    assert list(updated.tokens) == list(full.tokens)
    assert np.array_equal(updated.vectors, full.vectors)
    for name in SAME_FILES:
        a, b = (folder / name for folder in folders)
        if name.endswith(".npy"):
            assert np.array_equal(np.load(a), np.load(b)), name
        else:
            assert a.read_bytes() == b.read_bytes(), name


def test_an_updated_bank_is_the_full_build_of_its_chunks(corpus, tmp_path, monkeypatch):
    added, removed = _change(corpus)
    before = [c for c in corpus if c.chunk_id not in {c.chunk_id for c in added}]
    after = [c for c in corpus if c.chunk_id not in {c.chunk_id for c in removed}]
    updated, full, folders, updating = _updated_and_full(tmp_path, before, after, monkeypatch)
    _assert_same_bank(updated, full, folders)
    # Only the sentences the previous generation's bank did not hold were embedded.
    first = sentence_store.load_bank(
        generation_folder(folders[0].parent, _generation(1, before)),
        ModelEmbedder(),
        _generation(1, before),
        "test/model-a",
    )
    assert first is not None
    new_texts = {s.text for s in updated.sentences} - {s.text for s in first.sentences}
    assert new_texts and sorted(updating.embedded) == sorted(new_texts)


def test_removing_a_document_updates_the_bank_to_the_full_build(corpus, tmp_path, monkeypatch):
    trials = {c.doc_id for c in corpus if c.kind == "trial"}
    after = [c for c in corpus if c.doc_id not in trials]
    updated, full, folders, updating = _updated_and_full(tmp_path, corpus, after, monkeypatch)
    _assert_same_bank(updated, full, folders)
    assert updating.embedded == []
