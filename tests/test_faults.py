"""Faults a deployment meets, and what a user sees: a clear status and message, then recovery.

- the Chroma server stops, hangs, or is not up yet when the API starts;
- the LLM endpoint is down or too slow (with and without the extractive fallback);
- the index disk fills up, or the index directory is read-only, during ``nenqa ingest``.

The disk faults mount a 4 MiB tmpfs and a read-only bind mount, so they need root (CI runs as
root); elsewhere they are skipped with the reason. docs/reliability.md describes each fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from nenqa.settings import PROJECT_ROOT
from server.app import create_app
from tests.browser_support import free_port, start_api_server

pytestmark = pytest.mark.slow

SPINET = "SPINET研究中兰瑞肽组的治疗失败时间是多少？"
STREAM = {"model": "nenqa-extractive", "stream": True}


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f} s"
        time.sleep(0.25)


def completion_body(question: str, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


# --- The Chroma server stops, hangs, or is not up yet ------------------------------------------


@pytest.fixture(scope="module")
def api_over_chroma(chroma_settings, tmp_path_factory):
    """The API as its own uvicorn process over the Chroma server (2 s Chroma timeout)."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "NENQA_CHROMA_URL": chroma_settings.chroma_url,
        "NENQA_CHROMA_TIMEOUT_S": "2",
        "NENQA_RATE_LIMIT_PER_MINUTE": "0",
    }
    server = start_api_server(env, tmp_path_factory.mktemp("api-over-chroma"), timeout_s=300)
    yield server
    server.stop()


def assert_index_unavailable(url: str, chroma_url: str, cause: str) -> None:
    """Readiness and every route that searches answer 503 naming the server; nothing is 500."""
    ready = httpx.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
    assert ready.json()["status"] == "unavailable"
    assert chroma_url in ready.json()["detail"] and cause in ready.json()["detail"]
    requests = [
        ("/v1/chat", {"question": SPINET}),
        ("/v1/chat/completions", completion_body(SPINET, model="nenqa-extractive")),
        ("/v1/chat/completions", completion_body(SPINET, **STREAM)),
        ("/v1/search", {"question": SPINET}),
    ]
    for path, body in requests:
        response = httpx.post(f"{url}{path}", json=body, timeout=30)
        assert response.status_code == 503, (path, response.text)
        assert response.headers["content-type"] == "application/json"
        detail = response.json()["detail"]
        assert f"the Chroma server at {chroma_url} did not answer" in detail
        assert "start it again" in detail
    assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}


def test_a_stopped_chroma_server_is_a_503_and_the_api_recovers_when_it_returns(
    api_over_chroma, chroma_server
):
    url, pid = api_over_chroma.url, api_over_chroma.process.pid
    before = httpx.post(f"{url}/v1/chat", json={"question": SPINET}, timeout=60).json()
    assert "[7]" in before["answer"]

    chroma_server.stop()
    try:
        assert_index_unavailable(url, chroma_server.url, "ConnectError")
    finally:
        chroma_server.start()  # same port, same --path

    wait_for(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200, 30, "ready again")
    after = httpx.post(f"{url}/v1/chat", json={"question": SPINET}, timeout=60)
    assert after.status_code == 200 and after.json()["answer"] == before["answer"]
    assert api_over_chroma.running and api_over_chroma.process.pid == pid  # never restarted


def test_a_hung_chroma_server_times_out_into_a_503_and_recovers(api_over_chroma, chroma_server):
    url = api_over_chroma.url
    chroma_server.pause()  # keeps its port and accepts connections, answers nothing
    try:
        started = time.monotonic()
        assert_index_unavailable(url, chroma_server.url, "ReadTimeout")
        # readyz, four routes and healthz, each bounded by NENQA_CHROMA_TIMEOUT_S=2 (not hung)
        assert time.monotonic() - started < 30
    finally:
        chroma_server.resume()
    wait_for(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200, 30, "ready again")
    chat = httpx.post(f"{url}/v1/chat", json={"question": SPINET}, timeout=60)
    assert chat.status_code == 200 and "[7]" in chat.json()["answer"]


def test_the_api_waits_for_a_chroma_server_that_is_not_up_yet(chroma_settings, chroma_server):
    settings = chroma_settings.model_copy(update={"rate_limit_per_minute": 0})
    chroma_server.stop()
    try:
        with TestClient(create_app(settings)) as client:

            def waiting() -> bool:
                return "waiting for the index" in (client.get("/readyz").json()["detail"] or "")

            wait_for(waiting, 120, "readyz saying it waits for the Chroma server")
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "loading"
            assert chroma_server.url in ready.json()["detail"]
            chat = client.post("/v1/chat", json={"question": SPINET})
            assert chat.status_code == 503 and chat.headers["retry-after"] == "5"
            assert "is not running" in chat.json()["detail"]

            chroma_server.start()
            wait_for(lambda: client.get("/readyz").status_code == 200, 180, "ready")
            chat = client.post("/v1/chat", json={"question": SPINET})
            assert chat.status_code == 200 and "[7]" in chat.json()["answer"]
    finally:
        chroma_server.start()


# --- The LLM endpoint is down or slow ---------------------------------------------------------


@pytest.fixture(scope="module")
def silent_llm_url() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a hung or overloaded LLM)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


@pytest.fixture(scope="module")
def down_llm_url() -> str:
    """An endpoint where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


def llm_client(service, base_url: str, *, fallback: bool) -> TestClient:
    """The app with its llm mode on ``base_url``, a 1 s timeout, the fallback on or off."""
    from answer.llm import make_chat_model
    from server.state import with_llm

    settings = service.settings.model_copy(
        update={
            "llm_base_url": base_url,
            "llm_timeout_s": 1.0,
            "llm_fallback_extractive": fallback,
            "answer_mode": "llm",
        }
    )
    state = with_llm(replace(service, settings=settings), make_chat_model(settings))
    return TestClient(create_app(settings, service=state))


@pytest.mark.parametrize(
    ("endpoint", "status", "words"),
    [
        ("down_llm_url", 502, "ConnectionError: Connection error."),
        ("silent_llm_url", 504, "did not answer in time ("),
    ],
)
def test_a_failing_llm_endpoint_is_a_clear_gateway_error(request, service, endpoint, status, words):
    with llm_client(service, request.getfixturevalue(endpoint), fallback=False) as client:
        started = time.monotonic()
        chat = client.post("/v1/chat", json={"question": SPINET})
        stream = client.post(
            "/v1/chat/completions", json=completion_body(SPINET, model="nenqa-llm", stream=True)
        )
        elapsed = time.monotonic() - started
    assert chat.status_code == status, chat.text
    assert words in chat.json()["detail"]
    assert chat.json()["error"]["code"] == status
    # Evidence first: the quotes went out before the model was asked; its failure follows.
    assert stream.status_code == 200
    events = [
        json.loads(line.removeprefix("data: "))
        for line in stream.text.splitlines()
        if line.startswith("data: {")
    ]
    assert any(e.get("part") == "quoted" for e in events)
    assert words in events[-1]["error"]["message"]
    if status == 504:
        assert "NENQA_LLM_TIMEOUT_S" in chat.json()["detail"]
    # 1 s timeout, one retry, for two requests: bounded, not hung
    assert elapsed < 20


def test_with_the_fallback_a_failing_llm_gives_the_extractive_answer_and_says_why(
    service, silent_llm_url, down_llm_url
):
    with TestClient(create_app(service.settings, service=service)) as plain:
        extractive = plain.post("/v1/chat", json={"question": SPINET}).json()
    for base_url, cause in [(silent_llm_url, "in time"), (down_llm_url, "ConnectionError")]:
        with llm_client(service, base_url, fallback=True) as client:
            chat = client.post("/v1/chat", json={"question": SPINET, "mode": "llm"})
            assert chat.status_code == 200
            body = chat.json()
            assert body["mode"] == "extractive" and body["answer"] == extractive["answer"]
            assert [c["ref"] for c in body["citations"]] == [
                c["ref"] for c in extractive["citations"]
            ]
            assert cause in body["fallback"] and "extractive mode" in body["fallback"]

            with client.stream(
                "POST",
                "/v1/chat/completions",
                json=completion_body(SPINET, model="nenqa-llm", stream=True),
            ) as response:
                assert response.status_code == 200
                events = [
                    json.loads(line.removeprefix("data: "))
                    for line in response.iter_lines()
                    if line.startswith("data: {")
                ]
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
            assert text == extractive["answer"]
            assert cause in events[-1]["fallback"]


def test_with_the_fallback_a_working_llm_still_answers_itself(service, scripted_llm):
    scripted_llm.set_rules([{"when": "SPINET", "reply": "兰瑞肽组TTF为13.3个月{key:13.3个月}。"}])
    asked_before = len(scripted_llm.requests())
    with llm_client(service, scripted_llm.base_url, fallback=True) as client:
        body = client.post("/v1/chat", json={"question": SPINET}).json()
    assert body["mode"] == "llm" and body["fallback"] is None
    assert len(scripted_llm.requests()) == asked_before + 1  # the model wrote this answer


# --- A full disk or a read-only index directory during ingest ----------------------------------


def needs_mounts(test):
    """Fails (never skips) without root and mount(8): CI runs `make test` as root."""
    import functools

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.fail("mounting a tmpfs and a read-only bind mount needs root and mount(8)")
        return test(*args, **kwargs)

    return wrapper


# Opens the index without loading the model; prints its chunk IDs and the nearest neighbours
# of one stored vector (the dense index answering). A separate process, so no Chroma client
# of the test process holds the index while `nenqa ingest` writes it.
PROBE = """
import json, sys
import chromadb
from chromadb.config import Settings
client = chromadb.PersistentClient(sys.argv[1], settings=Settings(anonymized_telemetry=False))
collection = client.get_collection("nenqa")
ids = sorted(collection.get(include=[])["ids"])
probe = collection.get(ids=[ids[0]], include=["embeddings"])["embeddings"][0]
nearest = collection.query(query_embeddings=[probe], n_results=5, include=[])["ids"][0]
print(json.dumps({"ids": ids, "nearest": nearest}))
"""


def probe_index(index_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(index_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def run_ingest(index_dir: Path, *paths: Path, data_dir: Path | None = None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NENQA_INDEX_DIR": str(index_dir)}
    env.pop("NENQA_CHROMA_URL", None)
    if data_dir is not None:
        env["NENQA_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", "--quiet", *map(str, paths)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed here: {result.stderr.strip()}")


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def read_only_view(source: Path, path: Path) -> Iterator[Path]:
    """``source`` seen through a read-only bind mount at ``path`` (root can't write there)."""
    path.mkdir()
    _mount("--bind", str(source), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        _unmount(path)


@pytest.fixture(scope="module")
def extra_document(tmp_path_factory) -> Path:
    """A plain-text document of ~120 chunks, more than the space a full disk leaves."""
    paragraphs = [
        f"Note {i}. "
        + " ".join(
            f"Observation {i}.{j} concerns follow-up visit {j} of cohort {i}." for j in range(8)
        )
        for i in range(120)
    ]
    path = tmp_path_factory.mktemp("extra") / "clinic-notes.txt"
    path.write_text("Clinic notes\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    return path


def fill(directory: Path, leave_bytes: int) -> None:
    """Write a filler file so that only about ``leave_bytes`` stay free."""
    free = shutil.disk_usage(directory).free
    with (directory / "filler").open("wb") as filler:
        filler.truncate(0)
        remaining = free - leave_bytes
        block = b"\0" * 65536
        while remaining > 0:
            remaining -= filler.write(block[: min(len(block), remaining)])


def cli_message(result: subprocess.CompletedProcess) -> str:
    return " ".join(result.stderr.split())


@needs_mounts
def test_a_full_disk_at_ingest_is_a_clear_error_and_loses_nothing(
    tmp_path, indexed_settings, extra_document
):
    from ingest.pipeline import parse_sources

    extra_ids = {c.chunk_id for c in parse_sources([extra_document]).chunks}
    with tmpfs(tmp_path / "disk", "8m") as disk:
        index = disk / "index"
        shutil.copytree(indexed_settings.index_dir, index)
        before = probe_index(index)
        fill(disk, leave_bytes=128 * 1024)

        failed = run_ingest(index, extra_document)
        assert failed.returncode == 1, failed.stderr[-3000:]
        assert "Traceback" not in failed.stderr
        message = cli_message(failed)
        assert f"no space left for the index at {index}" in message
        assert "run the same command again" in message

        (disk / "filler").unlink()
        after = probe_index(index)
        assert set(before["ids"]) <= set(after["ids"])  # every chunk it had
        assert set(after["ids"]) - set(before["ids"]) <= extra_ids  # plus some whole new ones
        assert after["nearest"] == before["nearest"]  # the dense index answers as before

        rerun = run_ingest(index, extra_document)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        final = probe_index(index)
        assert set(final["ids"]) == set(before["ids"]) | extra_ids
        assert len(final["ids"]) == len(before["ids"]) + len(extra_ids)


@needs_mounts
def test_a_read_only_index_directory_at_ingest_is_a_clear_error_and_changes_nothing(
    tmp_path, indexed_settings, extra_document
):
    index = tmp_path / "index"
    shutil.copytree(indexed_settings.index_dir, index)
    before = probe_index(index)
    with read_only_view(index, tmp_path / "read-only") as read_only:
        failed = run_ingest(read_only, extra_document)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr
    message = cli_message(failed)
    assert f"the index at {read_only} is read-only" in message
    assert "NENQA_INDEX_DIR" in message
    assert probe_index(index) == before


@needs_mounts
def test_a_read_only_data_directory_is_all_ingest_needs(tmp_path, indexed_settings):
    index = tmp_path / "index"
    shutil.copytree(indexed_settings.index_dir, index)
    before = probe_index(index)
    with read_only_view(indexed_settings.data_dir, tmp_path / "data") as data:
        result = run_ingest(index, data_dir=data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert probe_index(index) == before  # the same corpus: nothing to write
