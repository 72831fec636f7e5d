"""Benchmark: cold ingest of the default corpus and warm search latency.

Cold ingest runs ``nenqa ingest`` in a fresh process against an empty index in a temporary
folder (model load, parse, chunk, embed, write). Warm search times ``HybridSearcher.search``
over every eval question after one warm-up pass. Prints a table, writes JSON.

    .venv/bin/python benchmarks/bench_retrieval.py [--rounds 3] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def cold_ingest(index_dir: Path) -> float:
    env = {**os.environ, "NENQA_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "nenqa"), "ingest", "--quiet"],
        check=True,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the questions")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()

    from eval.qa_schema import load_qa
    from nenqa.settings import Settings
    from nenqa.types import Turn
    from retriever.search import load_searcher

    with tempfile.TemporaryDirectory() as tmp:
        ingest_seconds = cold_ingest(Path(tmp) / "index")
        settings = Settings(index_dir=Path(tmp) / "index")
        started = time.perf_counter()
        searcher = load_searcher(settings)
        load_seconds = time.perf_counter() - started
        items = load_qa(ROOT / "eval" / "qa.jsonl")
        queries = [(i.question, [Turn(t.role, t.content) for t in i.history]) for i in items]
        for question, history in queries:  # warm-up
            searcher.search(question, 5, history=history)
        latencies: list[float] = []
        for _ in range(args.rounds):
            for question, history in queries:
                t0 = time.perf_counter()
                searcher.search(question, 5, history=history)
                latencies.append((time.perf_counter() - t0) * 1000)
        chunks = len(searcher)

    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "corpus_chunks": chunks,
        "cold_ingest_s": round(ingest_seconds, 2),
        "index_load_s": round(load_seconds, 2),
        "searches": len(latencies),
        "search_p50_ms": round(statistics.median(latencies), 2),
        "search_p95_ms": round(percentile(latencies, 95), 2),
        "search_max_ms": round(max(latencies), 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps(result, indent=2))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
