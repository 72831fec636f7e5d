"""Generations: every corpus change is published in the index, every server notices it and
swaps to it whole, and an embedded index has one writer at a time.

Two workers over a real Chroma server are tested in ``test_chroma_server.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import add_documents, default_sources, parse_sources
from ingest.registry import DocumentRegistry
from nenqa.settings import PROJECT_ROOT, Settings
from nenqa.types import Chunk
from retriever.generation import Generation, fingerprint_of, writer_lock
from retriever.store import ChunkStore, make_client

DATA = PROJECT_ROOT / "data"
FIXTURES = Path(__file__).parent / "fixtures"
ADMIN = {"X-Admin-Key": "admin-secret"}


def chunk(chunk_id: str, text: str) -> Chunk:
    return Chunk(chunk_id, "notes", "passage", text, "1 生物治疗", language="en")


def vectors(count: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(count, 4)).astype(np.float32)


def test_each_change_publishes_the_next_generation_that_every_store_reads(tmp_path):
    settings = Settings(index_dir=tmp_path / "index")
    store = ChunkStore(settings, None, "model-a")
    assert store.generation() == Generation(0, "")  # nothing published yet

    first = [chunk("p-1", "SPINET lanreotide"), chunk("p-2", "CLARINET FORTE")]
    store.upsert(first, vectors(2))
    published = store.publish()
    assert published == Generation(1, fingerprint_of(["p-1", "p-2"]))
    assert store.publish() == published, "the same chunks are the same generation"

    store.delete(["p-2"])
    second = store.publish()
    assert second.number == 2 and second.fingerprint == fingerprint_of(["p-1"])
    # Another view of the index (another process's, or a new ChunkStore) reads the same.
    assert ChunkStore(settings, None, "model-a").generation() == second
    # Publishing keeps the model the index was built with.
    with pytest.raises(Exception, match="built with embedding model 'model-a'"):
        ChunkStore(settings, None, "model-b")


HOLD = """
import sys, time
from pathlib import Path
from retriever.generation import writer_lock
with writer_lock(Path(sys.argv[1]), "a running `nenqa serve`"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held_index(tmp_path):
    """An embedded index directory that another process holds for writing, as a server does."""
    index_dir = tmp_path / "index"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(index_dir)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    yield index_dir, process.pid
    process.kill()
    process.wait()


def test_a_second_writer_of_an_embedded_index_is_refused_with_the_way_out(
    held_index, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from cli.main import app
    from nenqa.settings import get_settings

    index_dir, holder = held_index
    monkeypatch.setenv("NENQA_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("COLUMNS", "400")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["docs", "remove", "notes"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"in use by a running `nenqa serve` (pid {holder})" in message
    assert "POST /admin/documents" in message and "NENQA_CHROMA_URL" in message


def test_a_server_is_refused_an_embedded_index_another_process_writes(tmp_path):
    index_dir = tmp_path / "index"
    with writer_lock(index_dir, "`nenqa docs`/`nenqa ingest`"):
        with writer_lock(index_dir, "nested"):  # re-entrant within one process
            pass
        served = subprocess.run(
            [sys.executable, "-m", "cli.main", "serve", "--port", "0"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "NENQA_INDEX_DIR": str(index_dir), "COLUMNS": "400"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert served.returncode == 1
    message = " ".join(served.stderr.split() + served.stdout.split())
    assert f"in use by `nenqa docs`/`nenqa ingest` (pid {os.getpid()})" in message
    # Released: the next writer gets it.
    with writer_lock(index_dir, "next"):
        pass


@pytest.fixture(scope="module")
def two_apps(tmp_path_factory):
    """Two servers on one embedded index in this process (Chroma shares an open index within a
    process), as two workers share a Chroma server: the first with admin keys."""
    from fastapi.testclient import TestClient

    from retriever.embeddings import load_embedder
    from server.app import create_app
    from server.state import load_service
    from tests.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("generations")
    data = root / "data"
    data.mkdir()
    for path in [*default_sources(DATA), DATA / "glossary.tsv", FIXTURES / "sample-review.md"]:
        shutil.copyfile(path, data / path.name)
    settings = Settings(
        index_dir=root / "index",
        data_dir=data,
        embedding_model=str(build_tiny_model(root / "tiny", seed=0)),
        admin_keys=["admin-secret"],
        rate_limit_per_minute=0,
        translate_at_ingest=False,
        generation_poll_s=0.2,
    )
    embedder = load_embedder(settings)
    store = ChunkStore(settings, None, embedder.model_id)
    registry = DocumentRegistry(make_client(settings), settings.collection)
    corpus = parse_sources(default_sources(data))
    add_documents(corpus, store, registry, embedder, model_id=embedder.model_id)
    store.publish()
    first, second = load_service(settings), load_service(settings)
    with (
        TestClient(create_app(settings, service=first)) as one,
        TestClient(create_app(settings, service=second)) as other,
    ):
        yield one, other


def wait_for_generation(client, number: int, timeout_s: float = 30.0) -> float:
    """Seconds until ``client`` serves generation ``number``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if client.get("/readyz").json()["generation"] == number:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"generation {number} not served within {timeout_s:.0f} s")


@pytest.mark.slow
def test_a_change_through_one_server_reaches_the_other_whole(two_apps):
    one, other = two_apps
    before = other.app.state.service
    start = one.get("/readyz").json()
    assert other.get("/readyz").json()["generation"] == start["generation"]

    added = one.post("/admin/documents", json={"paths": ["sample-review.md"]}, headers=ADMIN)
    assert added.status_code == 200, added.text
    ready = one.get("/readyz").json()
    assert ready["generation"] == start["generation"] + 1  # the writer serves it at once
    assert ready["chunks"] == start["chunks"] + 8
    wait_for_generation(other, ready["generation"])
    assert other.get("/readyz").json()["fingerprint"] == ready["fingerprint"]
    question = {"question": "Octreotide LAR studied in PROMID", "top_k": 20}
    texts = [r["text"] for r in other.post("/v1/search", json=question).json()["results"]]
    assert "Octreotide LAR was studied in PROMID." in texts

    # A request that took the old service before the swap answers from the old generation
    # throughout: its searcher was never changed in place.
    assert before.searcher.generation.number == start["generation"]
    assert len(before.searcher) == start["chunks"]
    assert not any(c.doc_id == "sample-review" for c in before.searcher.chunks)

    removed = one.delete("/admin/documents/sample-review", headers=ADMIN)
    assert removed.status_code == 200
    wait_for_generation(other, ready["generation"] + 1)
    back = other.get("/readyz").json()
    assert back["chunks"] == start["chunks"] and back["fingerprint"] == start["fingerprint"]


@pytest.mark.slow
def test_a_new_process_opens_the_saved_tables_and_ranks_alike(searcher, monkeypatch):
    """The session searcher built the generation's tables and saved them; a reopened searcher
    (what another worker or a reload does) reads no chunk from the store and ranks the same."""
    from retriever.snapshot import snapshots_dir

    root = snapshots_dir(searcher.store.settings.index_dir)
    generation = searcher.generation
    assert generation.number >= 1
    assert (root / f"{generation.number:06d}-{generation.fingerprint}" / "meta.json").exists()

    def no_store_reads(self):
        raise AssertionError("the tables were rebuilt from the store")

    monkeypatch.setattr(ChunkStore, "all_chunks", no_store_reads)
    opened = searcher.reopened()
    assert opened.generation == generation and len(opened) == len(searcher)
    for question in [
        "SPINET研究中兰瑞肽的TTF是多少？",
        "What did CLARINET FORTE show for high-dose lanreotide?",
        "哪些研究使用了双免疫联合治疗？",
    ]:
        built = [e.chunk.chunk_id for e in searcher.search(question)]
        assert [e.chunk.chunk_id for e in opened.search(question)] == built


def test_saved_tables_of_another_corpus_or_format_are_rebuilt_with_a_warning(tmp_path, caplog):
    from retriever.lexical import LexicalIndex
    from retriever.snapshot import FORMAT, SearchTables, load_tables, save_tables

    generation = Generation(3, fingerprint_of(["p-1"]))
    tables = SearchTables(generation, [chunk("p-1", "SPINET lanreotide")], 1,
                          LexicalIndex(["SPINET lanreotide"]), {})  # fmt: skip
    folder = save_tables(tmp_path, tables)
    assert folder is not None and load_tables(tmp_path, generation) is not None
    assert load_tables(tmp_path, Generation(3, "0" * 16)) is None  # nothing saved for it

    meta = folder / "meta.json"
    meta.write_text(meta.read_text().replace(f'"format": {FORMAT}', '"format": 99'))
    assert load_tables(tmp_path, generation) is None
    assert "not this generation's; rebuilding" in caplog.text

    (folder / "records.bin").write_bytes(b"not the chunk records")
    meta.write_text(meta.read_text().replace('"format": 99', f'"format": {FORMAT}'))
    assert load_tables(tmp_path, generation) is None
    assert "cannot be read" in caplog.text


def test_an_interrupted_save_leaves_the_previous_generation_loadable(tmp_path, monkeypatch):
    from retriever.lexical import LexicalIndex
    from retriever.snapshot import SearchTables, load_tables, save_tables

    def tables(number: int, ids: list[str]) -> SearchTables:
        chunks = [chunk(i, f"text {i}") for i in ids]
        generation = Generation(number, fingerprint_of(ids))
        return SearchTables(
            generation, chunks, len(chunks), LexicalIndex([c.text for c in chunks]), {}
        )

    first = tables(1, ["p-1"])
    save_tables(tmp_path, first)
    second = tables(2, ["p-1", "p-2"])

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LexicalIndex, "save", crash)
    assert save_tables(tmp_path, second) is None
    assert [p.name for p in tmp_path.iterdir()] == [f"000001-{first.generation.fingerprint}"]
    assert load_tables(tmp_path, first.generation) is not None
    assert load_tables(tmp_path, second.generation) is None


TRY = """
import sys
from pathlib import Path
from retriever.generation import IndexBusyError, writer_lock
for shared in (True, False):
    try:
        with writer_lock(Path(sys.argv[1]), "probe", shared=shared):
            print("got", "shared" if shared else "exclusive")
    except IndexBusyError as error:
        print("refused", "shared" if shared else "exclusive", "by", str(error).split(" by ")[0])
"""


def test_servers_that_only_read_share_an_embedded_index_but_keep_writers_out(tmp_path):
    index_dir = tmp_path / "index"
    with writer_lock(index_dir, "a running `nenqa serve`", shared=True):
        tried = subprocess.run(
            [sys.executable, "-c", TRY, str(index_dir)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    lines = tried.stdout.splitlines()
    assert lines[0] == "got shared"
    assert lines[1].startswith("refused exclusive"), tried.stdout + tried.stderr


class _Searcher:
    """What a swap reads of a searcher: the store's published generation and its own."""

    def __init__(self, number: int, published: int) -> None:
        self.generation = Generation(number, f"fp{number}")
        self.store = type(
            "Store", (), {"generation": lambda _: Generation(published, f"fp{published}")}
        )()

    def __len__(self) -> int:
        return 1


def test_a_swap_gives_back_the_memory_the_old_generation_freed(monkeypatch):
    from types import SimpleNamespace

    import server.generations as generations

    released = []
    monkeypatch.setattr(generations, "release_freed_memory", lambda: released.append(True))
    fresh = SimpleNamespace(searcher=_Searcher(2, 2), load_seconds=0.1)
    monkeypatch.setattr(generations, "reload_service", lambda service: fresh)
    app = SimpleNamespace(state=SimpleNamespace(service=SimpleNamespace(searcher=_Searcher(1, 2))))

    assert generations.serve_current_generation(app) is fresh
    assert released == [True]
    assert generations.serve_current_generation(app) is fresh  # nothing new: nothing to free
    assert released == [True]


def test_freed_memory_is_given_back_where_the_c_library_can():
    from server.generations import release_freed_memory

    glibc = sys.platform == "linux" and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    garbage = [bytearray(4096) for _ in range(20_000)]  # 80 MB of heap blocks
    pinned = bytearray(4096)  # above them, so freeing them cannot shrink the heap's top
    del garbage
    assert release_freed_memory() is glibc
    del pinned
