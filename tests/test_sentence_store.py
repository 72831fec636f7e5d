"""The quotable sentences saved per generation: embedded once, opened by every later process."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from answer.sentence_store import open_bank, sentences_root
from answer.sentences import SentenceBank
from ingest.pipeline import default_sources, parse_sources
from nenqa.settings import Settings
from retriever.generation import Generation, fingerprint_of
from tests.test_answer_sentences import HashEmbedder


class ModelEmbedder(HashEmbedder):
    """A hash embedder that names its model and records every sentence it embeds."""

    def __init__(self, model_id: str = "test/model-a") -> None:
        super().__init__()
        self.model_id = model_id
        self.embedded: list[str] = []

    def embed_passages(self, texts):
        self.embedded.extend(texts)
        return super().embed_passages(texts)


@pytest.fixture(scope="module")
def chunks():
    return parse_sources(default_sources(Settings().data_dir)).chunks


def generation_of(chunks, number: int = 1) -> Generation:
    return Generation(number, fingerprint_of(c.chunk_id for c in chunks))


def test_a_second_process_opens_the_saved_sentences_without_embedding(tmp_path, chunks):
    generation = generation_of(chunks)
    first = open_bank(ModelEmbedder(), chunks, index_dir=tmp_path, generation=generation)
    later = ModelEmbedder()
    opened = open_bank(later, chunks, index_dir=tmp_path, generation=generation)
    assert later.calls == 0
    assert opened.sentences == first.sentences
    assert [s.renderings for s in opened.sentences] == [s.renderings for s in first.sentences]
    assert opened.tokens == first.tokens
    assert isinstance(opened.vectors, np.memmap)  # shared between workers, not copied
    built = SentenceBank(HashEmbedder(), chunks)
    assert np.array_equal(opened.vectors, built.vectors)
    assert all(opened.sentences_of(c.chunk_id) == built.sentences_of(c.chunk_id) for c in chunks)
    assert opened.sentences_of("no-such-chunk") == []
    # Nothing of it is read into the process: records, lookup and IDF stay in the saved files.
    assert not isinstance(opened.sentences, list) and not isinstance(opened.tokens, list)
    every_token = {t for toks in built.tokens for t in toks}
    assert all(opened.idf(t) == built.idf(t) and opened.known(t) for t in every_token)
    assert not opened.known("从未出现") and opened.idf("从未出现") == built.idf("从未出现")


@pytest.mark.parametrize("held", [True, False], ids=["same process", "fresh process"])
def test_a_new_generation_embeds_only_its_new_sentences(tmp_path, chunks, held):
    older_chunks = [c for c in chunks if c.kind != "trial"]
    older = open_bank(
        ModelEmbedder(), older_chunks, index_dir=tmp_path, generation=generation_of(older_chunks)
    )
    new_texts = {s.text for s in SentenceBank(HashEmbedder(), chunks).sentences} - {
        s.text for s in older.sentences
    }
    assert new_texts  # the trial records quote sentences the passages do not print
    # A reload holds the older bank; a fresh process finds only the older generation's folder.
    embedder = ModelEmbedder()
    newer = open_bank(
        embedder,
        chunks,
        index_dir=tmp_path,
        generation=generation_of(chunks, 2),
        reuse=older if held else None,
    )
    assert set(embedder.embedded) == new_texts
    assert [s.text for s in newer.sentences] == [
        s.text for s in SentenceBank(HashEmbedder(), chunks).sentences
    ]


def test_processes_opening_a_new_generation_at_once_embed_it_once(tmp_path, chunks):
    """Every worker noticing a new generation at once: one embeds and saves, the others wait
    for it and open what it saved."""
    started = threading.Event()

    class SlowEmbedder(ModelEmbedder):
        def embed_passages(self, texts):
            started.set()
            time.sleep(0.5)  # the other worker asks while this one embeds
            return super().embed_passages(texts)

    generation = generation_of(chunks)
    first, second = SlowEmbedder(), SlowEmbedder()
    banks = {}

    def open_with(name, embedder):
        banks[name] = open_bank(embedder, chunks, index_dir=tmp_path, generation=generation)

    builder = threading.Thread(target=open_with, args=("first", first))
    builder.start()
    started.wait(10)
    waiter = threading.Thread(target=open_with, args=("second", second))
    waiter.start()
    builder.join(60)
    waiter.join(60)
    assert first.calls == 1 and second.calls == 0
    assert banks["second"].sentences == banks["first"].sentences


def test_another_model_never_reuses_the_saved_vectors(tmp_path, chunks):
    generation = generation_of(chunks)
    open_bank(ModelEmbedder("test/model-a"), chunks, index_dir=tmp_path, generation=generation)
    other = ModelEmbedder("test/model-b")
    open_bank(other, chunks, index_dir=tmp_path, generation=generation)
    assert other.calls == 1
    assert sentences_root(tmp_path, "test/model-a") != sentences_root(tmp_path, "test/model-b")


@pytest.mark.parametrize(
    "damage", ["vectors.npy", "meta.json", "sentences.bin", "tokens.offsets.npy", "idf/idf.npy"]
)
def test_a_damaged_saved_bank_is_rebuilt_with_a_warning(tmp_path, chunks, caplog, damage):
    generation = generation_of(chunks)
    saved = list(
        open_bank(ModelEmbedder(), chunks, index_dir=tmp_path, generation=generation).sentences
    )
    folder = next(p for p in sentences_root(tmp_path, "test/model-a").iterdir())
    (folder / damage).write_bytes(b"not what was saved")
    rebuilder = ModelEmbedder()
    with caplog.at_level(logging.WARNING, logger="nenqa.sentences"):
        rebuilt = open_bank(rebuilder, chunks, index_dir=tmp_path, generation=generation)
    assert "rebuilding" in caplog.text
    assert rebuilder.calls == 1 and rebuilt.sentences == saved
    again = ModelEmbedder()
    open_bank(again, chunks, index_dir=tmp_path, generation=generation)
    assert again.calls == 0  # the rebuilt folder replaced the damaged one


def test_an_index_folder_that_cannot_be_written_keeps_the_bank_in_memory(tmp_path, chunks, caplog):
    not_a_folder = tmp_path / "index"
    not_a_folder.write_text("a file where the index folder should be")
    with caplog.at_level(logging.WARNING, logger="nenqa.sentences"):
        bank = open_bank(
            ModelEmbedder(), chunks, index_dir=not_a_folder, generation=generation_of(chunks)
        )
    assert "could not save the quotable sentences" in caplog.text
    assert len(bank) == len(SentenceBank(HashEmbedder(), chunks))


def test_chunks_that_are_not_the_generations_are_not_saved(tmp_path, chunks, caplog):
    stale = generation_of(chunks[:-1])
    with caplog.at_level(logging.WARNING, logger="nenqa.sentences"):
        open_bank(ModelEmbedder(), chunks, index_dir=tmp_path, generation=stale)
    assert "kept in this process" in caplog.text
    later = ModelEmbedder()
    open_bank(later, chunks, index_dir=tmp_path, generation=stale)
    assert later.calls == 1


@pytest.mark.slow
def test_nenqa_docs_add_saves_the_sentences_every_server_then_opens(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app
    from nenqa.settings import get_settings
    from retriever.search import load_searcher
    from tests.tiny_model import build_tiny_model

    fixtures = Path(__file__).parent / "fixtures"
    monkeypatch.setenv("NENQA_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("NENQA_EMBEDDING_MODEL", str(build_tiny_model(tmp_path / "tiny", seed=0)))
    monkeypatch.setenv("NENQA_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # no translation
    monkeypatch.setenv("NENQA_TRANSLATION_CACHE_ENABLED", "false")
    get_settings.cache_clear()
    try:
        added = CliRunner().invoke(app, ["docs", "add", "-q", str(fixtures / "sample-notes.txt")])
        assert added.exit_code == 0, added.output
        settings = get_settings()
        searcher = load_searcher(settings)
    finally:
        get_settings.cache_clear()
    server = ModelEmbedder(searcher.embedder.model_id)
    bank = open_bank(
        server, searcher.chunks, index_dir=settings.index_dir, generation=searcher.generation
    )
    assert len(bank) > 0 and server.calls == 0


@pytest.mark.slow
def test_another_service_opens_the_sentences_the_first_one_saved(service, monkeypatch):
    from server.state import load_service

    def no_embedding(texts):
        raise AssertionError(f"embedded {len(texts)} sentences again")

    monkeypatch.setattr(service.searcher.embedder.wrapped, "embed_passages", no_embedding)
    # As another worker does: nothing of the first service's bank is handed over.
    reloaded = load_service(service.settings, searcher=service.searcher.reopened())
    assert reloaded.bank.sentences == service.bank.sentences
    assert isinstance(reloaded.bank.vectors, np.memmap)
    assert np.allclose(reloaded.bank.vectors, service.bank.vectors)
