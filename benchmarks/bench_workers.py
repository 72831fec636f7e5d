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
  questions, p50/p95 with the query embedding excluded (``timings_ms`` total minus embed).

Results are merged by ``--label`` into ``--out`` and every label there is printed as a table.

    .venv/bin/python benchmarks/bench_workers.py --chroma-path COPY --collection scale \\
        --label "100k forked" --search
    .venv/bin/python benchmarks/bench_workers.py --chroma-path COPY --collection scale \\
        --label "100k spawned" --checkout /tmp/before
    .venv/bin/python benchmarks/bench_workers.py --chroma-path /tmp/empty --ingest \\
        --label "default forked"
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "依维莫司治疗胰腺神经内分泌肿瘤的无进展生存期是多少？"
READY_TIMEOUT_S = 900.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mib(pid: int) -> dict[str, float]:
    """USS (private pages), PSS and RSS of ``pid`` in MiB."""
    kib = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split()[:2]
        kib[name.rstrip(":")] = int(value)
    return {
        "uss": round((kib["Private_Clean"] + kib["Private_Dirty"]) / 1024, 1),
        "pss": round(kib["Pss"] / 1024, 1),
        "rss": round(kib["Rss"] / 1024, 1),
    }


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
    chroma = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(args.chroma_path)]
    chroma += ["--host", "127.0.0.1", "--port", str(chroma_port)]
    source = args.checkout or ROOT
    # The cores are shared: the load average says how much else ran (before, after).
    result: dict = {"load_average": [round(os.getloadavg()[0], 2)]}
    with running(chroma, tmp / "chroma.log") as chroma_process:
        chroma_up(chroma_url, chroma_process, tmp / "chroma.log")
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
            for round_ in range(2):
                for question in questions:
                    timings = searcher.retrieve(question, 5).timings_ms
                    if round_:
                        searched.append(timings["total"] - timings["embed"])
                        dense.append(timings["dense"])
            result = {
                "search_questions": len(questions),
                "search_p50_ms": round(statistics.median(searched), 2),
                "search_p95_ms": round(float(np.percentile(searched, 95)), 2),
                "dense_p50_ms": round(statistics.median(dense), 2),
                "dense_p95_ms": round(float(np.percentile(dense, 95)), 2),
                "searcher_worker_mib": memory_mib(os.getpid()),
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


def tables(results: dict[str, dict]) -> str:
    """The workers of every run that served, then the search of every run that searched."""
    rows = [
        "| run | ready s | first answer s | worker USS MiB: ready / answered / after more "
        "| worker PSS / RSS MiB | server process RSS MiB | all processes' PSS MiB |",
        "|---|---:|---|---|---|---:|---:|",
    ]
    for label, r in results.items():
        if "workers" not in r:
            continue
        stages = zip(
            r["worker_ready_mib"],
            r["worker_answered_mib"],
            r["worker_after_questions_mib"],
            strict=True,
        )
        uss = " · ".join(
            f"{a['uss']:,.0f} / {b['uss']:,.0f} / {c['uss']:,.0f}" for a, b, c in stages
        )
        shared = " · ".join(
            f"{m['pss']:,.0f} / {m['rss']:,.0f}" for m in r["worker_after_questions_mib"]
        )
        answers = " · ".join(str(s) for s in r["first_answer_s"])
        rows.append(
            f"| {label} | {r['all_ready_s']} | {answers} | {uss} | {shared} "
            f"| {r['server_process_mib']['rss']:,.0f} | {r['server_total_pss_mib']:,.0f} |"
        )
    rows += [
        "",
        "| run | search p50 / p95 ms | of which dense p50 / p95 ms | searcher load s "
        "| forked searcher USS / RSS MiB | Chroma server RSS MiB | load average |",
        "|---|---|---|---:|---|---:|---|",
    ]
    for label, r in results.items():
        if "search_p50_ms" not in r:
            continue
        worker = r["searcher_worker_mib"]
        rows.append(
            f"| {label} | {r['search_p50_ms']} / {r['search_p95_ms']} "
            f"| {r.get('dense_p50_ms', '—')} / {r.get('dense_p95_ms', '—')} "
            f"| {r['searcher_load_s']} | {worker['uss']:,.0f} / {worker['rss']:,.0f} "
            f"| {r['chroma_server_mib']['rss']:,.0f} "
            f"| {' → '.join(map(str, r.get('load_average', [])))} |"
        )
    return "\n".join(rows)


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
