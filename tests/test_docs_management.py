"""Managing the documents of an index: add, re-add, remove, reindex, as the library, the
``nenqa docs`` commands and the admin API do it.

The library tests use a counting hashing embedder (they are about what is written); the
command and API tests use a tiny real sentence-transformers model (tests/tiny_model.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import (
    add_documents,
    default_sources,
    inventory,
    parse_sources,
    remove_document,
    sync_index,
)
from ingest.registry import DocumentConflictError, DocumentRegistry, UnknownDocumentError
from nenqa.settings import PROJECT_ROOT, Settings
from retriever.store import ChunkStore, make_client

DATA = PROJECT_ROOT / "data"
FIXTURES = Path(__file__).parent / "fixtures"
MODEL_ID = "counting-hashing-embedder"


class CountingEmbedder:
    """Same text, same unit vector; counts the texts it embeds and can fail after a budget."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def embed_passages(self, texts):
        if self.fail_after is not None and self.calls + len(texts) > self.fail_after:
            raise RuntimeError("embedder stopped (simulated crash)")
        self.calls += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            row = np.random.default_rng(seed).normal(size=16)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, dtype=np.float32)


class Index:
    """A chunk store and its registry in a temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.settings = Settings(index_dir=folder, collection="docs", data_dir=DATA)
        self.store = ChunkStore(self.settings, None, MODEL_ID)
        self.registry = DocumentRegistry(make_client(self.settings), self.settings.collection)

    def add(self, paths, embedder=None, **options):
        return add_documents(
            parse_sources(paths),
            self.store,
            self.registry,
            embedder or CountingEmbedder(),
            model_id=MODEL_ID,
            batch_size=8,
            **options,
        )

    def snapshot(self) -> dict[str, tuple[str, str, dict]]:
        return {c.chunk_id: (c.doc_id, c.text, c.metadata) for c in self.store.all_chunks()}


@pytest.fixture
def index(tmp_path) -> Index:
    return Index(tmp_path / "index")


@pytest.fixture
def corpus(tmp_path) -> Path:
    """The default corpus and the sample documents, copied so tests may change them."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in [
        *default_sources(DATA),
        *sorted(FIXTURES.glob("sample-*")),
        *FIXTURES.glob("*.json"),
    ]:
        shutil.copyfile(path, folder / path.name)
    return folder


def test_adding_records_provenance_and_every_chunk(index, corpus):
    review = corpus / "sample-review.md"
    [change] = index.add([review])
    assert change.action == "added" and change.added == len(parse_sources([review]).chunks)
    record = index.registry.get("sample-review")
    assert record.path == str(review.resolve())
    assert record.sha256 == hashlib.sha256(review.read_bytes()).hexdigest()
    assert (record.kind, record.label, record.status) == ("markdown", "Zhang 2024", "complete")
    assert record.chunks == len(index.store.ids(where={"doc_id": "sample-review"}))
    assert record.references == 3 and record.embedding_model == MODEL_ID


def test_re_adding_an_unchanged_file_embeds_and_writes_nothing(index, corpus):
    paths = [*default_sources(corpus), corpus / "sample-review.md", corpus / "sample-update.pdf"]
    index.add(paths)
    before_chunks, before_records = index.snapshot(), index.registry.records()

    embedder = CountingEmbedder()
    changes = index.add(paths, embedder)

    assert embedder.calls == 0
    assert {c.action for c in changes} == {"unchanged"}
    assert index.snapshot() == before_chunks
    assert index.registry.records() == before_records, "not even a timestamp moves"


def test_a_changed_file_replaces_its_chunks_and_keeps_when_it_was_added(index, corpus):
    review = corpus / "sample-review.md"
    index.add([review])
    added_at = index.registry.get("sample-review").added_at
    review.write_text(review.read_text().replace("14.9%", "14.8%"), encoding="utf-8")

    [change] = index.add([review])

    assert change.action == "updated" and change.added == 1 and change.removed == 1
    assert index.store.ids(where={"doc_id": "sample-review"}) == {
        c.chunk_id for c in parse_sources([review]).chunks
    }
    record = index.registry.get("sample-review")
    assert record.added_at == added_at
    assert record.sha256 == hashlib.sha256(review.read_bytes()).hexdigest()


def test_removing_a_document_removes_all_its_chunks_and_nothing_else(index, corpus):
    index.add([*default_sources(corpus), corpus / "sample-review.md", corpus / "sample-notes.txt"])
    others = {cid: value for cid, value in index.snapshot().items() if value[0] != "sample-review"}

    removed = remove_document("sample-review", index.store, index.registry)

    assert removed == 8
    assert index.snapshot() == others
    assert index.registry.get("sample-review") is None
    assert {r.doc_id for r in index.registry.records()} == {
        "nen-drug-trials-review-2022",
        "trials",
        "sample-notes",
    }
    with pytest.raises(UnknownDocumentError, match="no document 'sample-review'"):
        remove_document("sample-review", index.store, index.registry)


def test_a_document_id_registered_from_another_path_is_refused_before_any_write(
    index, corpus, tmp_path
):
    index.add([corpus / "sample-review.md"])
    before = index.snapshot()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = shutil.copyfile(FIXTURES / "sample-notes.txt", elsewhere / "sample-review.txt")
    embedder = CountingEmbedder()
    with pytest.raises(DocumentConflictError, match=r"already registered from .*corpus"):
        index.add([corpus / "sample-notes.txt", other], embedder)
    assert embedder.calls == 0 and index.snapshot() == before
    assert index.registry.get("sample-notes") is None, "the batch is refused as a whole"


def test_reindex_embeds_every_chunk_again_and_keeps_the_ids(index, corpus):
    index.add([corpus / "sample-review.md", corpus / "sample-update.pdf"])
    ids = index.store.ids()
    embedder = CountingEmbedder()
    changes = index.add([corpus / "sample-review.md"], embedder, reembed=True)
    assert [c.action for c in changes] == ["reindexed"]
    assert embedder.calls == 8 and index.store.ids() == ids


def test_an_interrupted_add_is_finished_by_running_it_again(index, corpus, tmp_path):
    paths = [corpus / "nen-drug-trials-review-2022.md", corpus / "sample-review.md"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        index.add(paths, CountingEmbedder(fail_after=40))
    assert index.registry.get("nen-drug-trials-review-2022").status == "writing"
    assert 0 < index.store.count() < len(parse_sources(paths).chunks)

    index.add(paths)

    clean = Index(tmp_path / "clean")
    clean.add(paths)
    assert index.snapshot() == clean.snapshot()
    assert {r.status for r in index.registry.records()} == {"complete"}


def test_an_interrupted_remove_is_finished_by_running_it_again(index, corpus, monkeypatch):
    index.add([corpus / "sample-review.md", corpus / "sample-notes.txt"])
    monkeypatch.setattr(index.store, "delete", _raise)
    with pytest.raises(RuntimeError):
        remove_document("sample-review", index.store, index.registry)
    assert index.registry.get("sample-review").status == "removing"
    monkeypatch.undo()

    assert remove_document("sample-review", index.store, index.registry) == 8
    assert index.registry.get("sample-review") is None
    assert index.store.ids(where={"doc_id": "sample-review"}) == set()


def _raise(*args, **kwargs):
    raise RuntimeError("store went away (simulated crash)")


def test_inventory_shows_what_nenqa_ingest_indexed_without_registering(index, corpus):
    sync_index(parse_sources(default_sources(corpus)), index.store, CountingEmbedder())
    sync_index(parse_sources([corpus / "sample-notes.txt"]), index.store, CountingEmbedder())
    report = inventory(index.store, index.registry, corpus)
    assert [(d, p.name) for d, p, _ in report.unregistered] == [
        ("nen-drug-trials-review-2022", "nen-drug-trials-review-2022.md"),
        ("trials", "trials.jsonl"),
    ]
    assert report.orphans == 3, "sample-notes was indexed by path and nothing records it"

    embedder = CountingEmbedder()
    index.add([*default_sources(corpus), corpus / "sample-notes.txt"], embedder)
    assert embedder.calls == 0, "registering what is indexed embeds nothing"
    report = inventory(index.store, index.registry, corpus)
    assert report.unregistered == [] and report.orphans == 0
    assert report.indexed == {r.doc_id: r.chunks for r in report.records}


# --- nenqa docs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests.tiny_model import build_tiny_model

    folder = tmp_path_factory.mktemp("models")
    return build_tiny_model(folder / "tiny-a", seed=0), build_tiny_model(folder / "tiny-b", seed=1)


@pytest.fixture
def nenqa_docs(tmp_path, corpus, tiny_models, monkeypatch):
    """Run ``nenqa docs ...`` in-process (typer's runner) against a fresh index."""
    from typer.testing import CliRunner

    from cli.main import app
    from nenqa.settings import get_settings

    def run(*args: str, model: Path | None = None):
        monkeypatch.setenv("NENQA_INDEX_DIR", str(tmp_path / "cli-index"))
        monkeypatch.setenv("NENQA_DATA_DIR", str(corpus))
        monkeypatch.setenv("NENQA_EMBEDDING_MODEL", str(model or tiny_models[0]))
        monkeypatch.setenv("COLUMNS", "400")
        # Translation asks an endpoint nobody listens on (never the local model, never the
        # user's cache): the documents are indexed with their originals alone.
        monkeypatch.setenv("NENQA_LLM_BASE_URL", "http://127.0.0.1:9/v1")
        monkeypatch.setenv("NENQA_TRANSLATION_CACHE_ENABLED", "false")
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, ["docs", *args])
        finally:
            get_settings.cache_clear()

    return run


def listing(run, model: Path | None = None) -> dict:
    result = run("list", "--json", model=model)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_docs_commands_as_a_user_runs_them(nenqa_docs, corpus):
    added = nenqa_docs(
        "add", "-q", str(corpus / "sample-review.md"), str(corpus / "sample-update.pdf")
    )
    assert added.exit_code == 0, added.output
    documents = {d["doc_id"]: d for d in listing(nenqa_docs)["documents"]}
    assert set(documents) == {"sample-review", "sample-update"}
    pdf = documents["sample-update"]
    assert pdf["sha256"] == hashlib.sha256((corpus / "sample-update.pdf").read_bytes()).hexdigest()
    assert pdf["indexed_chunks"] == pdf["chunks"] == 2 and pdf["status"] == "complete"

    again = nenqa_docs("add", "-q", str(corpus / "sample-review.md"))
    assert again.exit_code == 0 and "unchanged" in again.output

    bad = corpus / "broken.md"
    bad.write_text("# Broken\n\nCites [2].\n\n## References\n\n[1] Only one.\n", encoding="utf-8")
    refused = nenqa_docs("add", "-q", str(corpus / "sample-notes.txt"), str(bad))
    assert refused.exit_code == 1
    assert "broken.md:3: citation [2] cites [2]" in refused.output
    assert "the index was not changed" in refused.output
    assert {d["doc_id"] for d in listing(nenqa_docs)["documents"]} == set(documents)

    removed = nenqa_docs("remove", "sample-review")
    assert removed.exit_code == 0 and "removed sample-review: 8 chunks" in removed.output
    assert [d["doc_id"] for d in listing(nenqa_docs)["documents"]] == ["sample-update"]
    unknown = nenqa_docs("remove", "sample-review")
    assert unknown.exit_code == 1 and "no document 'sample-review'" in unknown.output

    reindexed = nenqa_docs("reindex", "-q", "sample-update")
    assert reindexed.exit_code == 0 and "reindexed" in reindexed.output


@pytest.mark.slow
def test_reindex_after_a_model_change_re_embeds_every_document(nenqa_docs, corpus, tiny_models):
    second = tiny_models[1]
    assert nenqa_docs("add", "-q", str(corpus / "sample-notes.txt")).exit_code == 0
    ids = {d["doc_id"]: d["chunks"] for d in listing(nenqa_docs)["documents"]}

    refused = nenqa_docs("add", "-q", str(corpus / "sample-review.md"), model=second)
    assert refused.exit_code == 1 and "nenqa docs reindex" in refused.output
    one = nenqa_docs("reindex", "-q", "sample-notes", model=second)
    assert one.exit_code == 1 and "with no ids re-embeds every document" in one.output

    every = nenqa_docs("reindex", "-q", model=second)
    assert every.exit_code == 0, every.output
    documents = listing(nenqa_docs, model=second)["documents"]
    assert {d["doc_id"]: d["chunks"] for d in documents} == ids
    assert {d["embedding_model"] for d in documents} == {f"tiny-b@{_digest(second)}"}
    assert {d["status"] for d in documents} == {"complete"}


def _digest(folder: Path) -> str:
    from retriever.embeddings import model_id_for_folder

    return model_id_for_folder(folder).split("@")[1]


# --- the admin API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_app(tmp_path_factory, tiny_models):
    """The API over an index of the default corpus, with the admin key ``admin-secret``."""
    from fastapi.testclient import TestClient

    from retriever.embeddings import load_embedder
    from server.app import create_app
    from server.state import load_service

    root = tmp_path_factory.mktemp("admin")
    data = root / "data"
    data.mkdir()
    for path in [*default_sources(DATA), DATA / "glossary.tsv", *FIXTURES.glob("sample-*")]:
        shutil.copyfile(path, data / path.name)
    settings = Settings(
        index_dir=root / "index",
        data_dir=data,
        embedding_model=str(tiny_models[0]),
        admin_keys=["admin-secret"],
        rate_limit_per_minute=0,
        translation_cache_enabled=False,
        translate_at_ingest=True,
    )
    embedder = load_embedder(settings)
    store = ChunkStore(settings, None, embedder.model_id)
    registry = DocumentRegistry(make_client(settings), settings.collection)
    corpus = parse_sources(default_sources(data))
    add_documents(corpus, store, registry, embedder, model_id=embedder.model_id)
    service = load_service(settings)
    with TestClient(create_app(settings, service=service)) as client:
        yield client, data


ADMIN = {"X-Admin-Key": "admin-secret"}


@pytest.mark.slow
def test_admin_endpoints_need_an_admin_key(admin_app):
    client, _ = admin_app
    missing = client.get("/admin/documents")
    assert missing.status_code == 401 and "X-Admin-Key" in missing.json()["detail"]
    wrong = client.get("/admin/documents", headers={"X-Admin-Key": "guess"})
    assert wrong.status_code == 403
    assert client.get(
        "/admin/documents", headers={"Authorization": "Bearer admin-secret"}
    ).is_success


@pytest.mark.slow
def test_admin_endpoints_are_closed_when_no_admin_key_is_configured(admin_app):
    from fastapi.testclient import TestClient

    from server.app import create_app

    client, _ = admin_app
    service = client.app.state.service
    settings = service.settings.model_copy(update={"admin_keys": []})
    with TestClient(create_app(settings, service=service)) as closed:
        response = closed.get("/admin/documents", headers=ADMIN)
    assert response.status_code == 403 and "NENQA_ADMIN_KEYS" in response.json()["detail"]


@pytest.mark.slow
def test_admin_add_search_and_remove_a_document(admin_app):
    client, _ = admin_app
    # The tiny model's dense ranking is noise; BM25 still puts the new passage in the top 20.
    question = {"question": "Octreotide LAR studied in PROMID", "top_k": 20}

    added = client.post("/admin/documents", json={"paths": ["sample-review.md"]}, headers=ADMIN)
    assert added.status_code == 200, added.text
    assert added.json()["changes"][0] == {
        "doc_id": "sample-review",
        "action": "added",
        "added": 8,
        "removed": 0,
        "unchanged": 0,
        "label": "Zhang 2024",
        "kind": "markdown",
    }
    # No LLM endpoint configured: the document is indexed in English alone, and the response
    # says how many of its units lack a Chinese rendering and why.
    translation = added.json()["translation"]
    assert translation["units"] == translation["missing"] > 0 and translation["twins"] == 0
    assert "NENQA_LLM_BASE_URL" in translation["translator_error"]
    listed = client.get("/admin/documents", headers=ADMIN).json()
    assert "sample-review" in {d["doc_id"] for d in listed["documents"]}
    texts = [r["text"] for r in client.post("/v1/search", json=question).json()["results"]]
    assert "Octreotide LAR was studied in PROMID." in texts, "the service sees the new document"

    again = client.post("/admin/documents", json={"paths": ["sample-review.md"]}, headers=ADMIN)
    assert again.json()["changes"][0]["action"] == "unchanged"

    removed = client.delete("/admin/documents/sample-review", headers=ADMIN)
    assert removed.json() == {"doc_id": "sample-review", "removed_chunks": 8}
    texts = [r["text"] for r in client.post("/v1/search", json=question).json()["results"]]
    assert "Octreotide LAR was studied in PROMID." not in texts
    assert client.delete("/admin/documents/sample-review", headers=ADMIN).status_code == 404


@pytest.mark.slow
def test_an_admin_change_saves_its_generation_files_before_publishing_it(admin_app, monkeypatch):
    from retriever.generation import fingerprint_of

    client, _ = admin_app
    store = client.app.state.service.searcher.store
    index_dir = store.settings.index_dir
    saved_at_publication: list[set[str]] = []
    publish = type(store).publish

    def publish_and_look(self):
        # What other workers would find, at the moment they can notice the generation.
        folders = index_dir.glob(f"**/*-{fingerprint_of(self.ids())}")
        saved_at_publication.append({f.relative_to(index_dir).parts[0] for f in folders})
        return publish(self)

    monkeypatch.setattr(type(store), "publish", publish_and_look)
    added = client.post("/admin/documents", json={"paths": ["sample-review.md"]}, headers=ADMIN)
    assert added.status_code == 200, added.text
    removed = client.delete("/admin/documents/sample-review", headers=ADMIN)
    assert removed.status_code == 200, removed.text
    assert saved_at_publication == [{"generations", "scope", "sentences"}] * 2


@pytest.mark.slow
def test_admin_refuses_bad_input_with_the_file_line_and_reason(admin_app, tmp_path):
    client, data = admin_app
    (data / "broken.md").write_text("# B\n\nCites [3].\n\n## References\n\n[1] A.\n", "utf-8")
    bad = client.post("/admin/documents", json={"paths": ["broken.md"]}, headers=ADMIN)
    assert bad.status_code == 422
    assert "broken.md:3: citation [3] cites [3]" in bad.json()["detail"]

    outside = tmp_path / "secret.md"
    outside.write_text("# S\n\nText.\n", "utf-8")
    escaped = client.post("/admin/documents", json={"paths": [str(outside)]}, headers=ADMIN)
    assert escaped.status_code == 422 and "inside the data folder" in escaped.json()["detail"]
    traversal = client.post("/admin/documents", json={"paths": ["../secret.md"]}, headers=ADMIN)
    assert traversal.status_code == 422
    assert client.post("/admin/documents/nothing/reindex", headers=ADMIN).status_code == 404


@pytest.mark.slow
def test_admin_reindex_re_embeds_and_keeps_the_chunks(admin_app):
    client, _ = admin_app
    before = client.get("/admin/documents", headers=ADMIN).json()["documents"]
    response = client.post("/admin/reindex", headers=ADMIN)
    assert response.status_code == 200, response.text
    changes = response.json()["changes"]
    assert {c["action"] for c in changes} == {"reindexed"}
    assert {c["doc_id"]: c["added"] for c in changes} == {d["doc_id"]: d["chunks"] for d in before}
    after = client.get("/admin/documents", headers=ADMIN).json()["documents"]
    assert [(d["doc_id"], d["indexed_chunks"], d["status"]) for d in after] == [
        (d["doc_id"], d["chunks"], "complete") for d in before
    ]
