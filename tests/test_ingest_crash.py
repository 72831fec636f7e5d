"""Kill -9 a real ``nenqa ingest`` (and ``nenqa docs add``) at several moments, run it again,
and the index equals a clean ingest: same chunk IDs, texts, metadata and vectors, no duplicate
rows, no orphans, and the vector index answers queries as the clean one does.

The moment to kill is found by polling the row count of the chunk collection in Chroma's
SQLite file (read-only) while the process writes one chunk per batch
(``NENQA_EMBEDDING_BATCH_SIZE=1``). The tiny model (tests/tiny_model.py) keeps each run short.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import ParsedCorpus, default_sources, parse_sources, sync_index
from ingest.translation import Renderer
from nenqa.glossary import Glossary, load_glossary_table
from nenqa.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.slow

DATA = PROJECT_ROOT / "data"
COLLECTION = "nenqa"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def embedder(tiny_model):
    from retriever.embeddings import load_embedder

    return load_embedder(Settings(embedding_model=str(tiny_model)))


def corpus_copy(folder: Path) -> Path:
    """The default corpus with its shipped renderings and glossary, as ``data/`` holds it."""
    folder.mkdir(parents=True)
    for path in [*default_sources(DATA), *DATA.glob("*.??.jsonl"), DATA / "glossary.tsv"]:
        shutil.copyfile(path, folder / path.name)
    return folder


def parsed_with_renderings(sources: list[Path]) -> ParsedCorpus:
    """What ``nenqa ingest`` writes for ``sources``: parents and their twins (every rendering
    from the shipped files beside them)."""
    corpus = parse_sources(sources)
    glossary = Glossary(load_glossary_table(sources[0].parent / "glossary.tsv"))
    Renderer(glossary).render(corpus)
    return corpus


def start(command: list[str], index: Path, data: Path, model: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "NENQA_INDEX_DIR": str(index),
        "NENQA_DATA_DIR": str(data),
        "NENQA_EMBEDDING_MODEL": str(model),
        "NENQA_EMBEDDING_BATCH_SIZE": "1",
        # Every rendering is shipped; never the user's cache, never a model.
        "NENQA_TRANSLATION_CACHE_ENABLED": "false",
        "NENQA_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *command],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(command: list[str], index: Path, data: Path, model: Path) -> str:
    process = start(command, index, data, model)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return output


def chunk_rows(index: Path) -> int:
    """Rows of the chunk collection in Chroma's SQLite file (0 before it exists)."""
    database = index / "chroma.sqlite3"
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            (count,) = connection.execute(
                "SELECT COUNT(*) FROM embeddings e JOIN segments s ON e.segment_id = s.id "
                "JOIN collections c ON s.collection = c.id WHERE c.name = ?",
                (COLLECTION,),
            ).fetchone()
        return count
    except sqlite3.OperationalError:  # locked by the writer, or the schema not made yet
        return -1


def kill_when_rows_reach(process: subprocess.Popen, index: Path, rows: int) -> int:
    """SIGKILL ``process`` once the chunk collection has ``rows`` rows; returns the count seen."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        seen = chunk_rows(index)
        if seen >= rows:
            process.kill()
            process.wait()
            return seen
        if process.poll() is not None:
            pytest.fail(
                f"ingest finished before {rows} rows were written:\n{process.stdout.read()}"
            )
        time.sleep(0.005)
    process.kill()
    pytest.fail(f"no {rows} rows within 10 minutes")


def clean_index(folder: Path, sources: list[Path], embedder) -> Path:
    """What one uninterrupted ingest writes (in this process, through the same pipeline)."""
    from retriever.store import ChunkStore

    settings = Settings(index_dir=folder, collection=COLLECTION)
    store = ChunkStore(settings, None, embedder.model_id)
    sync_index(parsed_with_renderings(sources), store, embedder)
    return folder


def snapshot(index: Path) -> dict:
    """Every record of the chunk collection, the physical row count, and query answers."""
    import chromadb
    from chromadb.api.client import SharedSystemClient
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=str(index), settings=ChromaSettings(anonymized_telemetry=False)
    )
    try:
        collection = client.get_or_create_collection(COLLECTION, embedding_function=None)
        got = collection.get(include=["documents", "metadatas", "embeddings"])
        records = {
            cid: (text, meta, np.asarray(vector))
            for cid, text, meta, vector in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            )
        }
        probes = [records[cid][2] for cid in sorted(records)[::25]]
        answers = collection.query(query_embeddings=probes, n_results=10, include=[])["ids"]
    finally:
        SharedSystemClient.clear_system_cache()
    return {"records": records, "rows": chunk_rows(index), "answers": answers}


def assert_same_index(crashed: dict, clean: dict) -> None:
    assert set(crashed["records"]) == set(clean["records"]), "same chunk IDs, no orphans"
    assert crashed["rows"] == len(crashed["records"]), "no duplicate rows"
    for cid, (text, meta, vector) in clean["records"].items():
        got_text, got_meta, got_vector = crashed["records"][cid]
        assert (got_text, got_meta) == (text, meta), cid
        np.testing.assert_allclose(got_vector, vector, atol=1e-5)
    assert crashed["answers"] == clean["answers"], "the vector index answers as the clean one"


def test_ingest_killed_at_several_moments_then_run_again_equals_a_clean_ingest(
    tmp_path, tiny_model, embedder
):
    data = corpus_copy(tmp_path / "data")
    index = tmp_path / "index"
    total = len(parsed_with_renderings(default_sources(data)).chunks)
    for rows in (1, total // 2, total - 5):
        process = start(["ingest", "-q"], index, data, tiny_model)
        seen = kill_when_rows_reach(process, index, rows)
        assert seen < total, "killed before the ingest could finish"
    run(["ingest", "-q"], index, data, tiny_model)

    clean = clean_index(tmp_path / "clean", default_sources(data), embedder)
    assert_same_index(snapshot(index), snapshot(clean))


def test_ingest_of_a_changed_review_killed_midway_then_run_again_equals_a_clean_ingest(
    tmp_path, tiny_model, embedder
):
    data = corpus_copy(tmp_path / "data")
    index = clean_index(tmp_path / "index", default_sources(data), embedder)
    before = chunk_rows(index)
    review = data / "nen-drug-trials-review-2022.md"
    review.write_text(review.read_text(encoding="utf-8").replace("个月", "个 月"), "utf-8")
    changed = parsed_with_renderings(default_sources(data)).chunks
    new = len({c.chunk_id for c in changed} - set(snapshot(index)["records"]))
    assert new > 20, "the change touches many chunks"

    process = start(["ingest", "-q"], index, data, tiny_model)
    kill_when_rows_reach(process, index, before + new // 2)  # new chunks in, stale ones not out
    run(["ingest", "-q"], index, data, tiny_model)

    clean = clean_index(tmp_path / "clean", default_sources(data), embedder)
    assert_same_index(snapshot(index), snapshot(clean))


def test_docs_add_killed_midway_is_finished_by_running_it_again(tmp_path, tiny_model, embedder):
    data = corpus_copy(tmp_path / "data")
    review = data / "nen-drug-trials-review-2022.md"
    index = tmp_path / "index"
    process = start(["docs", "add", "-q", str(review)], index, data, tiny_model)
    kill_when_rows_reach(process, index, 40)
    assert _record_status(index) == "writing"

    run(["docs", "add", "-q", str(review)], index, data, tiny_model)
    assert _record_status(index) == "complete"
    clean = clean_index(tmp_path / "clean", [review], embedder)
    assert_same_index(snapshot(index), snapshot(clean))


def _record_status(index: Path) -> str | None:
    from chromadb.api.client import SharedSystemClient

    from ingest.registry import DocumentRegistry
    from retriever.store import make_client

    settings = Settings(index_dir=index, collection=COLLECTION)
    try:
        record = DocumentRegistry(make_client(settings), COLLECTION).get(
            "nen-drug-trials-review-2022"
        )
    finally:
        SharedSystemClient.clear_system_cache()
    return record.status if record else None
