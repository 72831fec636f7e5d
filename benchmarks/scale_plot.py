"""The scale plot (``docs/scale.png``): the embedded index's rows of ``bench_scale.py`` beside
what ``bench_workers.py`` measured through ``chroma run`` (search, start-up, a forked searcher's
and whole workers' private memory), read from its JSON by run label.

    .venv/bin/python benchmarks/bench_scale.py --plot-only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The chroma run measurements plotted beside the embedded ones: (chunks, label of the
# bench_workers.py search run in its JSON). The quieter 100k run: the other was under load 4.4.
CHROMA_RUNS = ["100000=100k (quieter)", "1000000=1M"]


def measured_runs(workers_json: Path, runs: list[str]) -> list[tuple[int, str, dict]]:
    """(chunks, label, record) of each run in ``runs`` (``CHUNKS=LABEL``) that
    ``bench_workers.py`` wrote to ``workers_json``; a label it lacks is an error."""
    measured = json.loads(workers_json.read_text())
    found = []
    for run in runs:
        chunks, label = run.split("=", 1)
        if label not in measured:
            raise KeyError(f"{workers_json} has no run labelled {label!r}")
        found.append((int(chunks), label, measured[label]))
    return found


def chroma_run_rows(workers_json: Path, runs: list[str]) -> list[dict]:
    """The search runs of ``benchmarks/bench_workers.py`` (its JSON, merged by label) named in
    ``runs`` (``CHUNKS=LABEL``), as plot rows: search p50/p95, the searcher's start (model load
    included), a forked searcher process's private memory and the Chroma server's RSS."""
    rows = []
    for chunks, label, r in measured_runs(workers_json, runs):
        rows.append(
            {
                "chunks": chunks,
                "label": label,
                "search_p50_ms": r["search_p50_ms"],
                "search_p95_ms": r["search_p95_ms"],
                "start_s": r["searcher_load_s"],
                "searcher_private_mib": r["searcher_worker_mib"]["uss"],
                "chroma_server_rss_mib": r["chroma_server_mib"]["rss"],
            }
        )
    return sorted(rows, key=lambda r: r["chunks"])


# Whole workers of `nenqa serve --workers 2` over chroma run (bench_workers.py runs without
# --search-only): after the eval questions, and after 50 corpus changes through the admin API,
# with glibc's default, with fixed malloc thresholds, and with the product's malloc_trim after
# each generation swap (docs/benchmarks.md).
WORKER_RUNS = [
    "100000=100k, forked (after)",
    "100000=100k, admin API, 25 adds and removes",
    "100000=100k, admin API, 25 adds and removes, fixed malloc thresholds",
    "100000=100k, admin API, 25 adds and removes, malloc_trim after each swap",
]


def whole_worker_points(workers_json: Path, runs: list[str]) -> list[dict]:
    """The most private memory (USS) any worker of each run in ``runs`` (``CHUNKS=LABEL``)
    held at any stage ``bench_workers.py`` read it: ready, answered, after the questions, and
    after each admin change."""
    points = []
    for chunks, label, r in measured_runs(workers_json, runs):
        stages = [r["worker_ready_mib"], r["worker_answered_mib"], r["worker_after_questions_mib"]]
        for change in r.get("changes", []):
            stages += [change["worker_served_mib"], change["worker_answered_mib"]]
        uss = max(m["uss"] for stage in stages for m in stage)
        points.append({"chunks": chunks, "label": label, "worker_uss_mib": uss})
    return points


def plot(
    rows: list[dict],
    path: Path,
    chroma_rows: list[dict] | None = None,
    worker_points: list[dict] | None = None,
) -> None:
    """Search latency, start-up, memory per process and index size against corpus size: the
    embedded index's rows (``rows``, projected ones dashed) and, where given, those measured
    through ``chroma run`` (``chroma_rows``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r["measured"]]
    projected = [r for r in rows if not r["measured"]]
    chroma_rows = chroma_rows or []
    embedded, served = "tab:blue", "tab:green"

    def line(axis, points, key, style, color, label, dy=5, dx=6) -> None:
        """One series, each point labelled with its value (``dx`` points right of it and ``dy``
        above it)."""
        points = [p for p in points if key in p]
        if points:
            xs, ys = [p["chunks"] for p in points], [p[key] for p in points]
            axis.plot(xs, ys, style, color=color, label=label)
            for x, y in zip(xs, ys, strict=True):
                axis.annotate(
                    f"{y:,.4g}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(dx, dy),
                    fontsize=7,
                    color=color,
                )

    # A projection's line starts at the last measured point.
    projection = [measured[-1], *projected] if projected and measured else []

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    search, start, memory, disk = axes.flat

    line(search, measured, "search_p50_ms", "o-", embedded, "embedded p50")
    line(search, measured, "search_p95_ms", "s:", embedded, "embedded p95")
    line(search, projection, "search_p50_ms", "o--", "tab:gray", "embedded p50, projected")
    line(search, chroma_rows, "search_p50_ms", "o-", served, "chroma run p50", dy=-12)
    line(search, chroma_rows, "search_p95_ms", "s:", served, "chroma run p95", dy=-12)
    search.set_yscale("log")
    search.set_title("hybrid search, query embedding excluded (ms)")
    search.axhline(50, color="orange", lw=0.8, ls="--", label="p50 target at 100k (50)")
    search.axhline(100, color="red", lw=0.8, ls="--", label="p50 target at 1M (100)")

    line(start, measured, "load_s", "o-", embedded, "embedded: open the saved tables")
    line(start, chroma_rows, "start_s", "o-", served, "chroma run: searcher, model load included")
    start.axhline(10, color="orange", lw=0.8, ls="--", label="target at 100k (10)")
    start.axhline(60, color="red", lw=0.8, ls="--", label="target at 1M (60)")
    start.set_yscale("log")
    start.set_ylim(0.5, 100)
    start.set_title("searcher start (s)")

    line(memory, measured, "rss_mib", "o-", embedded, "embedded: searcher process RSS")
    line(
        memory,
        measured,
        "second_worker_searcher_private_mib",
        "s:",
        embedded,
        "embedded: one more worker's searcher, private",
        dy=-12,
    )
    line(
        memory,
        chroma_rows,
        "searcher_private_mib",
        "s:",
        served,
        "chroma run: forked searcher, private (USS)",
        dy=2,
        dx=-34,
    )
    line(
        memory,
        chroma_rows,
        "chroma_server_rss_mib",
        "^-",
        "tab:purple",
        "chroma run: the Chroma server (RSS, held once)",
        dy=-10,
        dx=-34,
    )
    for point, marker in zip(worker_points or [], "DPv*", strict=False):
        # Its value in the legend: beside the other series' labels at 100k it would be lost.
        memory.plot(
            [point["chunks"]],
            [point["worker_uss_mib"]],
            marker,
            color="tab:red",
            label=f"worker, most USS {point['worker_uss_mib']:,.0f}: {point['label']}",
        )
    memory.plot([100_000], [500], "x", color="orange", ms=9, label="extra worker target at 100k")
    memory.set_yscale("log")
    memory.set_ylim(150, 40_000)  # the legend above the lines
    memory.set_title("memory per process after the eval questions (MiB)")

    line(disk, measured, "index_mib", "o-", embedded, "index on disk")
    line(disk, measured, "tables_mib", "s:", embedded, "saved search tables")
    line(disk, projection, "index_mib", "o--", "tab:gray", "projected")
    disk.set_title("on disk (MiB)")

    for axis in axes.flat:
        axis.set_xscale("log")
        axis.set_xlabel("chunks")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=6.5 if axis is memory else 7, loc="upper left")
        low, high = axis.get_xlim()
        axis.set_xlim(low / 1.4, high * 1.4)  # room for the values' labels
    fig.suptitle("nenqa at scale: synthetic corpus, 2 shared cores (docs/benchmarks.md)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_with_chroma_runs(rows: list[dict], args: argparse.Namespace) -> None:
    """``plot`` with the runs of ``args.workers_json`` named by ``--chroma-run`` and
    ``--worker-run``."""
    chroma_rows = chroma_run_rows(args.workers_json, args.chroma_run)
    plot(rows, args.plot, chroma_rows, whole_worker_points(args.workers_json, args.worker_run))
