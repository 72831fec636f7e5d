"""Load test: concurrent clients for a fixed time, mixing ``/v1/chat`` and streamed completions.

Every client is an async httpx loop with its own keep-alive connection, asking the questions of
``eval/qa.jsonl`` (with their conversation history) in a rotating order; even requests of a
client go to ``POST /v1/chat``, odd ones to ``POST /v1/chat/completions`` with ``stream: true``
(extractive mode), so the mix is half and half. A request is an error when its status is not
200, it takes longer than ``--timeout``, a stream ends without ``data: [DONE]`` and a final
``finish_reason: stop`` chunk, or a stream carries an error event. Latency is client-side wall
time; for streams also the time to the first content delta. Loopback only, bounded in time:
no new request starts after ``--seconds`` and those in flight get ``--timeout`` to finish.

The script starts what it measures, on free loopback ports, and stops each process by its PID:

    # nenqa serve, one worker, over the embedded index (NENQA_INDEX_DIR; `nenqa ingest` first)
    .venv/bin/python benchmarks/load_test.py
    # chroma run (the corpus ingested into it first) and nenqa serve --workers 2 over it
    .venv/bin/python benchmarks/load_test.py --workers 2 --chroma-server
    # or a server that is already running (rate limit off: NENQA_RATE_LIMIT_PER_MINUTE=0)
    .venv/bin/python benchmarks/load_test.py --url http://127.0.0.1:8000

Prints a table and writes ``benchmarks/out/load_<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CHROMA = Path(sys.executable).parent / "chroma"


@dataclass
class Outcome:
    """One request: its kind (``chat`` or ``stream``), result and timings in milliseconds."""

    kind: str
    ok: bool
    status: int
    latency_ms: float
    first_content_ms: float | None = None
    error: str = ""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100) of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def load_questions() -> list[dict]:
    """``/v1/chat`` bodies (question and history) of every item of ``eval/qa.jsonl``."""
    bodies = []
    for line in (ROOT / "eval" / "qa.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            history = [
                {"role": t["role"], "content": t["content"]} for t in item.get("history", [])
            ]
            bodies.append({"question": item["question"], "history": history})
    return bodies


async def ask_chat(client: httpx.AsyncClient, body: dict) -> Outcome:
    started = time.perf_counter()
    response = await client.post("/v1/chat", json=body)
    latency = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        return Outcome("chat", False, response.status_code, latency, error=response.text[:200])
    if "answer" not in response.json():
        return Outcome("chat", False, 200, latency, error="no answer field")
    return Outcome("chat", True, 200, latency)


async def ask_stream(client: httpx.AsyncClient, body: dict) -> Outcome:
    messages = [*body["history"], {"role": "user", "content": body["question"]}]
    payload = {"model": "nenqa-extractive", "stream": True, "messages": messages}
    started = time.perf_counter()
    first: float | None = None
    done = stopped = False
    problem = ""
    async with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")[:200]
            latency = (time.perf_counter() - started) * 1000
            return Outcome("stream", False, response.status_code, latency, error=text)
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                done = True
                continue
            event = json.loads(data)
            if "error" in event:
                problem = f"error event: {event['error'].get('message', '')[:150]}"
                continue
            choice = event["choices"][0]
            if first is None and choice["delta"].get("content"):
                first = (time.perf_counter() - started) * 1000
            stopped = stopped or choice.get("finish_reason") == "stop"
    latency = (time.perf_counter() - started) * 1000
    if not problem and not (done and stopped):
        problem = "stream ended without a stop chunk and [DONE]"
    return Outcome("stream", not problem, 200, latency, first, problem)


async def client_loop(
    url: str, number: int, questions: list[dict], deadline: float, timeout_s: float
) -> list[Outcome]:
    """One client: requests back to back until ``deadline`` (monotonic seconds)."""
    outcomes: list[Outcome] = []
    step = 0
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
        while time.monotonic() < deadline:
            body = questions[(number * 17 + step * 5) % len(questions)]
            ask = ask_stream if (number + step) % 2 else ask_chat
            kind = "stream" if ask is ask_stream else "chat"
            started = time.perf_counter()
            try:
                outcomes.append(await asyncio.wait_for(ask(client, body), timeout_s))
            except (TimeoutError, httpx.HTTPError, json.JSONDecodeError) as error:
                latency = (time.perf_counter() - started) * 1000
                outcomes.append(Outcome(kind, False, 0, latency, error=f"{type(error).__name__}"))
            step += 1
    return outcomes


async def run_load(
    url: str, clients: int, seconds: float, timeout_s: float
) -> tuple[list[Outcome], float]:
    questions = load_questions()
    started = time.monotonic()
    deadline = started + seconds
    results = await asyncio.gather(
        *(client_loop(url, n, questions, deadline, timeout_s) for n in range(clients))
    )
    return [o for outcomes in results for o in outcomes], time.monotonic() - started


def summarize(outcomes: list[Outcome], elapsed_s: float) -> dict:
    """Counts, errors, latency percentiles and throughput of some outcomes."""
    if not outcomes:
        return {"requests": 0, "errors": 0}
    latencies = [o.latency_ms for o in outcomes if o.ok] or [0.0]
    summary = {
        "requests": len(outcomes),
        "errors": sum(not o.ok for o in outcomes),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "throughput_rps": round(len(outcomes) / elapsed_s, 2),
    }
    firsts = [o.first_content_ms for o in outcomes if o.ok and o.first_content_ms is not None]
    if firsts:
        summary["first_content_p50_ms"] = round(statistics.median(firsts), 1)
        summary["first_content_p95_ms"] = round(percentile(firsts, 95), 1)
    return summary


# --- The processes under test ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM by PID, then SIGKILL if it has not exited in time."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def wait_until(check, what: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what}: the process exited; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.5)
    raise SystemExit(f"{what} not within {timeout_s:.0f} s; see {log}")


def ready_workers(url: str) -> int | None:
    response = httpx.get(f"{url}/readyz", timeout=5, headers={"Connection": "close"})
    return response.json().get("worker_pid") if response.status_code == 200 else None


class Deployment(contextlib.ExitStack):
    """What the load test runs against: processes it started (stopped on exit) and the URL."""

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.server: subprocess.Popen | None = None
        self.chroma: subprocess.Popen | None = None
        self.description: dict = {}

    def start_chroma(self, path: Path, log: Path) -> str:
        port = free_port()
        command = [str(CHROMA), "run", "--path", str(path), "--host", "127.0.0.1"]
        process = subprocess.Popen(
            [*command, "--port", str(port)], stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        self.callback(stop, process)
        self.chroma = process
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200,
            "chroma run",
            process,
            log,
            60,
        )
        return url

    def start_serve(self, env: dict, workers: int, log: Path) -> None:
        port = free_port()
        command = [sys.executable, "-m", "cli.main", "serve", "--port", str(port)]
        command += ["--workers", str(workers), "--log-level", "warning"]
        self.server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        self.callback(stop, self.server)
        self.url = f"http://127.0.0.1:{port}"
        seen: set[int] = set()

        def all_ready() -> bool:
            pid = ready_workers(self.url)
            if pid is not None:
                seen.add(pid)
            return len(seen) >= workers

        wait_until(all_ready, f"{workers} ready worker(s)", self.server, log, 600)
        self.description["worker_pids"] = sorted(seen)


def deploy(args: argparse.Namespace, stack: Deployment) -> None:
    """Start chroma run (optional) and nenqa serve as ``args`` say."""
    OUT.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "NENQA_RATE_LIMIT_PER_MINUTE": "0",
        "NENQA_ANSWER_MODE": "extractive",
    }
    env.pop("NENQA_CHROMA_URL", None)
    backend = "embedded"
    if args.chroma_server:
        path = Path(args.chroma_path or stack.enter_context(tempfile.TemporaryDirectory()))
        env["NENQA_CHROMA_URL"] = stack.start_chroma(path, OUT / f"load_{args.label}_chroma.log")
        backend = "chroma-server"
        started = time.perf_counter()
        ingest = subprocess.run(
            [sys.executable, "-m", "cli.main", "ingest", "--quiet"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if ingest.returncode != 0:
            raise SystemExit(f"nenqa ingest into the Chroma server failed:\n{ingest.stderr}")
        stack.description["ingest_seconds"] = round(time.perf_counter() - started, 1)
    elif args.workers > 1:
        raise SystemExit("--workers > 1 needs --chroma-server (the embedded index is one process)")
    started = time.perf_counter()
    stack.start_serve(env, args.workers, OUT / f"load_{args.label}_server.log")
    stack.description.update(
        backend=backend, workers=args.workers, ready_seconds=round(time.perf_counter() - started)
    )


def server_rss(stack: Deployment) -> dict:
    """Resident memory of the server process and, with several workers, of each worker."""
    if stack.server is None:
        return {}
    workers = [p for p in stack.description.get("worker_pids", []) if p != stack.server.pid]
    rss = {
        "server_rss_mib": rss_mib(stack.server.pid),
        "worker_rss_mib": [rss_mib(pid) for pid in workers],
    }
    if stack.chroma is not None:
        rss["chroma_rss_mib"] = rss_mib(stack.chroma.pid)
    return rss


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    config = report["config"]
    title = (
        f"load test '{config['label']}': {config['clients']} clients for {config['seconds']} s "
        f"({report['server'].get('backend', 'external')}, "
        f"{report['server'].get('workers', '?')} worker(s))"
    )
    table = Table(title=title)
    columns = ("requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s")
    for column in ("endpoint", *columns, "first content p50/p95 ms"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    names = {"chat": "/v1/chat", "stream": "/v1/chat/completions (stream)", "all": "all"}
    for key, name in names.items():
        row = report["results"][key]
        first = (
            f"{row['first_content_p50_ms']} / {row['first_content_p95_ms']}"
            if "first_content_p50_ms" in row
            else ""
        )
        cells = [row.get(k, "") for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
        table.add_row(
            name,
            str(row["requests"]),
            str(row["errors"]),
            *map(str, cells),
            str(row.get("throughput_rps", "")),
            first,
        )
    console = Console(width=160)
    console.print(table)
    if report["error_kinds"]:
        console.print(f"errors: {report['error_kinds']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--chroma-server", action="store_true", help="start chroma run too")
    parser.add_argument("--chroma-path", help="its --path (default: a fresh temporary folder)")
    parser.add_argument("--url", help="a running server on loopback instead of starting one")
    parser.add_argument("--label", help="names the output file (default from the setup)")
    args = parser.parse_args()
    if args.label is None:
        backend = "chroma" if args.chroma_server else "embedded"
        args.label = "external" if args.url else f"{backend}_{args.workers}w"

    with Deployment() as stack:
        if args.url:
            host = urlsplit(args.url).hostname or ""
            if host not in LOOPBACK:
                raise SystemExit(f"the load test runs on loopback only, not against {host!r}")
            stack.url = args.url.rstrip("/")
        else:
            deploy(args, stack)
        load_before = os.getloadavg()
        outcomes, elapsed = asyncio.run(
            run_load(stack.url, args.clients, args.seconds, args.timeout)
        )
        load_after = os.getloadavg()
        rss = server_rss(stack)

    report = {
        "config": {
            "label": args.label,
            "clients": args.clients,
            "seconds": args.seconds,
            "timeout_s": args.timeout,
            "mix": "half /v1/chat, half /v1/chat/completions stream=true, extractive",
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        },
        "environment": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            # The machine's 1-minute load average, to tell a quiet run from a shared one.
            "load_average_before": round(load_before[0], 2),
            "load_average_after": round(load_after[0], 2),
        },
        "server": {**stack.description, **rss},
        "elapsed_s": round(elapsed, 1),
        "results": {
            "chat": summarize([o for o in outcomes if o.kind == "chat"], elapsed),
            "stream": summarize([o for o in outcomes if o.kind == "stream"], elapsed),
            "all": summarize(outcomes, elapsed),
        },
        "error_kinds": dict(
            Counter(f"{o.kind} {o.status} {o.error[:80]}" for o in outcomes if not o.ok)
        ),
        "error_samples": [asdict(o) for o in outcomes if not o.ok][:20],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"load_{args.label}.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print_table(report)
    print(f"wrote {path.relative_to(ROOT)}")
    if report["results"]["all"]["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
