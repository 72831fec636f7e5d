"""Choose the weight of the renderings' lexical ranking on one half of eval/qa.jsonl, report both.

The items are split by a hash of their id (``tune`` / ``test``, fixed before any result is
seen); each weight is scored on both halves, the best on ``tune`` (mean of fact_recall@5,
ref_recall@5 and MRR@10) is the one to keep, and its ``test`` row is the number to report.
Query embeddings are cached, so each weight only re-ranks. Needs an index with renderings.

    .venv/bin/python benchmarks/tune_renderings.py [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tune_fusion import CachedEmbedder  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
METRICS = ("fact_recall@5", "ref_recall@5", "mrr@10", "ndcg@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()

    from eval.qa_schema import half_of, load_qa
    from eval.retrieval import evaluate, hybrid_retriever
    from nenqa.settings import Settings
    from retriever.search import load_searcher

    searcher = load_searcher(Settings())
    searcher.embedder = CachedEmbedder(searcher.embedder)
    retrieve, corpus = hybrid_retriever(searcher)
    items = load_qa(ROOT / "eval" / "qa.jsonl")
    halves = {name: [i for i in items if half_of(i.id) == name] for name in ("tune", "test")}
    halves["all"] = items
    base = searcher.weights
    rows = []
    for weight in WEIGHTS:
        searcher.weights = replace(base, rendering_lexical=weight)
        row: dict = {"rendering_lexical": weight}
        for name, subset in halves.items():
            summary, _ = evaluate(subset, retrieve, corpus)
            scores = {m: round(summary[m], 4) for m in METRICS}
            scores["objective"] = round(
                (scores["fact_recall@5"] + scores["ref_recall@5"] + scores["mrr@10"]) / 3, 4
            )
            row[name] = scores
        rows.append(row)
    best = max(rows, key=lambda r: r["tune"]["objective"])
    columns = (*METRICS, "objective")
    print(f"{'weight':>7} | {'half':>5} | " + " | ".join(f"{m:>13}" for m in columns))
    for row in rows:
        for name in ("tune", "test", "all"):
            cells = " | ".join(f"{row[name][m]:>13}" for m in columns)
            mark = " <- best on tune" if row is best and name == "tune" else ""
            print(f"{row['rendering_lexical']:>7} | {name:>5} | {cells}{mark}")
    sizes = {name: len(subset) for name, subset in halves.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "tune_renderings.json"
    result = {"halves": sizes, "rows": rows, "best": best["rendering_lexical"]}
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"best on tune: {best['rendering_lexical']}; wrote {path}")


if __name__ == "__main__":
    main()
