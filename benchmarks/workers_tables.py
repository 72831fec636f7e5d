"""The tables ``bench_workers.py`` prints from its JSON (merged by run label): whole workers,
search through ``chroma run``, and corpus changes through the admin API."""

from __future__ import annotations


def tables(results: dict[str, dict]) -> str:
    """The workers of every run that served, the search of every run that searched, and the
    admin changes of every run that made some; a table only where a run has its rows."""
    parts = [workers_table(results), search_table(results), changes_table(results)]
    return "\n\n".join("\n".join(rows) for rows in parts if len(rows) > 2)


def workers_table(results: dict[str, dict]) -> list[str]:
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
    return rows


def search_table(results: dict[str, dict]) -> list[str]:
    rows = [
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
    return rows


def changes_table(results: dict[str, dict]) -> list[str]:
    """Each admin change of every run that made some: its times and each worker's memory
    (USS / PSS / RSS MiB); workers w1, w2, ... in PID order, "writer" the one that answered the
    request (and so did the writer's work)."""
    rows = [
        "| run | change (generation) | writer | request s | published s | served after "
        "publication s (w1 · w2) | after the response s | worker USS / PSS / RSS MiB, served "
        "(w1 · w2) | USS after one more answer |",
        "|---|---|---|---:|---:|---|---|---|---|",
    ]

    def each(values: list, form=str) -> str:
        return " · ".join(form(v) for v in values)

    def mib(m: dict) -> str:
        return f"{m['uss']:,.0f} / {m['pss']:,.0f} / {m['rss']:,.0f}"

    def uss(m: dict) -> str:
        return f"{m['uss']:,.0f}"

    for label, r in results.items():
        if not r.get("changes"):
            continue
        before = each(r["worker_after_questions_mib"], mib)
        rows.append(f"| {label} | before | | | | | | {before} | |")
        for c in r["changes"]:
            writer = f"w{c['worker_pids'].index(c['writer_pid']) + 1}"
            rows.append(
                f"| {label} | {c['action']} ({c['generation']}) | {writer} | {c['request_s']} "
                f"| {c['published_s']} | {each(c['served_after_publication_s'])} "
                f"| {each(c['served_after_response_s'])} | {each(c['worker_served_mib'], mib)} "
                f"| {each(c['worker_answered_mib'], uss)} |"
            )
    return rows
