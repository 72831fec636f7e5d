"""The suite's retrieval and chat tests again, over a Chroma server (``NENQA_CHROMA_URL``).

``chroma run`` serves the default corpus on loopback (``chroma_settings`` in conftest). The
retrieval tests of ``test_search`` and chat tests of ``test_api_chat`` run here unchanged, with
``searcher``/``service``/``client`` overridden to use the server; the OpenAI-protocol tests of
``test_api_completions`` run against ``nenqa serve --workers 2``, which only a server allows:
its workers are forked from the process that loaded the service (``server.prefork``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from ingest.pipeline import default_sources
from nenqa.settings import PROJECT_ROOT
from server.app import create_app
from tests import test_api_chat as chat_tests
from tests import test_api_completions as completion_tests
from tests import test_search as search_tests
from tests.browser_support import free_port, stop_process

pytestmark = pytest.mark.slow

SPINET = chat_tests.SPINET
DATA = PROJECT_ROOT / "data"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def searcher(chroma_settings):
    """The hybrid searcher over the Chroma server (overrides conftest's embedded one)."""
    from retriever.search import load_searcher

    return load_searcher(chroma_settings)


@pytest.fixture(scope="module")
def service(chroma_settings, searcher):
    from server.state import load_service

    settings = chroma_settings.model_copy(update={"rate_limit_per_minute": 0})
    return load_service(settings, searcher=searcher)


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service.settings, service=service)) as test_client:
        yield test_client


def test_the_searcher_really_talks_to_the_server(searcher, chroma_server):
    assert type(searcher.store._client._server).__name__ == "FastAPI"  # chromadb's HTTP client
    assert searcher.store.settings.chroma_url == chroma_server.url
    assert searcher.store.count() == len(searcher.chunks) > 100


def test_server_and_embedded_indexes_rank_every_eval_question_alike(searcher, indexed_settings):
    from retriever.search import load_searcher

    embedded = load_searcher(indexed_settings)
    questions = [
        json.loads(line)["question"]
        for line in (PROJECT_ROOT / "eval" / "qa.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(questions) > 100
    for question in questions:
        over_server = [e.chunk.chunk_id for e in searcher.search(question, 5)]
        over_embedded = [e.chunk.chunk_id for e in embedded.search(question, 5)]
        assert over_server == over_embedded, question


# test_search.py, unchanged, over the server.
test_an_english_question_reaches_the_chinese_spinet_passage = (
    search_tests.test_an_english_question_reaches_the_chinese_spinet_passage
)
test_english_drug_names_bridge_to_chinese_passages = (
    search_tests.test_english_drug_names_bridge_to_chinese_passages
)
test_a_chinese_question_finds_the_right_trial = (
    search_tests.test_a_chinese_question_finds_the_right_trial
)
test_a_reference_hit_lifts_the_passages_that_cite_it = (
    search_tests.test_a_reference_hit_lifts_the_passages_that_cite_it
)
test_a_follow_up_uses_the_conversation = search_tests.test_a_follow_up_uses_the_conversation
test_filters_restrict_kind_and_trial_metadata = (
    search_tests.test_filters_restrict_kind_and_trial_metadata
)
test_results_are_deterministic_and_k_is_respected = (
    search_tests.test_results_are_deterministic_and_k_is_respected
)

# test_api_chat.py, unchanged, over the server.
test_a_question_gets_a_cited_answer_with_its_evidence = (
    chat_tests.test_a_question_gets_a_cited_answer_with_its_evidence
)
test_history_carries_a_follow_up = chat_tests.test_history_carries_a_follow_up
test_an_out_of_scope_question_abstains_without_citations = (
    chat_tests.test_an_out_of_scope_question_abstains_without_citations
)
test_nothing_a_request_sends_changes_the_index = (
    chat_tests.test_nothing_a_request_sends_changes_the_index
)


# nenqa serve --workers 2 -----------------------------------------------------------------


def _child_pids(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    try:
        return {int(pid) for pid in children.read_text().split()}
    except OSError:
        return set()


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ready_worker(url: str) -> int | None:
    """The PID of the worker that answered ``/readyz`` on a fresh connection, if ready."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=5, headers={"Connection": "close"})
    except httpx.TransportError:
        return None
    body = response.json()
    return body["worker_pid"] if response.status_code == 200 else None


@dataclass
class Workers:
    """A running ``nenqa serve --workers 2``: its URL, its process and the workers' PIDs."""

    url: str
    process: subprocess.Popen
    pids: set[int]
    log_path: Path


@contextlib.contextmanager
def serving_two_workers(chroma_settings, tmp_path_factory, llm_url: str) -> Iterator[Workers]:
    """``nenqa serve --workers 2`` over the Chroma server (its llm mode on ``llm_url``), once
    both workers are ready."""
    port = free_port()
    # The workers' own data folder (the corpus and a document to add through /admin).
    data = tmp_path_factory.mktemp("workers-data")
    for path in [*default_sources(DATA), DATA / "glossary.tsv", FIXTURES / "sample-review.md"]:
        shutil.copyfile(path, data / path.name)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "NENQA_CHROMA_URL": chroma_settings.chroma_url,
        "NENQA_RATE_LIMIT_PER_MINUTE": "0",
        "NENQA_DATA_DIR": str(data),
        "NENQA_ADMIN_KEYS": "admin-secret",
        "NENQA_TRANSLATE_AT_INGEST": "false",
        "NENQA_LLM_BASE_URL": llm_url,
    }
    log_path = tmp_path_factory.mktemp("workers") / "serve.log"
    command = [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        # Ready means both workers have loaded: keep asking until two PIDs have answered.
        while len(workers) < 2:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "two ready workers not seen within 300 s"
            pid = _ready_worker(url)
            if pid is None:
                time.sleep(0.5)
            else:
                workers.add(pid)
        yield Workers(url, process, workers, log_path)
    finally:
        children = _child_pids(process.pid)
        stop_process(process, timeout_s=30)
        for pid in children:  # the server stops its workers; make sure
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def two_workers(chroma_settings, tmp_path_factory, scripted_llm):
    with serving_two_workers(chroma_settings, tmp_path_factory, scripted_llm.base_url) as workers:
        yield workers


def test_two_workers_answer_on_one_port_and_are_children_of_the_server(two_workers):
    url, ready_pids = two_workers.url, two_workers.pids
    assert ready_pids == _child_pids(two_workers.process.pid)
    # No thread ran in the parent when it forked (one would be missing in every worker).
    assert "threads running in the parent" not in two_workers.log_path.read_text()

    def ask(i: int) -> tuple[int, str, list[int]]:
        question = SPINET if i % 2 else "what did SPINET show for lanreotide in lung carcinoids?"
        response = httpx.post(
            f"{url}/v1/chat",
            json={"question": question},
            headers={"Connection": "close"},
            timeout=120,
        )
        body = response.json()
        return response.status_code, body.get("answer", ""), [c["ref"] for c in body["citations"]]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(32)))
        seen = set(pool.map(lambda _: _ready_worker(url), range(40)))
    assert [status for status, _, _ in results] == [200] * 32
    # Both workers give the same cited answer to the same question.
    assert len({answer for _, answer, _ in results[1::2]}) == 1
    assert all(7 in refs for _, _, refs in results)
    assert seen == ready_pids


def _on_worker(workers: set[int], pid: int, ask):
    """``ask()`` answered by worker ``pid``: the others are paused meanwhile, so only it accepts."""
    others = workers - {pid}
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        return ask()
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def test_each_forked_worker_answers_in_the_llm_mode(two_workers, scripted_llm):
    """The chat model was made before the fork: each worker reaches the LLM on its own."""
    scripted_llm.set_rules([{"when": "SPINET", "reply": "兰瑞肽组TTF为13.3个月{key:13.3个月}。"}])

    def ask() -> dict:
        response = httpx.post(
            f"{two_workers.url}/v1/chat",
            json={"question": SPINET, "mode": "llm"},
            headers={"Connection": "close"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        return response.json()

    for pid in two_workers.pids:
        body = _on_worker(two_workers.pids, pid, ask)
        assert body["mode"] == "llm"
        assert body["answer"].startswith("兰瑞肽组TTF为13.3个月[7]。"), body["answer"]


class TestTwoWorkersSpeakOpenAI:
    """test_api_completions.py's extractive tests against the two workers."""

    @pytest.fixture
    def client(self, two_workers):
        url = two_workers.url
        return openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0)

    test_a_completion_carries_the_answer_and_the_citations = staticmethod(
        completion_tests.test_a_completion_carries_the_answer_and_the_citations
    )
    test_a_stream_sends_whole_markers_and_citations_last = staticmethod(
        completion_tests.test_a_stream_sends_whole_markers_and_citations_last
    )
    test_conversation_history_is_used = staticmethod(
        completion_tests.test_conversation_history_is_used
    )


def _generations(url: str, asks: int = 24) -> dict[int, tuple[int, str, int]]:
    """(generation, fingerprint, chunks) by worker PID, from fresh connections."""
    seen = {}
    for _ in range(asks):
        body = httpx.get(f"{url}/readyz", timeout=5, headers={"Connection": "close"}).json()
        seen[body["worker_pid"]] = (body["generation"], body["fingerprint"], body["chunks"])
    return seen


def _until_every_worker_serves(url: str, workers: set[int], generation: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = _generations(url)
        if set(seen) == workers and {g for g, _, _ in seen.values()} == {generation}:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"not every worker serves generation {generation}: {seen}")


def test_a_change_through_one_worker_or_the_cli_reaches_every_worker(
    two_workers, chroma_settings, monkeypatch
):
    """Admin API on whichever worker answers, then `nenqa docs remove` from another process:
    both workers serve each new generation, the same chunks, without a restart."""
    from typer.testing import CliRunner

    from cli.main import app
    from nenqa.settings import get_settings

    url, workers = two_workers.url, two_workers.pids
    current = next(iter(_generations(url).values()))[0]
    before = _until_every_worker_serves(url, workers, current)
    start, fingerprint, chunks = next(iter(before.values()))
    added = httpx.post(
        f"{url}/admin/documents",
        json={"paths": ["sample-review.md"]},
        headers={"X-Admin-Key": "admin-secret"},
        timeout=300,
    )
    assert added.status_code == 200, added.text
    seen = _until_every_worker_serves(url, workers, start + 1)
    assert {c for _, _, c in seen.values()} == {chunks + 8}
    assert len({f for _, f, _ in seen.values()}) == 1

    monkeypatch.setenv("NENQA_CHROMA_URL", chroma_settings.chroma_url)
    monkeypatch.setenv("NENQA_INDEX_DIR", str(chroma_settings.index_dir))
    get_settings.cache_clear()
    try:
        removed = CliRunner().invoke(app, ["docs", "remove", "sample-review"])
    finally:
        get_settings.cache_clear()
    assert removed.exit_code == 0, removed.output
    seen = _until_every_worker_serves(url, workers, start + 2)
    # The corpus is as before: the same chunks, so the same fingerprint.
    assert set(seen.values()) == {(start + 2, fingerprint, chunks)}


def test_workers_that_cannot_load_the_service_end_the_server_with_the_reason(chroma_settings):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "NENQA_CHROMA_URL": chroma_settings.chroma_url,
        "NENQA_COLLECTION": "never-ingested",
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(free_port())],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "cannot load the service" in message and "run `nenqa ingest` first" in message
    assert "Traceback" not in message


def test_two_workers_without_a_chroma_server_are_refused_with_the_way_out():
    env = {k: v for k, v in os.environ.items() if k != "NENQA_CHROMA_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "--workers 2 needs a Chroma server" in message
    assert "NENQA_CHROMA_URL" in message and "chroma run" in message


def test_workers_stop_when_the_server_process_is_killed(
    chroma_settings, tmp_path_factory, scripted_llm
):
    """An orphaned worker would keep the port, and a restarted `nenqa serve` would fail on it."""
    with serving_two_workers(chroma_settings, tmp_path_factory, scripted_llm.base_url) as workers:
        os.kill(workers.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while alive := [pid for pid in workers.pids if _running(pid)]:
            assert time.monotonic() < deadline, f"workers {alive} outlived the server process"
            time.sleep(0.2)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{workers.url}/healthz", timeout=5)


FORKED_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    import torch
    from nenqa.settings import Settings
    from nenqa.types import Question
    from server.prefork import load_for_workers, prepare_worker

    settings = Settings(
        chroma_url=sys.argv[1], index_dir=sys.argv[2], embedding_model=None, torch_threads=2
    )
    service = load_for_workers(settings)
    texts = [sys.argv[3] * 4] * 48
    # The parent embeds, as it does a new generation's sentences while loading.
    parent = service.searcher.embedder.embed_passages(texts)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        prepare_worker(service)
        vectors = service.searcher.embedder.embed_passages(texts)
        answer = service.answerer("extractive").answer(Question(sys.argv[3]))
        result = {
            "threads": torch.get_num_threads(),
            "difference": float(abs(vectors - parent).max()),
            "refs": [c.ref for c in answer.citations],
        }
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    deadline = time.monotonic() + 120
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            sys.exit("the forked worker hung")
        time.sleep(0.2)
    print(os.read(read, 65536).decode())
    """
)


def test_a_forked_worker_runs_the_model_on_its_own_threads_after_the_parent_used_it(
    chroma_settings,
):
    """torch's thread pool does not survive a fork: a worker whose parent embedded on two
    threads hangs at its first inference. ``load_for_workers`` loads on one thread, and the
    worker then embeds on the two it is configured for, and answers through its own
    connection to the Chroma server."""
    result = subprocess.run(
        [sys.executable, "-c", FORKED_WORKER, chroma_settings.chroma_url,
         str(chroma_settings.index_dir), SPINET],
        cwd=PROJECT_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    worker = json.loads(result.stdout.strip().splitlines()[-1])
    assert worker["threads"] == min(2, len(os.sched_getaffinity(0)))
    assert worker["difference"] < 1e-4
    assert 7 in worker["refs"]


# These three end the module's two workers: one is killed, then the server is stopped.


def _memory_mib(pid: int) -> dict[str, float]:
    """A process's private (USS), proportional and resident memory in MiB."""
    kib = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split()[:2]
        kib[name.rstrip(":")] = int(value)
    private = kib["Private_Clean"] + kib["Private_Dirty"]
    return {"uss": private / 1024, "pss": kib["Pss"] / 1024, "rss": kib["Rss"] / 1024}


def test_the_workers_share_what_the_server_loaded_before_forking_them(two_workers):
    """After answering, each worker's own memory is a small part of the model, index and
    sentences the server process loaded once (spawned workers held all of it privately)."""
    loaded = _memory_mib(two_workers.process.pid)["rss"]
    for pid in two_workers.pids:
        assert _memory_mib(pid)["uss"] < loaded / 3, (_memory_mib(pid), loaded)


def test_a_worker_that_dies_is_reported_and_replaced_by_one_that_serves(two_workers):
    url, supervisor = two_workers.url, two_workers.process.pid
    generation = next(iter(_generations(url).values()))[0]
    victim = min(two_workers.pids)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while victim in (children := _child_pids(supervisor)) or len(children) != 2:
        assert time.monotonic() < deadline, f"no worker replaced {victim}: {children}"
        time.sleep(0.2)
    two_workers.pids.discard(victim)
    two_workers.pids.update(children)
    assert len(two_workers.pids) == 2
    # The new worker is forked from the loaded service and catches up with the generation.
    _until_every_worker_serves(url, two_workers.pids, generation)
    assert f"worker {victim} was killed by SIGKILL" in two_workers.log_path.read_text()


def test_sigterm_stops_the_server_and_every_worker(two_workers):
    workers = _child_pids(two_workers.process.pid)
    assert len(workers) == 2
    two_workers.process.send_signal(signal.SIGTERM)
    assert two_workers.process.wait(timeout=60) == 0
    assert not [pid for pid in workers if _running(pid)]
