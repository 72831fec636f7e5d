"""Benchmark: ``POST /v1/chat`` (extractive) latency with 1 and 8 clients, and answer quality.

Starts ``nenqa serve`` as its own process on a free loopback port over the configured index
(``NENQA_INDEX_DIR``; run ``nenqa ingest`` first), rate limit off, and asks the eval questions
with httpx (async). The single-client pass asks every question once, in order, and its answers
are also scored (key facts, gold references, abstentions; ``eval.quality``). The
concurrent pass runs 8 clients over the questions until ``--requests`` answers or ``--seconds``;
the clients share one pass through the questions, so a question comes back only after 133
requests, when the server's 64-entry query-vector cache has forgotten it: every request is
embedded. Latency is client-side wall time per request. Prints a table, writes JSON.

    .venv/bin/python benchmarks/bench_chat.py [--clients 8] [--requests 400] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eval.quality import (  # noqa: E402
    EvalQuestion,
    QualityReport,
    load_eval_questions,
    score_answers,
)
from nenqa.types import Answer, Citation, PassageCitation, Question, Quote  # noqa: E402

TARGETS = {"p50_single_ms": 100.0, "p95_concurrent_ms": 300.0}
WARM_UP = [
    EvalQuestion(f"w{i}", "zh", "warm_up", text, (), (), (), True)
    for i, text in enumerate(["依维莫司的作用机制是什么？", "What is PRRT?", "索凡替尼的靶点"])
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "NENQA_RATE_LIMIT_PER_MINUTE": "0",
        "NENQA_ANSWER_MODE": "extractive",
    }
    log = log_path.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 300) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise SystemExit("nenqa serve exited; see benchmarks/out/bench_chat_server.log")
        try:
            response = httpx.get(f"{url}/readyz", timeout=2)
            if response.status_code == 200:
                return time.perf_counter() - started
            if response.json().get("status") == "failed":
                raise SystemExit(f"nenqa serve failed to load: {response.json()['detail']}")
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"nenqa serve was not ready within {timeout_s} s")


def request_body(item: EvalQuestion) -> dict:
    return {
        "question": item.question,
        "history": [{"role": t.role, "content": t.content} for t in item.history],
    }


def answer_from_json(body: dict) -> Answer:
    """The ``Answer`` a ``/v1/chat`` response describes (what quality scoring reads)."""

    def quotes(items: list[dict]) -> tuple[Quote, ...]:
        return tuple(Quote(q["chunk_id"], q["text"], q["section"]) for q in items)

    return Answer(
        text=body["answer"],
        abstained=body["abstained"],
        mode=body["mode"],
        language=body["language"],
        citations=tuple(
            Citation(c["ref"], c["reference"], quotes(c["quotes"])) for c in body["citations"]
        ),
        passages=tuple(
            PassageCitation(p["section"], quotes(p["quotes"])) for p in body["passages"]
        ),
    )


async def single_client(url: str, items: list[EvalQuestion]) -> tuple[list[float], dict, int]:
    """Every question once, in order: latencies, answers by question id, errors."""
    latencies, answers, errors = [], {}, 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for item in items:
            started = time.perf_counter()
            response = await client.post("/v1/chat", json=request_body(item))
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code == 200:
                answers[item.id] = response.json()
            else:
                errors += 1
    return latencies, answers, errors


async def concurrent_clients(
    url: str, items: list[EvalQuestion], clients: int, requests: int, seconds: float
) -> tuple[list[float], int, float]:
    """``clients`` loops over the questions until ``requests`` answers or ``seconds`` pass."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def run(client: httpx.AsyncClient) -> None:
        nonlocal errors, counter
        while counter < requests and time.perf_counter() < deadline:
            # One shared sequence: a question comes back every len(items) requests, after
            # the server's 64-entry query cache has forgotten it.
            item = items[counter % len(items)]
            counter += 1
            started = time.perf_counter()
            response = await client.post("/v1/chat", json=request_body(item))
            latencies.append((time.perf_counter() - started) * 1000)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(run(client) for _ in range(clients)))
    return latencies, errors, time.perf_counter() - started


def summarize(latencies: list[float], errors: int, seconds: float | None = None) -> dict:
    result = {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
    }
    if seconds:
        result["throughput_rps"] = round(len(latencies) / seconds, 2)
    return result


def quality_of(items: list[EvalQuestion], answers: dict) -> QualityReport:
    by_key = {(i.question, i.history): i.id for i in items}

    def answer(question: Question) -> Answer:
        body = answers.get(by_key[(question.text, question.history)])
        if body is None:  # a failed request counts as an answer with nothing in it
            return Answer(text="", abstained=False, mode="extractive", language="en")
        return answer_from_json(body)

    return score_answers(items, answer)


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="/v1/chat extractive latency (client wall time)")
    for column in ("clients", "requests", "errors", "p50 ms", "p95 ms", "max ms", "req/s"):
        table.add_column(column, justify="right")
    for name in ("single", "concurrent"):
        row = report[name]
        table.add_row(
            str(row["clients"]),
            str(row["requests"]),
            str(row["errors"]),
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['max_ms']:.1f}",
            str(row.get("throughput_rps", "")),
        )
    console = Console()
    console.print(table)
    quality = report["quality"]
    quality_table = Table(title="extractive answer quality on eval/qa.jsonl")
    for column in ("measure", "value", "target"):
        quality_table.add_column(column)
    quality_table.add_row(
        "answerable with all key facts",
        f"{quality['with_all_facts']}/{quality['answerable']} = {quality['fact_rate']:.3f}",
        ">= 0.85",
    )
    cited, with_refs = quality["citing_gold_ref"], quality["with_gold_refs"]
    quality_table.add_row(
        "citing a gold reference",
        f"{cited}/{with_refs} = {quality['gold_ref_rate']:.3f}",
        ">= 0.90",
    )
    quality_table.add_row(
        "out-of-scope abstained",
        f"{quality['out_of_scope_abstained']}/{quality['out_of_scope']}",
        "all",
    )
    console.print(quality_table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qa", type=Path, default=ROOT / "eval" / "qa.jsonl")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400, help="concurrent pass, at most")
    parser.add_argument("--seconds", type=float, default=60, help="concurrent pass, at most")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()

    items = load_eval_questions(args.qa)
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(port, args.out / "bench_chat_server.log")
    try:
        ready_s = wait_ready(url, process)
        # Warm-up with questions outside the set: the first requests pay for lazy
        # initialisation (jieba, torch kernels), and no eval question is cached before it runs.
        asyncio.run(single_client(url, WARM_UP))
        latencies, answers, errors = asyncio.run(single_client(url, items))
        single = {"clients": 1, **summarize(latencies, errors)}
        c_latencies, c_errors, seconds = asyncio.run(
            concurrent_clients(url, items, args.clients, args.requests, args.seconds)
        )
        concurrent = {"clients": args.clients, **summarize(c_latencies, c_errors, seconds)}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    quality = quality_of(items, answers)
    report = {
        "command": "python benchmarks/bench_chat.py " + " ".join(sys.argv[1:]),
        "machine": {
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(),
        },
        "server_ready_s": round(ready_s, 1),
        "single": single,
        "concurrent": concurrent,
        "targets": TARGETS,
        "meets_targets": {
            "p50_single": single["p50_ms"] <= TARGETS["p50_single_ms"],
            "p95_concurrent": concurrent["p95_ms"] <= TARGETS["p95_concurrent_ms"],
            "no_errors": single["errors"] == 0 and concurrent["errors"] == 0,
        },
        "quality": quality.summary(),
        "quality_misses": quality.misses,
    }
    print_table(report)
    path = args.out / "bench_chat.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
