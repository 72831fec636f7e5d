"""Ingest into a real Chroma index: idempotence, replacement without orphans, bad input refused.

A deterministic hashing embedder stands in for the model here (these tests are about what is
written to the index); the real model is exercised in test_search.py.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import default_sources, parse_sources, sync_index
from nenqa.errors import IngestError
from nenqa.settings import PROJECT_ROOT, Settings
from retriever.store import ChunkStore

DATA = PROJECT_ROOT / "data"


class HashingEmbedder:
    """Same text, same unit vector; different texts, (almost surely) different vectors."""

    model_id = "hashing-test-embedder"
    calls = 0

    def embed_passages(self, texts):
        HashingEmbedder.calls += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            row = np.random.default_rng(seed).normal(size=16)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, dtype=np.float32)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for path in default_sources(DATA):
        shutil.copyfile(path, folder / path.name)
    return folder


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    settings = Settings(index_dir=tmp_path / "index", collection="test")
    return ChunkStore(settings, None, HashingEmbedder.model_id)


def test_first_ingest_writes_every_chunk_and_a_second_writes_nothing(corpus_dir, store):
    corpus = parse_sources(default_sources(corpus_dir))
    added, removed, unchanged = sync_index(corpus, store, HashingEmbedder())
    assert (added, removed, unchanged) == (len(corpus.chunks), 0, 0)
    assert store.ids() == {c.chunk_id for c in corpus.chunks}

    HashingEmbedder.calls = 0
    again = parse_sources(default_sources(corpus_dir))
    assert sync_index(again, store, HashingEmbedder()) == (0, 0, len(corpus.chunks))
    assert HashingEmbedder.calls == 0, "an unchanged corpus must embed and write nothing"


def test_a_changed_paragraph_replaces_only_its_chunks_and_leaves_no_orphans(corpus_dir, store):
    review = corpus_dir / "nen-drug-trials-review-2022.md"
    before = parse_sources([review])
    sync_index(before, store, HashingEmbedder())

    text = review.read_text(encoding="utf-8")
    assert "TTF)为13.3个月" in text
    review.write_text(text.replace("TTF)为13.3个月", "TTF)为13.4个月"), encoding="utf-8")
    after = parse_sources([review])
    added, removed, _ = sync_index(after, store, HashingEmbedder())

    assert 0 < added <= 3 and 0 < removed <= 3
    assert store.ids() == {c.chunk_id for c in after.chunks}, "stale chunks must be deleted"
    changed = {c.chunk_id for c in after.chunks} - {c.chunk_id for c in before.chunks}
    assert all("13.4" in c.text for c in after.chunks if c.chunk_id in changed)


def test_ingesting_one_document_leaves_the_others_alone(corpus_dir, store):
    sync_index(parse_sources(default_sources(corpus_dir)), store, HashingEmbedder())
    everything = store.ids()
    trials_only = parse_sources([corpus_dir / "trials.jsonl"])
    assert sync_index(trials_only, store, HashingEmbedder())[:2] == (0, 0)
    assert store.ids() == everything


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": "x"\n', r"trials.jsonl:{bad_line}: "),
        (b"", r"trials.jsonl:\d+: .*empty"),
        ("ＳＰＩＮＥＴ".encode("utf-16"), r"trials.jsonl:\d+: .*(UTF-8|utf-8|encoding)"),
    ],
)
def test_a_malformed_file_is_refused_and_the_index_is_left_as_it_was(
    corpus_dir, store, content, message
):
    sync_index(parse_sources(default_sources(corpus_dir)), store, HashingEmbedder())
    before = store.ids()
    good = (corpus_dir / "trials.jsonl").read_bytes()
    (corpus_dir / "trials.jsonl").write_bytes(good + b"\n" + content if content else b"")
    bad_line = good.count(b"\n") + (1 if good.endswith(b"\n") else 2) + 1
    with pytest.raises(IngestError, match=message.replace("{bad_line}", str(bad_line))):
        parse_sources(default_sources(corpus_dir))
    assert store.ids() == before


def test_unsupported_or_missing_sources_are_named(tmp_path):
    with pytest.raises(IngestError, match=r"nothing\.md:0: no such file"):
        parse_sources([tmp_path / "nothing.md"])
    pdf = tmp_path / "review.pdf"
    pdf.write_bytes(b"%PDF-1.7")
    with pytest.raises(IngestError, match=r"review\.pdf:0: unsupported file type"):
        parse_sources([pdf])


def test_chunks_are_embedded_in_batches_of_similar_length(corpus_dir, store):
    batches: list[list[str]] = []

    class RecordingEmbedder(HashingEmbedder):
        def embed_passages(self, texts):
            batches.append(list(texts))
            return super().embed_passages(texts)

    corpus = parse_sources(default_sources(corpus_dir))
    sync_index(corpus, store, RecordingEmbedder(), batch_size=16)

    lengths = [len(text) for batch in batches for text in batch]
    assert len(batches) > 2 and all(len(b) <= 16 for b in batches)
    assert lengths == sorted(lengths), "each batch is padded to its longest text"
    assert store.ids() == {c.chunk_id for c in corpus.chunks}
