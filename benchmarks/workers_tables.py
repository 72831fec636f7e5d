"""The tables ``bench_workers.py`` prints from its JSON (merged by run label): whole workers,
search through ``chroma run``, and corpus changes through the admin API."""

from __future__ import annotations

from collections.abc import Callable


def tables(results: dict[str, dict]) -> str:
    """The workers of every run that served, the search of every run that searched, and the
    admin changes of every run that made some; a table only where a run has its rows."""
    parts = [workers_table(results), search_table(results), changes_table(results)]
    return "\n\n".join("\n".join(rows) for rows in parts if len(rows) > 2)


def _table(
    results: dict[str, dict],
    header: tuple[str, str],
    has: Callable[[dict], bool],
    rows_of: Callable[[str, dict], list[str]],
) -> list[str]:
    """The header, then the rows of every run that ``has`` what the table shows."""
    return [*header, *(row for label, r in results.items() if has(r) for row in rows_of(label, r))]


def workers_table(results: dict[str, dict]) -> list[str]:
    def rows_of(label: str, r: dict) -> list[str]:
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
        return [
            f"| {label} | {r['all_ready_s']} | {answers} | {uss} | {shared} "
            f"| {r['server_process_mib']['rss']:,.0f} | {r['server_total_pss_mib']:,.0f} |"
        ]

    header = (
        "| run | ready s | first answer s | worker USS MiB: ready / answered / after more "
        "| worker PSS / RSS MiB | server process RSS MiB | all processes' PSS MiB |",
        "|---|---:|---|---|---|---:|---:|",
    )
    return _table(results, header, lambda r: "workers" in r, rows_of)


def search_table(results: dict[str, dict]) -> list[str]:
    def rows_of(label: str, r: dict) -> list[str]:
        worker = r["searcher_worker_mib"]
        return [
            f"| {label} | {r['search_p50_ms']} / {r['search_p95_ms']} "
            f"| {r.get('dense_p50_ms', '—')} / {r.get('dense_p95_ms', '—')} "
            f"| {r['searcher_load_s']} | {worker['uss']:,.0f} / {worker['rss']:,.0f} "
            f"| {r['chroma_server_mib']['rss']:,.0f} "
            f"| {' → '.join(map(str, r.get('load_average', [])))} |"
        ]

    header = (
        "| run | search p50 / p95 ms | of which dense p50 / p95 ms | searcher load s "
        "| forked searcher USS / RSS MiB | Chroma server RSS MiB | load average |",
        "|---|---|---|---:|---|---:|---|",
    )
    return _table(results, header, lambda r: "search_p50_ms" in r, rows_of)


def changes_table(results: dict[str, dict]) -> list[str]:
    """Each admin change of every run that made some: its times and each worker's memory
    (USS / PSS / RSS MiB); workers w1, w2, ... in PID order, "writer" the one that answered the
    request (and so did the writer's work)."""

    def each(values: list, form=str) -> str:
        return " · ".join(form(v) for v in values)

    def mib(m: dict) -> str:
        return f"{m['uss']:,.0f} / {m['pss']:,.0f} / {m['rss']:,.0f}"

    def uss(m: dict) -> str:
        return f"{m['uss']:,.0f}"

    def rows_of(label: str, r: dict) -> list[str]:
        before = each(r["worker_after_questions_mib"], mib)
        rows = [f"| {label} | before | | | | | | {before} | |"]
        for c in r["changes"]:
            writer = f"w{c['worker_pids'].index(c['writer_pid']) + 1}"
            rows.append(
                f"| {label} | {c['action']} ({c['generation']}) | {writer} | {c['request_s']} "
                f"| {c['published_s']} | {each(c['served_after_publication_s'])} "
                f"| {each(c['served_after_response_s'])} | {each(c['worker_served_mib'], mib)} "
                f"| {each(c['worker_answered_mib'], uss)} |"
            )
        return rows

    header = (
        "| run | change (generation) | writer | request s | published s | served after "
        "publication s (w1 · w2) | after the response s | worker USS / PSS / RSS MiB, served "
        "(w1 · w2) | USS after one more answer |",
        "|---|---|---|---:|---:|---|---|---|---|",
    )
    return _table(results, header, lambda r: bool(r.get("changes")), rows_of)
