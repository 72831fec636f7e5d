"""The whole service at scale: what one more server worker costs, and how soon it serves a change.

Over an index written by ``benchmarks/bench_scale.py --work`` (synthetic corpus and vectors):

- ``--bank INDEX --pool-file POOL``: what ``nenqa ingest`` does after the tables, in a process of
  its own: split, embed and save the generation's quotable sentences once. The vectors are the
  pool's plus noise, under the real model's ID (embedding 100k chunks' sentences with the model
  would take hours here); the bank's size and shape are the real ones.
- ``--second-service INDEX``: a first worker runs ``load_service`` (searcher, sentences, scope
  check, reference tables, answer modes) and answers a question; while it holds everything, a
  second one does the same. The second's private memory (USS) is what one more worker costs.
- ``--change INDEX --pool-file POOL``: while a worker serves the index (polling its generation as
  a server worker does), add 10 chunks as ``nenqa docs add`` does
  (``answer.publication.publish_generation``: the generation's files saved, then published),
  and time until the worker answers from the
  new generation. It changes INDEX: run it on a copy.
- ``--generations INDEX --pool-file POOL --cycles N``: what one worker keeps per generation. In
  one process, as the worker that answers ``POST`` / ``DELETE /admin/documents`` does: 10 chunks
  added, then removed, N times, each change written and published
  (``publish_generation``) in a thread of a pool, as a request's handler runs, then served
  (``reload_service``) and answered from. After each change: USS and its private dirty part,
  and Python's allocated blocks; at the end (with ``--trim-each``, after every change) USS
  again after ``malloc_trim(0)`` returned the allocator's free pages to the system, which
  tells growth in live objects apart from freed memory the allocator keeps. It changes INDEX:
  run it on a copy.

Every process stops itself past ``--max-rss-gib`` resident (12 by default).

    .venv/bin/python benchmarks/bench_service.py --bank WORK/index-100000 \\
        --pool-file WORK/pool.npy --child-out bank.json
    .venv/bin/python benchmarks/bench_service.py --second-service WORK/index-100000
    .venv/bin/python benchmarks/bench_service.py --change WORK/index-100000 \\
        --pool-file WORK/pool.npy
    .venv/bin/python benchmarks/bench_service.py --generations COPY --pool-file WORK/pool.npy \\
        --cycles 10 --out benchmarks/out/generations-100k.json
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_scale import (  # noqa: E402
    anonymous_mib,
    first_worker,
    folder_bytes,
    parse_memory_limited,
    peak_rss_mib,
    rss_mib,
    run_child,
    synthetic_chunks,
    synthetic_texts,
)


def uss_pss_mib() -> tuple[float, float]:
    """This process's unique (private pages) and proportional set sizes, MiB."""
    fields = Path("/proc/self/smaps_rollup").read_text().splitlines()
    kib = {f.split()[0].rstrip(":"): int(f.split()[1]) for f in fields[1:]}
    return (kib["Private_Clean"] + kib["Private_Dirty"]) / 1024, kib["Pss"] / 1024


class SyntheticSentenceEmbedder:
    """The real model's ID with vectors from the pool plus noise (as the chunks' vectors):
    embedding 100k chunks' sentences with the model would take about half an hour here."""

    def __init__(self, model_id: str, pool: np.ndarray) -> None:
        self.model_id, self._pool = model_id, pool
        self._rng = np.random.default_rng(1)

    def embed_passages(self, texts):
        base = self._pool[np.arange(len(texts)) % len(self._pool)]
        vectors = base + self._rng.normal(scale=0.02, size=base.shape).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_saved_bank(index_dir: Path, pool_path: Path, out: Path) -> None:
    """What ``nenqa ingest`` does after the tables: split, embed and save the generation's
    quotable sentences once (vectors synthetic, under the real model's ID), in a process of its
    own so its peak memory is the build's."""
    from answer.sentence_store import open_bank
    from nenqa.settings import Settings
    from retriever.embeddings import DEFAULT_MODEL_ID
    from retriever.search import current_tables
    from retriever.store import ChunkStore

    store = ChunkStore(Settings(index_dir=index_dir, collection="scale"), None, "scale-bench")
    tables, _ = current_tables(store)
    embedder = SyntheticSentenceEmbedder(DEFAULT_MODEL_ID, np.load(pool_path))
    before = peak_rss_mib()
    started = time.perf_counter()
    bank = open_bank(embedder, tables.chunks, index_dir=index_dir, generation=tables.generation)
    result = {
        "bank_build_s": round(time.perf_counter() - started, 2),
        "bank_sentences": len(bank),
        "bank_build_peak_rss_mib": round(peak_rss_mib(), 1),
        "bank_build_start_rss_mib": round(before, 1),
        "bank_mib": round(folder_bytes(index_dir / "sentences") / 2**20, 1),
    }
    out.write_text(json.dumps(result))


def open_service(index_dir: Path, out: Path, hold: Path | None = None) -> None:
    """A whole server worker's start over an index whose tables and sentences are saved:
    ``load_service`` (searcher, sentences, scope check, reference tables, answer modes), then
    one answered question; with ``hold``, then create that file and wait to be stopped."""
    from nenqa.settings import Settings
    from nenqa.types import Question
    from retriever.embeddings import load_embedder
    from retriever.search import HybridSearcher, current_tables
    from retriever.store import ChunkStore
    from server.api.routes.references import reference_out
    from server.state import load_service, reload_service

    started = time.perf_counter()
    settings = Settings(index_dir=index_dir, collection="scale")
    embedder = load_embedder(settings)
    store = ChunkStore(settings, None, "scale-bench")
    tables, glossary = current_tables(store)
    searcher = HybridSearcher(store, embedder, glossary, tables=tables)
    service = load_service(settings, searcher=searcher)
    load_s = time.perf_counter() - started
    question = Question("依维莫司治疗胰腺神经内分泌肿瘤的无进展生存期是多少？")
    answered = time.perf_counter()
    answer = service.answerer("extractive").answer(question)
    answer_s = time.perf_counter() - answered
    uss, pss = uss_pss_mib()
    # What a worker does when it notices a new generation whose tables and sentences the
    # writer saved: a new service over them (here the same generation's, opened again).
    reloading = time.perf_counter()
    reloaded = reload_service(service)
    reloaded.answerer("extractive").answer(question)
    reload_s = time.perf_counter() - reloading
    # GET /v1/references: every reference with the sentences citing it (one walk, then kept).
    listing = time.perf_counter()
    quotes = sum(len(reference_out(reloaded, r).cited_in) for r in reloaded.references.values())
    references_s = time.perf_counter() - listing
    result = {
        "service_load_s": round(load_s, 2),
        "service_sentences": len(service.bank),
        "first_answer_s": round(answer_s, 2),
        "answer_citations": len(answer.citations),
        "answer_abstained": answer.abstained,
        "service_rss_mib": round(rss_mib(), 1),
        "service_uss_mib": round(uss, 1),
        "service_pss_mib": round(pss, 1),
        "service_anonymous_mib": round(anonymous_mib(), 1),
        "reload_and_answer_s": round(reload_s, 2),
        "all_references_s": round(references_s, 2),
        "reference_quotes": quotes,
    }
    out.write_text(json.dumps(result))
    if hold is not None:
        hold.touch()
        serve_generations(reloaded, question, hold.with_suffix(".served"))


def serve_generations(service, question, served: Path) -> None:
    """As a server worker's watcher does: poll the index's generation every second and, when
    it changed, swap in a service over it; each generation served is appended to ``served``
    with the time it was first answered from."""
    from server.state import reload_service

    while True:
        time.sleep(1.0)
        if service.searcher.store.generation() == service.searcher.generation:
            continue
        reloading = time.perf_counter()
        service = reload_service(service)
        service.answerer("extractive").answer(question)
        line = {
            "generation": service.searcher.generation.number,
            "served_at": time.time(),
            "reload_s": round(time.perf_counter() - reloading, 2),
        }
        with served.open("a") as handle:
            handle.write(json.dumps(line) + "\n")


def measure_change(index_dir: Path, pool_path: Path, tmp: Path, count: int = 10) -> dict:
    """A change reaching a worker: while a worker serves the index, add ``count`` chunks as
    ``nenqa docs add`` does (write, then ``answer.publication.publish_generation``: the generation's
    tables, scope text and sentences saved, then published) and time until the worker answers
    from it, from the publication and from the end of the write."""
    from answer.publication import publish_generation
    from nenqa.settings import Settings
    from retriever.embeddings import DEFAULT_MODEL_ID
    from retriever.store import ChunkStore

    ready, first = tmp / "worker.ready", tmp / "worker.json"
    served = ready.with_suffix(".served")
    arguments = ("--service", str(index_dir), "--child-out", str(first))
    with first_worker(__file__, *arguments, ready=ready) as worker:
        store = ChunkStore(Settings(index_dir=index_dir, collection="scale"), None, "scale-bench")
        pool = np.load(pool_path)
        size = store.count()
        chunks = synthetic_chunks(synthetic_texts(size + count, seed=5))[size:]
        store.upsert(chunks, pool[:count])
        written = time.time()
        steps = publish_generation(store, SyntheticSentenceEmbedder(DEFAULT_MODEL_ID, pool))
        published = steps["published_at"]
        while not served.exists():
            if worker.poll() is not None:
                raise RuntimeError("the worker stopped before serving the change")
            time.sleep(0.2)
        line = json.loads(served.read_text().splitlines()[0])
    return {
        "change_chunks": count,
        "writer_tables_s": round(steps["tables"], 2),
        "writer_corpus_text_s": round(steps["corpus_text"], 2),
        "writer_sentences_s": round(steps["sentences"], 2),
        "writer_published_after_s": round(published - written, 2),
        "worker_reload_s": line["reload_s"],
        "worker_serves_change_after_s": round(line["served_at"] - published, 2),
        "worker_serves_change_after_write_s": round(line["served_at"] - written, 2),
    }


def private_dirty_mib() -> float:
    """This process's private dirty pages (its heap and the pages it copied on write), MiB."""
    fields = Path("/proc/self/smaps_rollup").read_text().splitlines()
    return sum(int(f.split()[1]) for f in fields if f.startswith("Private_Dirty:")) / 1024


def measure_generations(
    index_dir: Path, pool_path: Path, cycles: int, *, trim_each: bool, count: int = 10
) -> dict:
    """What one worker keeps per generation (``--generations``): after each of ``2 * cycles``
    changes made and served as the admin API's worker makes them, its USS and private dirty
    MiB and Python's allocated blocks; its USS after ``malloc_trim(0)`` at the end, or with
    ``trim_each`` after every change."""
    from concurrent.futures import ThreadPoolExecutor

    from answer.publication import publish_generation
    from nenqa.settings import Settings
    from nenqa.types import Question
    from retriever.embeddings import load_embedder
    from retriever.search import HybridSearcher, current_tables
    from retriever.store import ChunkStore
    from server.state import load_service, reload_service

    libc = ctypes.CDLL("libc.so.6")  # glibc: malloc_trim gives free heap pages back
    settings = Settings(index_dir=index_dir, collection="scale")
    store = ChunkStore(settings, None, "scale-bench")
    tables, glossary = current_tables(store)
    searcher = HybridSearcher(store, load_embedder(settings), glossary, tables=tables)
    service = load_service(settings, searcher=searcher)
    question = Question("依维莫司治疗胰腺神经内分泌肿瘤的无进展生存期是多少？")
    service.answerer("extractive").answer(question)
    size = store.count()
    chunks = synthetic_chunks(synthetic_texts(size + count, seed=5))[size:]
    vectors = np.load(pool_path)[:count]

    def change(add: bool) -> None:  # what the admin route's handler does, in a pool thread
        if add:
            service.searcher.store.upsert(chunks, vectors)
        else:
            service.searcher.store.delete([c.chunk_id for c in chunks])
        publish_generation(service.searcher.store, service.searcher.embedder)

    def state(label: str, started: float, trim: bool) -> dict:
        gc.collect()
        uss, _ = uss_pss_mib()
        row = {
            "change": label,
            "seconds": round(time.perf_counter() - started, 2),
            "uss_mib": round(uss, 1),
            "private_dirty_mib": round(private_dirty_mib(), 1),
            "python_blocks": sys.getallocatedblocks(),
        }
        if trim:
            libc.malloc_trim(0)
            row["uss_after_trim_mib"] = round(uss_pss_mib()[0], 1)
        print(json.dumps(row), flush=True)
        return row

    rows = [state("loaded, one answer", time.perf_counter(), trim_each)]
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="request") as requests:
        for cycle in range(cycles):
            for add in (True, False):
                started = time.perf_counter()
                requests.submit(change, add).result()
                service = reload_service(service)
                service.answerer("extractive").answer(question)
                label = f"{'add' if add else 'remove'} {cycle + 1}"
                last = cycle == cycles - 1 and not add
                rows.append(state(label, started, trim_each or last))
    return {"chunks": size, "change_chunks": count, "trim_each": trim_each, "generations": rows}


def generations_table(rows: list[dict]) -> str:
    """``measure_generations``' rows as a table."""
    lines = [
        "| after | s | USS MiB | private dirty MiB | Python blocks | USS after malloc_trim MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        trimmed = r.get("uss_after_trim_mib", "")
        lines.append(
            f"| {r['change']} | {r['seconds']} | {r['uss_mib']:,.0f} "
            f"| {r['private_dirty_mib']:,.0f} | {r['python_blocks']:,} | {trimmed} |"
        )
    return "\n".join(lines)


def second_service(index_dir: Path, tmp: Path) -> dict:
    """What one more whole worker adds: a second ``open_service`` while a first one holds the
    same index, tables, sentences and model (pages both map count as shared)."""
    ready, first, second = tmp / "service.ready", tmp / "service1.json", tmp / "service2.json"
    with first_worker(
        __file__, "--service", str(index_dir), "--child-out", str(first), ready=ready
    ):
        run_child("--service", str(index_dir), "--child-out", str(second), script=__file__)
    return {
        "first": json.loads(first.read_text()),
        "second": json.loads(second.read_text()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, help="build and save this index's sentences once")
    parser.add_argument("--pool-file", type=Path, help="vectors for --bank and --change (.npy)")
    parser.add_argument("--second-service", type=Path, help="a whole second worker's cost")
    parser.add_argument("--change", type=Path, help="how soon a worker serves a change")
    parser.add_argument("--generations", type=Path, help="what a worker keeps per generation")
    parser.add_argument("--cycles", type=int, default=10, help="--generations: adds and removes")
    parser.add_argument(
        "--trim-each", action="store_true", help="--generations: malloc_trim after each change"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "out" / "generations.json",
        help="--generations: where its JSON goes",
    )
    parser.add_argument("--service", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=Path, help=argparse.SUPPRESS)
    args = parse_memory_limited(parser)
    if args.bank:
        build_saved_bank(args.bank, args.pool_file, args.child_out)
    elif args.service:
        open_service(args.service, args.child_out, args.hold)
    elif args.change:
        with tempfile.TemporaryDirectory() as name:
            print(json.dumps(measure_change(args.change, args.pool_file, Path(name))))
    elif args.generations:
        measured = measure_generations(
            args.generations, args.pool_file, args.cycles, trim_each=args.trim_each
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(measured, indent=2))
        print(generations_table(measured["generations"]))
    elif args.second_service:
        with tempfile.TemporaryDirectory() as name:
            print(json.dumps(second_service(args.second_service, Path(name))))
    else:
        parser.error("give --bank, --second-service, --change or --generations")


if __name__ == "__main__":
    main()
