"""What each worker of ``nenqa serve --workers N`` costs, over a Chroma server (``chroma run``).

Starts ``chroma run`` over a folder (a copy of an embedded index folder serves as it is; with
``--ingest``, an empty folder gets the default corpus through ``nenqa ingest``), then ``nenqa
serve --workers N`` from a source tree (this one, or ``--checkout`` for the code before), and
measures:

- start-up: seconds from starting ``nenqa serve`` until every worker answers ``/readyz``;
- each worker's first answer (``POST /v1/chat``): the other workers are paused (SIGSTOP)
  meanwhile, so the worker measured is the one that accepts the connection;
- each worker's memory from ``/proc/PID/smaps_rollup``: USS (Private_Clean + Private_Dirty,
  what one more worker adds), PSS and RSS, once ready, after its first answer, and after
  ``--questions`` more eval questions through the port; the server process's too;
- with ``--search``, hybrid search through the Chroma server in this process over the eval
  questions, p50/p95 with the query embedding excluded (``timings_ms`` total minus embed);
- with ``--admin-change DOCUMENT``, ``--change-cycles`` times: the document added through
  ``POST /admin/documents`` and removed through ``DELETE /admin/documents/{id}`` (on whichever
  worker accepts), each change timed (the request; its publication, seen in the Chroma
  collection's metadata; each worker's first ``/readyz`` on the new generation, from fresh
  connections), with each worker's memory once every worker serves it and after one more
  answer each. The index changes: run it on a copy.

An index ``bench_scale.py`` wrote is under its synthetic model ID: ``--real-model-id`` tells
its collection the real model's (generation and fingerprint kept), as the saved sentences are.

Results are merged by ``--label`` into ``--out`` and every label there is printed as a table.

    .venv/bin/python benchmarks/bench_workers.py --chroma-path COPY --collection scale \\
        --label "100k forked" --search
    .venv/bin/python benchmarks/bench_workers.py --chroma-path COPY --collection scale \\
        --label "100k spawned" --checkout /tmp/before
    .venv/bin/python benchmarks/bench_workers.py --chroma-path /tmp/empty --ingest \\
        --label "default forked"
    .venv/bin/python benchmarks/bench_workers.py --chroma-path COPY --collection scale \\
        --real-model-id --admin-change tests/fixtures/sample-review.md --label "100k admin"
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.workers_tables import tables  # noqa: E402

QUESTION = "依维莫司治疗胰腺神经内分泌肿瘤的无进展生存期是多少？"
READY_TIMEOUT_S = 900.0
ADMIN_KEY = "bench-admin"
CHANGE_TIMEOUT_S = 900.0  # a change that is built in full takes minutes at 100k
PUBLICATION_POLL_S = 0.1  # the Chroma collection's metadata, while the request runs
SERVED_POLL_S = 0.05  # /readyz on fresh connections, once the change is published


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mib(pid: int) -> dict[str, float]:
    """USS (private pages), PSS and RSS of ``pid`` in MiB, and what USS is made of: private
    clean pages (file pages only this process has read, such as memory-mapped tables: the page
    cache's, dropped under pressure, shared once another process reads them), private dirty
    ones (written: its own heap and copied-on-write pages), and all its anonymous memory."""
    kib = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split()[:2]
        kib[name.rstrip(":")] = int(value)
    return {
        "uss": round((kib["Private_Clean"] + kib["Private_Dirty"]) / 1024, 1),
        "pss": round(kib["Pss"] / 1024, 1),
        "rss": round(kib["Rss"] / 1024, 1),
        "private_clean": round(kib["Private_Clean"] / 1024, 1),
        "private_dirty": round(kib["Private_Dirty"] / 1024, 1),
        "anonymous": round(kib["Anonymous"] / 1024, 1),
    }


def deleted_mappings(pid: int) -> dict[str, float]:
    """Files ``pid`` still maps that were deleted (an old generation's tables, say): how many
    and their resident MiB. A worker that kept every old generation's service would show more
    with every change (a server keeps the two newest generations' folders on disk)."""
    files, kib, current = set(), 0, None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            current = " ".join(fields[5:]) if line.endswith("(deleted)") else None
            if current:
                files.add(current)
        elif current and fields[0] == "Rss:":
            kib += int(fields[1])
    return {"files": len(files), "rss_mib": round(kib / 1024, 1)}


def private_by_mapping(pid: int, top: int = 8) -> list[tuple[str, float, float]]:
    """Where ``pid``'s private pages are: (file, or ``[anonymous]`` for heap and anonymous
    mappings; private clean MiB; private dirty MiB), the ``top`` largest."""
    sizes: dict[str, list[float]] = {}
    current = "[anonymous]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            path = " ".join(fields[5:])
            current = path if path.startswith("/") else "[anonymous]"
        elif fields[0] in ("Private_Clean:", "Private_Dirty:"):
            kind = 0 if fields[0] == "Private_Clean:" else 1
            sizes.setdefault(current, [0.0, 0.0])[kind] += int(fields[1]) / 1024
    largest = sorted(sizes.items(), key=lambda item: -sum(item[1]))[:top]
    return [(name, round(clean, 1), round(dirty, 1)) for name, (clean, dirty) in largest]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


@contextlib.contextmanager
def running(command: list[str], log: Path, **options) -> Iterator[subprocess.Popen]:
    """``command`` as a child process (output to ``log``), stopped by its PID afterwards."""
    with log.open("ab") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, **options)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def chroma_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chroma run exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError("chroma run did not answer within 120 s")


def ready_workers(url: str, server: subprocess.Popen, count: int, log: Path) -> set[int]:
    """Ask ``/readyz`` on fresh connections until ``count`` workers have answered 200."""
    ready: set[int] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(ready) < count:
        if server.poll() is not None:
            raise RuntimeError(f"nenqa serve exited: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ready)} of {count} workers ready")
        try:
            response = httpx.get(f"{url}/readyz", timeout=5, headers={"Connection": "close"})
        except httpx.TransportError:
            time.sleep(0.5)
            continue
        if response.status_code == 200:
            ready.add(response.json()["worker_pid"])
        else:
            time.sleep(0.5)
    return ready


def ask(url: str, question: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = httpx.post(
        f"{url}/v1/chat",
        json={"question": question},
        headers={"Connection": "close"},
        timeout=600,
    )
    response.raise_for_status()
    return time.perf_counter() - started, response.json()


def first_answers(url: str, workers: set[int]) -> dict[int, float]:
    """Each worker's first answer, the others paused so that it is the one answering."""
    seconds = {}
    for pid in sorted(workers):
        others = workers - {pid}
        for other in others:
            os.kill(other, signal.SIGSTOP)
        try:
            seconds[pid], body = ask(url, QUESTION)
        finally:
            for other in others:
                os.kill(other, signal.SIGCONT)
        if body.get("abstained") is None:
            raise RuntimeError(f"not an answer: {body}")
    return seconds


def eval_questions() -> list[str]:
    from eval.qa_schema import load_qa

    return [item.question for item in load_qa(ROOT / "eval" / "qa.jsonl")]


def measure(args: argparse.Namespace, tmp: Path) -> dict:
    """Start ``chroma run`` over ``args.chroma_path``; measure the workers and/or search."""
    chroma_port = free_port()
    chroma_url = f"http://127.0.0.1:{chroma_port}"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "NENQA_CHROMA_URL": chroma_url,
        "NENQA_INDEX_DIR": str(args.index_dir or args.chroma_path),
        "NENQA_COLLECTION": args.collection,
        "NENQA_RATE_LIMIT_PER_MINUTE": "0",
        "NENQA_TRANSLATE_AT_INGEST": "false",
    }
    env.pop("NENQA_LLM_BASE_URL", None)
    if args.admin_change:
        env |= {"NENQA_ADMIN_KEYS": ADMIN_KEY, "NENQA_DATA_DIR": str(data_folder(args, tmp))}
    chroma = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(args.chroma_path)]
    chroma += ["--host", "127.0.0.1", "--port", str(chroma_port)]
    source = args.checkout or ROOT
    # The cores are shared: the load average says how much else ran (before, after).
    result: dict = {"load_average": [round(os.getloadavg()[0], 2)]}
    with running(chroma, tmp / "chroma.log") as chroma_process:
        chroma_up(chroma_url, chroma_process, tmp / "chroma.log")
        if args.real_model_id:
            tell_real_model_id(chroma_url, args.collection)
        if args.ingest:
            ingest = [sys.executable, "-m", "cli.main", "ingest", "-q"]
            subprocess.run(ingest, cwd=source, env=env, check=True)
        if not args.search_only:
            result |= measure_workers(args, env, source, tmp)
        if args.search or args.search_only:
            result |= search_in_forked_worker(env)
        result["chroma_server_mib"] = memory_mib(chroma_process.pid)
    result["load_average"].append(round(os.getloadavg()[0], 2))
    return result


def measure_workers(args: argparse.Namespace, env: dict, source: Path, tmp: Path) -> dict:
    """``nenqa serve --workers N`` from ``source``: start-up, first answers, memory."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "cli.main", "serve", "--workers", str(args.workers)]
    serve += ["--port", str(port), "--log-level", "warning"]
    log = tmp / "serve.log"
    started = time.perf_counter()
    with running(serve, log, cwd=source, env=env) as server:
        workers = ready_workers(url, server, args.workers, log)
        ready_s = time.perf_counter() - started
        if not workers <= children(server.pid):  # (spawning adds a resource tracker)
            raise RuntimeError(f"workers {workers} are not {server.pid}'s children")
        ready = {pid: memory_mib(pid) for pid in workers}
        answers = first_answers(url, workers)
        answered = {pid: memory_mib(pid) for pid in workers}
        for question in eval_questions()[: args.questions]:
            ask(url, question)
        later = {pid: memory_mib(pid) for pid in workers}
        changes = []
        if args.admin_change:
            chroma_url = env["NENQA_CHROMA_URL"]
            changes = admin_changes(url, chroma_url, args, workers)
        parent = memory_mib(server.pid)
        # What the whole server holds: PSS counts each shared page once over the processes.
        total_pss = sum(memory_mib(pid)["pss"] for pid in children(server.pid) | {server.pid})
    return {
        "workers": args.workers,
        "all_ready_s": round(ready_s, 1),
        "first_answer_s": [round(answers[p], 2) for p in sorted(workers)],
        "worker_ready_mib": [ready[p] for p in sorted(workers)],
        "worker_answered_mib": [answered[p] for p in sorted(workers)],
        "worker_after_questions_mib": [later[p] for p in sorted(workers)],
        "questions_after": args.questions,
        "server_process_mib": parent,
        "server_total_pss_mib": round(total_pss, 1),
    } | ({"changes": changes} if changes else {})


def data_folder(args: argparse.Namespace, tmp: Path) -> Path:
    """The server's data folder: the bundled data (review, trials, glossary) and the document
    the admin API adds (it reads only files inside its data folder)."""
    folder = tmp / "data"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "data", folder)
    shutil.copyfile(args.admin_change, folder / args.admin_change.name)
    return folder


def tell_real_model_id(chroma_url: str, collection: str) -> None:
    """Give the collection the real model's ID (``bench_scale.py`` writes its index under a
    synthetic one; the saved sentences are the real model's), its generation kept."""
    import chromadb

    from retriever.embeddings import DEFAULT_MODEL_ID

    host, port = chroma_url.rsplit("//", 1)[1].split(":")
    found = chromadb.HttpClient(host=host, port=int(port)).get_collection(collection)
    if (found.metadata or {}).get("embedding_model") != DEFAULT_MODEL_ID:
        found.modify(metadata={**(found.metadata or {}), "embedding_model": DEFAULT_MODEL_ID})


def published_generation(chroma_url: str, collection: str) -> int:
    """The generation published in the collection's metadata, read from the Chroma server."""
    path = f"/api/v2/tenants/default_tenant/databases/default_database/collections/{collection}"
    response = httpx.get(f"{chroma_url}{path}", timeout=5)
    response.raise_for_status()
    return int((response.json().get("metadata") or {}).get("generation", 0))


def served_generation(url: str) -> tuple[int, int] | None:
    """(worker PID, generation it serves) from ``/readyz`` on a fresh connection."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=5, headers={"Connection": "close"})
    except httpx.TransportError:
        return None
    body = response.json()
    return (body["worker_pid"], body["generation"]) if response.status_code == 200 else None


def admin_changes(url: str, chroma_url: str, args: argparse.Namespace, workers: set[int]) -> list:
    """``args.change_cycles`` times: add ``args.admin_change`` through the admin API, then
    remove it; each change timed and each worker's memory read (``timed_change``)."""
    headers = {"X-Admin-Key": ADMIN_KEY, "Connection": "close"}
    changes = []
    for _ in range(args.change_cycles):

        def add() -> httpx.Response:
            body = {"paths": [args.admin_change.name]}
            return httpx.post(f"{url}/admin/documents", json=body, headers=headers, timeout=900)

        added = timed_change("add", add, url, chroma_url, args.collection, workers)
        doc_id = added["response"]["changes"][0]["doc_id"]

        def remove(doc_id: str = doc_id) -> httpx.Response:
            return httpx.delete(f"{url}/admin/documents/{doc_id}", headers=headers, timeout=900)

        removed = timed_change("remove", remove, url, chroma_url, args.collection, workers)
        changes += [added, removed]
    return changes


def timed_change(
    action: str, send, url: str, chroma_url: str, collection: str, workers: set[int]
) -> dict:
    """Send one admin change (``send``) and time it, on this machine's clock:

    - ``request_s``: the request's own duration (the writer's work, publication, and the
      answering worker's swap to the new generation);
    - ``published_s``: when the collection's metadata showed the new generation (polled every
      ``PUBLICATION_POLL_S``), from the request's start;
    - per worker, when ``/readyz`` (fresh connections, every ``SERVED_POLL_S`` once published)
      first reported the new generation: ``served_after_publication_s`` and
      ``served_after_response_s`` (negative: it served it before the request returned), and
      ``last_old_after_publication_s``, when it last reported the old one (the served time lies
      between the two);
    - which worker did the writer's work: the one whose CPU time grew most during the request.

    Then each worker's memory once every worker serves it, and after one more answer each."""
    before_generation = published_generation(chroma_url, collection)
    cpu_before = {pid: cpu_seconds(pid) for pid in workers}
    outcome: dict = {}

    def request() -> None:
        try:
            outcome["response"] = send()
        finally:
            outcome["returned"] = time.monotonic()

    sent = time.monotonic()
    thread = threading.Thread(target=request, name=f"admin-{action}")
    thread.start()
    published = None
    new_generation = before_generation + 1
    first_new: dict[int, float] = {}
    last_old: dict[int, float] = {}
    while thread.is_alive() or set(first_new) != workers:
        if time.monotonic() - sent > CHANGE_TIMEOUT_S:
            raise RuntimeError(f"{action}: not every worker served it: {first_new}")
        if published is None:
            if published_generation(chroma_url, collection) > before_generation:
                published = time.monotonic()
            elif not thread.is_alive():
                thread.join()
                response = outcome.get("response")
                raise RuntimeError(f"{action} published nothing: {response and response.text}")
            else:
                time.sleep(PUBLICATION_POLL_S)
                continue
        seen = served_generation(url)
        if seen is not None:
            pid, generation = seen
            if generation >= new_generation:
                first_new.setdefault(pid, time.monotonic())
            elif pid not in first_new:
                last_old[pid] = time.monotonic()
        time.sleep(SERVED_POLL_S)
    thread.join()
    response = outcome["response"]
    response.raise_for_status()
    cpu = {pid: round(cpu_seconds(pid) - cpu_before[pid], 2) for pid in workers}
    served_memory = {pid: memory_mib(pid) for pid in workers}
    first_answers(url, workers)
    answered_memory = {pid: memory_mib(pid) for pid in workers}
    deleted = {pid: deleted_mappings(pid) for pid in workers}
    returned = outcome["returned"]
    order = sorted(workers)
    return {
        "action": action,
        "generation": new_generation,
        "response": response.json(),
        "request_s": round(returned - sent, 2),
        "published_s": round(published - sent, 2),
        "writer_pid": max(cpu, key=cpu.get),
        "worker_pids": order,
        "worker_cpu_s": [cpu[p] for p in order],
        "served_after_publication_s": [round(first_new[p] - published, 2) for p in order],
        "served_after_response_s": [round(first_new[p] - returned, 2) for p in order],
        "last_old_after_publication_s": [
            round(last_old[p] - published, 2) if p in last_old else None for p in order
        ],
        "worker_served_mib": [served_memory[p] for p in order],
        "worker_answered_mib": [answered_memory[p] for p in order],
        "worker_deleted_mappings": [deleted[p] for p in order],
    }


def search_in_forked_worker(env: dict[str, str]) -> dict:
    """Hybrid search through the Chroma server, query embedding excluded, in a process forked
    (as a server's workers are) from this one after it loaded the searcher; with that
    process's own memory after the eval questions twice (the first round warms up)."""
    from nenqa.settings import Settings
    from nenqa.types import Question
    from retriever.embeddings import set_torch_threads
    from retriever.search import load_searcher
    from server.prefork import own_connection

    settings = Settings(
        chroma_url=env["NENQA_CHROMA_URL"],
        index_dir=Path(env["NENQA_INDEX_DIR"]),
        collection=env["NENQA_COLLECTION"],
        torch_threads=1,
    )
    started = time.perf_counter()
    searcher = load_searcher(settings)
    load_s = time.perf_counter() - started
    questions = [Question(q) for q in eval_questions()]
    loaded = memory_mib(os.getpid())
    gc.freeze()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            set_torch_threads(1)
            own_connection(searcher)
            searched, dense = [], []  # dense: up to the Chroma server's answer, read
            forked = memory_mib(os.getpid())
            growth = []  # (USS growth MiB, question) in the first round
            for round_ in range(2):
                for number, question in enumerate(questions):
                    before = memory_mib(os.getpid())["uss"] if not round_ else 0.0
                    timings = searcher.retrieve(question, 5).timings_ms
                    if round_:
                        searched.append(timings["total"] - timings["embed"])
                        dense.append(timings["dense"])
                    else:
                        grown = memory_mib(os.getpid())["uss"] - before
                        growth.append((round(grown, 1), number, question.text))
                if not round_:
                    first_round = memory_mib(os.getpid())
            result = {
                "search_questions": len(questions),
                "search_p50_ms": round(statistics.median(searched), 2),
                "search_p95_ms": round(float(np.percentile(searched, 95)), 2),
                "dense_p50_ms": round(statistics.median(dense), 2),
                "dense_p95_ms": round(float(np.percentile(dense, 95)), 2),
                "searcher_worker_mib": memory_mib(os.getpid()),
                "searcher_forked_mib": forked,
                "searcher_first_round_mib": first_round,
                "searcher_grew_most": sorted(growth, reverse=True)[:8],
                "searcher_private_by_mapping": private_by_mapping(os.getpid()),
                "chunks": len(searcher),
            }
            os.write(write, json.dumps(result).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        measured = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    if not measured:
        raise RuntimeError("the forked search worker failed")
    return measured | {"searcher_load_s": round(load_s, 1), "searcher_parent_mib": loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chroma-path", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, help="NENQA_INDEX_DIR (default: chroma-path)")
    parser.add_argument("--collection", default="nenqa")
    parser.add_argument("--ingest", action="store_true", help="nenqa ingest into it first")
    parser.add_argument("--checkout", type=Path, help="run nenqa serve from this source tree")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--questions", type=int, default=20, help="eval questions after")
    parser.add_argument("--search", action="store_true", help="also time search (forked)")
    parser.add_argument(
        "--search-only", action="store_true", help="only search: no nenqa serve (no service)"
    )
    parser.add_argument(
        "--admin-change", type=Path, help="add and remove this document through the admin API"
    )
    parser.add_argument("--change-cycles", type=int, default=2, help="adds and removes")
    parser.add_argument(
        "--real-model-id", action="store_true", help="tell the collection the real model's ID"
    )
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "workers.json")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/bench_workers"))
    args = parser.parse_args()
    args.tmp.mkdir(parents=True, exist_ok=True)
    result = measure(args, args.tmp)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.label] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps(result, ensure_ascii=False))
    print(tables(results))


if __name__ == "__main__":
    main()
