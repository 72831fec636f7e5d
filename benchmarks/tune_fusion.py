"""Tune the fusion weights on eval/qa.jsonl: grid search, print the best settings, write JSON.

Query embeddings are computed once and cached, so each configuration only re-fuses rankings.
The objective is the mean of fact_recall@5, ref_recall@5 and MRR@10 over answerable questions.

    .venv/bin/python benchmarks/tune_fusion.py [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class CachedEmbedder:
    """Wraps an embedder and remembers query vectors (the grid re-asks the same queries)."""

    def __init__(self, embedder) -> None:
        self._embedder = embedder
        self._cache: dict[str, object] = {}

    def embed_queries(self, texts):
        import numpy as np

        rows = []
        for text in texts:
            if text not in self._cache:
                self._cache[text] = self._embedder.embed_queries([text])[0]
            rows.append(self._cache[text])
        return np.asarray(rows)

    def __getattr__(self, name):
        return getattr(self._embedder, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()

    from eval.qa_schema import load_qa
    from eval.retrieval import KS, Hit, evaluate
    from nenqa.settings import Settings
    from nenqa.types import Turn
    from retriever.search import FusionWeights, load_searcher

    searcher = load_searcher(Settings())
    searcher.embedder = CachedEmbedder(searcher.embedder)
    items = load_qa(ROOT / "eval" / "qa.jsonl")
    corpus = [Hit(c.text, frozenset(c.refs)) for c in searcher.chunks]

    def run(weights: FusionWeights) -> dict[str, float]:
        searcher.weights = weights

        def retrieve(item):
            history = [Turn(t.role, t.content) for t in item.history]
            results = searcher.search(item.question, max(KS), history=history)
            return [Hit(e.chunk.text, frozenset(e.chunk.refs)) for e in results]

        summary, _ = evaluate(items, retrieve, corpus)
        summary["objective"] = round(
            (summary["fact_recall@5"] + summary["ref_recall@5"] + summary["mrr@10"]) / 3, 4
        )
        return summary

    base = FusionWeights()
    grid = itertools.product(
        (5, 10, 20, 60),  # rrf_k
        (0.8, 1.0, 1.25),  # dense weight (lexical fixed at 1)
        (0.0, 0.3, 0.6),  # reference_lift
        (0.0, 0.2, 0.4),  # trial_lift
        (0.3, 0.6),  # reference_result_factor
    )
    rows = []
    for rrf_k, dense, ref_lift, trial_lift, ref_factor in grid:
        weights = replace(
            base,
            rrf_k=rrf_k,
            dense=dense,
            reference_lift=ref_lift,
            trial_lift=trial_lift,
            reference_result_factor=ref_factor,
        )
        rows.append({"weights": asdict(weights), **run(weights)})
    rows.sort(key=lambda r: -r["objective"])
    default = {"weights": asdict(base), **run(base)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune_fusion.json").write_text(json.dumps({"default": default, "grid": rows}))
    print(f"{'objective':>9} {'fact@5':>7} {'ref@5':>7} {'mrr@10':>7}  weights")
    for row in [default, *rows[:10]]:
        w = row["weights"]
        print(
            f"{row['objective']:>9.4f} {row['fact_recall@5']:>7.3f} {row['ref_recall@5']:>7.3f} "
            f"{row['mrr@10']:>7.3f}  rrf_k={w['rrf_k']} dense={w['dense']} "
            f"ref_lift={w['reference_lift']} trial_lift={w['trial_lift']} "
            f"ref_factor={w['reference_result_factor']}"
        )


if __name__ == "__main__":
    main()
