"""Scale benchmark: a synthetic corpus in the review's sentence patterns at growing sizes.

For every size it measures index write throughput, index size on disk, the time to build and
save the generation's search tables once (what ``nenqa ingest`` does after writing), then, in a
fresh process as every server worker starts, the time to open them, the process's RSS and the
private memory the searcher adds (what one more worker costs), and hybrid search p50/p95 over
the eval questions with the query embedding excluded (``timings_ms`` total minus embed).
Separately it measures ingest throughput (parse + embed + write, real model) against the
embedder's own encode throughput on the same texts. Sizes it cannot fit are projected from the
measured points and marked so.

Embedding 100k chunks with the real model on 2 cores would take hours, so the scale points use
vectors derived from a pool of real embeddings of synthetic texts (each chunk's vector is a
pool vector plus small noise, renormalised): the index, the ANN search and BM25 see corpora of
the real size and shape; only the semantic content of most vectors is synthetic.

The search tables are built in a process of their own, as ``nenqa ingest`` builds them after
writing, so its peak resident memory is the build's alone. Every process the benchmark starts
watches its own resident memory and stops the run when it passes ``--max-rss-gib`` (12 by
default): on a shared machine an out-of-memory kill takes other work with it.

    .venv/bin/python benchmarks/bench_scale.py --sizes 10000 100000 --project 1000000
    .venv/bin/python benchmarks/bench_scale.py --ingest-only --ingest-sample 500

A whole worker (the service, not only the searcher) over an index of ``--work``, and a
change reaching it: ``benchmarks/bench_service.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scale_plot import (  # noqa: E402
    CHROMA_RUNS,
    WORKER_RUNS,
    plot,
    plot_with_chroma_runs,
)

MAX_RSS_VARIABLE = "BENCH_SCALE_MAX_RSS_GIB"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def synthetic_texts(count: int, seed: int = 7) -> list[tuple[str, tuple[int, ...]]]:
    """Texts in the review's patterns: its passages with numbers, drugs and trials varied."""
    from ingest.chunking import chunk_document
    from ingest.review import parse_review
    from nenqa.glossary import load_glossary_table
    from nenqa.settings import get_settings

    settings = get_settings()
    document = parse_review(settings.data_dir / "nen-drug-trials-review-2022.md")
    templates = [c for c in chunk_document(document) if c.refs]
    drugs = [t.zh[0] for t in load_glossary_table(settings.data_dir / "glossary.tsv") if t.zh]
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        template = templates[i % len(templates)]
        text = _NUMBER.sub(
            lambda m: f"{rng.uniform(1, 60):.1f}" if "." in m.group() else str(rng.randint(2, 600)),
            template.text,
        )
        text = text.replace(rng.choice(drugs), rng.choice(drugs))
        texts.append((f"SYN-{i:07d} {text}", tuple(sorted(rng.sample(range(1, 51), 2)))))
    return texts


def synthetic_chunks(texts):
    from nenqa.types import Chunk

    return [
        Chunk(
            chunk_id=f"s-{i:08d}",
            doc_id="synthetic",
            kind="passage",
            text=text,
            section=f"{i % 6 + 1} synthetic",
            refs=refs,
        )
        for i, (text, refs) in enumerate(texts)
    ]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rss_mib() -> float:
    """Resident memory of this process now (model, index client, chunk table, BM25), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def private_mib() -> float:
    """Memory only this process holds (private pages): what one more worker adds, since the
    model file's and the memory-mapped BM25 arrays' pages are shared through the page cache."""
    fields = Path("/proc/self/smaps_rollup").read_text().splitlines()
    kib = sum(int(f.split()[1]) for f in fields if f.startswith(("Private_Clean", "Private_Dirty")))
    return kib / 1024


def anonymous_mib() -> float:
    """Anonymous memory of this process (heap: Python objects, arrays read into memory): what a
    second worker cannot share, unlike file-backed pages (memory-mapped BM25 arrays), which
    count as private only while one process maps them."""
    fields = Path("/proc/self/smaps_rollup").read_text().splitlines()
    return sum(int(f.split()[1]) for f in fields if f.startswith("Anonymous:")) / 1024


def peak_rss_mib() -> float:
    """The most resident memory this process has held (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PEAK_ANONYMOUS_MIB = [0.0]  # the most anonymous memory the watcher saw (sampled every 0.5 s)


def watch_memory(limit_gib: float) -> None:
    """Stop this process (exit status 3) when its resident memory passes ``limit_gib``."""

    def watch() -> None:
        while True:
            PEAK_ANONYMOUS_MIB[0] = max(PEAK_ANONYMOUS_MIB[0], anonymous_mib())
            if rss_mib() > limit_gib * 1024:
                print(f"resident memory passed {limit_gib} GiB; stopped", file=sys.stderr)
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def parse_memory_limited(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with ``--max-rss-gib``: this process and every one it starts stop when
    their resident memory passes it."""
    parser.add_argument(
        "--max-rss-gib",
        type=float,
        default=float(os.environ.get(MAX_RSS_VARIABLE, 12)),
        help="stop any process of the run whose resident memory passes this (GiB)",
    )
    args = parser.parse_args()
    os.environ[MAX_RSS_VARIABLE] = str(args.max_rss_gib)
    watch_memory(args.max_rss_gib)
    return args


def run_child(*arguments: str, script: str = __file__) -> None:
    """This script (or ``script``) again in a fresh process (the memory limit passes on in the
    environment)."""
    command = [sys.executable, str(Path(script).resolve()), *arguments]
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def measure_ingest(embedder, count: int, tmp: Path) -> dict:
    """Encode throughput of the embedder alone vs the whole ingest path on the same texts."""
    from ingest.pipeline import ParsedCorpus, sync_index
    from nenqa.settings import Settings
    from retriever.embeddings import set_torch_threads
    from retriever.store import ChunkStore

    set_torch_threads(None)
    chunks = synthetic_chunks(synthetic_texts(count, seed=11))
    texts = [c.text for c in chunks]
    embedder.embed_passages(texts[:32])  # warm-up
    started = time.perf_counter()
    embedder.embed_passages(texts)
    encode_rate = count / (time.perf_counter() - started)

    settings = Settings(index_dir=tmp / "ingest", collection="scale_ingest")
    store = ChunkStore(settings, None, embedder.model_id)
    corpus = ParsedCorpus(chunks=chunks, doc_ids=["synthetic"])
    started = time.perf_counter()
    sync_index(corpus, store, embedder, batch_size=32)
    ingest_rate = count / (time.perf_counter() - started)
    return {
        "chunks": count,
        "encode_chunks_per_s": round(encode_rate, 2),
        "ingest_chunks_per_s": round(ingest_rate, 2),
        "ingest_vs_encode": round(ingest_rate / encode_rate, 3),
    }


def measure_size(size: int, pool: np.ndarray, embedder, questions, tmp: Path) -> dict:
    """Build an index of ``size`` chunks in a child process and time searches over it."""
    pool_path = tmp / "pool.npy"
    np.save(pool_path, pool)
    out = tmp / f"size-{size}.json"
    run_child("--child", str(size), "--tmp", str(tmp), "--child-out", str(out))
    return json.loads(out.read_text())


def child(size: int, tmp: Path, out: Path) -> None:
    """One scale point in a fresh process, so RSS is this size's alone."""
    from nenqa.settings import Settings
    from retriever.store import ChunkStore

    rng = np.random.default_rng(size)
    pool = np.load(tmp / "pool.npy")
    settings = Settings(index_dir=tmp / f"index-{size}", collection="scale")
    store = ChunkStore(settings, None, "scale-bench")
    chunks = synthetic_chunks(synthetic_texts(size))
    started = time.perf_counter()
    step = 5000
    for start in range(0, size, step):
        part = chunks[start : start + step]
        base = pool[np.arange(start, start + len(part)) % len(pool)]
        vectors = base + rng.normal(scale=0.02, size=base.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert(part, vectors)
    write_s = time.perf_counter() - started
    del chunks

    store.publish()  # as nenqa ingest does: a generation, then its search tables built once
    index_mib = folder_bytes(settings.index_dir) / 2**20
    result = {
        "chunks": size,
        "measured": True,
        "write_chunks_per_s": round(size / write_s, 1),
        "index_mib": round(index_mib, 1),
    }
    print(json.dumps(result), flush=True)
    built = tmp / f"build-{size}.json"
    run_child("--build", str(settings.index_dir), "--child-out", str(built))
    result |= json.loads(built.read_text())
    print(json.dumps(result), flush=True)
    # Every server process after that: a fresh process opening the saved tables.
    opened = tmp / f"open-{size}.json"
    run_child("--open", str(settings.index_dir), "--child-out", str(opened))
    result |= json.loads(opened.read_text())
    result |= second_worker(settings.index_dir, tmp)
    out.write_text(json.dumps(result))


@contextmanager
def first_worker(script: str, *arguments: str, ready: Path) -> Iterator[subprocess.Popen]:
    """``script`` run with ``arguments`` and ``--hold ready`` in a process held while the body
    runs (from when it creates ``ready``), and stopped after it."""
    ready.unlink(missing_ok=True)
    command = [sys.executable, str(Path(script).resolve()), *arguments, "--hold", str(ready)]
    holder = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        while not ready.exists():
            if holder.poll() is not None:
                raise RuntimeError("the first worker stopped before it was ready")
            time.sleep(0.5)
        yield holder
    finally:
        holder.terminate()
        holder.wait()


def second_worker(index_dir: Path, tmp: Path) -> dict:
    """What one more worker adds: a second process opening the same tables while a first one
    holds them (so the pages both map, model file and memory-mapped tables, count as shared)."""
    ready, first, second = tmp / "first.ready", tmp / "first.json", tmp / "second.json"
    with first_worker(__file__, "--open", str(index_dir), "--child-out", str(first), ready=ready):
        run_child("--open", str(index_dir), "--child-out", str(second))
    measured = json.loads(second.read_text())
    return {
        "second_worker_private_mib": measured["worker_private_mib"],
        "second_worker_searcher_private_mib": measured["searcher_private_mib"],
    }


def build_saved_tables(index_dir: Path, out: Path) -> None:
    """What ``nenqa ingest`` does after writing: build and save the generation's search
    tables once, in a process of its own so its peak memory is the build's."""
    from nenqa.settings import Settings
    from retriever.search import current_tables
    from retriever.snapshot import snapshots_dir
    from retriever.store import ChunkStore

    store = ChunkStore(Settings(index_dir=index_dir, collection="scale"), None, "scale-bench")
    before = peak_rss_mib()
    started = time.perf_counter()
    current_tables(store)
    result = {
        "tables_build_s": round(time.perf_counter() - started, 2),
        "build_peak_rss_mib": round(peak_rss_mib(), 1),
        "build_start_rss_mib": round(before, 1),
        "build_peak_anonymous_mib": round(max(PEAK_ANONYMOUS_MIB[0], anonymous_mib()), 1),
        "tables_mib": round(folder_bytes(snapshots_dir(index_dir)) / 2**20, 1),
    }
    out.write_text(json.dumps(result))


def open_saved(index_dir: Path, out: Path, hold: Path | None = None) -> None:
    """A server process's start over an index whose tables are saved: open them, search;
    with ``hold``, then create that file and wait to be stopped (a first worker)."""
    from eval.qa_schema import load_qa
    from nenqa.settings import Settings
    from nenqa.types import Question
    from retriever.embeddings import load_embedder
    from retriever.search import HybridSearcher, current_tables
    from retriever.store import ChunkStore

    embedder = load_embedder(Settings())
    settings = Settings(index_dir=index_dir, collection="scale")
    store = ChunkStore(settings, None, "scale-bench")
    before_rss, before_private, before_anonymous = rss_mib(), private_mib(), anonymous_mib()
    started = time.perf_counter()
    tables, glossary = current_tables(store)
    searcher = HybridSearcher(store, embedder, glossary, tables=tables)
    load_s = time.perf_counter() - started
    # The tables alone, before the first question loads jieba's dictionary and Chroma's
    # vector index into this process.
    opened_anonymous = anonymous_mib() - before_anonymous
    questions = [Question(item.question) for item in load_qa(ROOT / "eval" / "qa.jsonl")]
    for question in questions[:5]:
        searcher.retrieve(question, 5)
    latencies = []  # search alone: the question's embedding is not counted
    for question in questions:
        timings = searcher.retrieve(question, 5).timings_ms
        latencies.append(timings["total"] - timings["embed"])
    result = {
        "load_s": round(load_s, 2),
        "rss_mib": round(rss_mib(), 1),
        "searcher_rss_mib": round(rss_mib() - before_rss, 1),
        "searcher_private_mib": round(private_mib() - before_private, 1),
        "searcher_anonymous_mib": round(anonymous_mib() - before_anonymous, 1),
        "tables_anonymous_mib": round(opened_anonymous, 1),
        "worker_private_mib": round(private_mib(), 1),
        "search_p50_ms": round(statistics.median(latencies), 2),
        "search_p95_ms": round(float(np.percentile(latencies, 95)), 2),
    }
    out.write_text(json.dumps(result))
    if hold is not None:
        hold.touch()
        while True:
            time.sleep(60)


def project(points: list[dict], size: int) -> dict:
    """Least-squares in log-log space from the measured points (marked ``measured: false``)."""
    xs = np.log([p["chunks"] for p in points])
    projected = {"chunks": size, "measured": False}
    for key in (
        "write_chunks_per_s",
        "index_mib",
        "tables_build_s",
        "build_peak_rss_mib",
        "load_s",
        "rss_mib",
        "searcher_private_mib",
        "search_p50_ms",
        "search_p95_ms",
    ):
        ys = np.log([max(p[key], 1e-6) for p in points])
        slope, intercept = np.polyfit(xs, ys, 1)
        projected[key] = round(float(np.exp(intercept + slope * np.log(size))), 2)
    return projected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--project", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--ingest-sample", type=int, default=1000)
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="measure only ingest vs encode throughput (writes ingest.json)",
    )
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument(
        "--work", type=Path, help="keep the indexes in this folder (default: a temporary one)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "scale.png")
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="only draw --plot from OUT/scale.json and --workers-json (nothing measured)",
    )
    parser.add_argument(
        "--workers-json",
        type=Path,
        default=ROOT / "benchmarks" / "out" / "workers.json",
        help="benchmarks/bench_workers.py's results, for the chroma run lines",
    )
    parser.add_argument(
        "--worker-run",
        nargs="*",
        default=WORKER_RUNS,
        metavar="CHUNKS=LABEL",
        help="the --workers-json runs of whole workers to plot, by their size and label",
    )
    parser.add_argument(
        "--chroma-run",
        nargs="*",
        default=CHROMA_RUNS,
        metavar="CHUNKS=LABEL",
        help="the --workers-json search runs to plot, by their size and label",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--open", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--second-worker",
        type=Path,
        help="only measure a second worker over this index (its tables saved)",
    )
    args = parse_memory_limited(parser)
    if args.plot_only:
        rows = json.loads((args.out / "scale.json").read_text())["scale"]
        plot_with_chroma_runs(rows, args)
        return
    if args.build:
        build_saved_tables(args.build, args.child_out)
        return
    if args.open:
        open_saved(args.open, args.child_out, args.hold)
        return
    if args.second_worker:
        with tempfile.TemporaryDirectory() as name:
            print(json.dumps(second_worker(args.second_worker, Path(name))))
        return
    if args.child:
        child(args.child, args.tmp, args.child_out)
        return

    from nenqa.settings import Settings
    from retriever.embeddings import load_embedder, set_torch_threads

    embedder = load_embedder(Settings())
    with tempfile.TemporaryDirectory() as name:
        tmp = args.work or Path(name)
        tmp.mkdir(parents=True, exist_ok=True)
        ingest = measure_ingest(embedder, args.ingest_sample, tmp)
        print(json.dumps(ingest))
        if args.ingest_only:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "ingest.json").write_text(json.dumps(ingest, indent=2))
            return
        set_torch_threads(None)
        pool = embedder.embed_passages([t for t, _ in synthetic_texts(args.pool, seed=3)])
        rows = []
        for size in args.sizes:
            rows.append(measure_size(size, pool, embedder, None, tmp))
            print(json.dumps(rows[-1]))
    rows += [project(rows, size) for size in args.project if size not in args.sizes]
    result = {"ingest": ingest, "scale": rows, "cpus": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(result, indent=2))
    if args.workers_json.exists():
        plot_with_chroma_runs(rows, args)
    else:
        print(f"no {args.workers_json}: the plot has no chroma run lines", file=sys.stderr)
        plot(rows, args.plot)
    header = ("chunks", "measured", "write/s", "MiB", "build_s", "build_MiB", "open_s")
    header += ("rss_MiB", "+MiB", "+anon_MiB", "2nd+MiB")
    header += ("p50_ms", "p95_ms")
    print(" ".join(f"{h:>10}" for h in header))
    for r in rows:
        print(
            " ".join(
                f"{v:>10}"
                for v in (
                    r["chunks"],
                    str(r["measured"]),
                    r["write_chunks_per_s"],
                    r["index_mib"],
                    r["tables_build_s"],
                    r.get("build_peak_rss_mib", "-"),
                    r["load_s"],
                    r["rss_mib"],
                    r["searcher_private_mib"],
                    r.get("searcher_anonymous_mib", "-"),
                    r.get("second_worker_searcher_private_mib", "-"),
                    r["search_p50_ms"],
                    r["search_p95_ms"],
                )
            )
        )


if __name__ == "__main__":
    main()
