"""Retrieval evaluation: recall@k of gold references and key facts, MRR@10, nDCG@10.

The same questions also run through the recipe a user would otherwise pick (LangChain's
``RecursiveCharacterTextSplitter(1000, 200)`` + dense retrieval with the same model, top 4),
so the gain is a ratio from one run. Definitions are in docs/evaluation.md.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.correctness import fold_for_facts
from eval.qa_schema import QAItem, load_qa
from nenqa.settings import Settings

KS = (1, 3, 5, 10)
BASELINE_K = 4
_MARKER = re.compile(r"\^\[([0-9,，\-–~\s]+)\]")


@dataclass(frozen=True)
class Hit:
    """One retrieved unit as the metrics see it: its text and the reference numbers it cites."""

    text: str
    refs: frozenset[int]


def marker_refs(text: str) -> frozenset[int]:
    """Reference numbers cited by ``^[n]`` markers in raw text (for the baseline's chunks)."""
    refs: set[int] = set()
    for group in _MARKER.findall(text):
        for part in re.split(r"[,，]", group):
            bounds = [int(x) for x in re.split(r"[\-–~]", part.strip()) if x.strip().isdigit()]
            if len(bounds) == 2:
                refs.update(range(bounds[0], bounds[1] + 1))
            elif bounds:
                refs.add(bounds[0])
    return frozenset(refs)


def is_relevant(hit: Hit, item: QAItem) -> bool:
    """A hit is relevant if it cites a gold reference, or (no gold refs) holds a key fact."""
    if item.gold_refs:
        return bool(hit.refs & set(item.gold_refs))
    text = fold_for_facts(hit.text)
    return any(fold_for_facts(fact) in text for fact in item.key_facts)


def score_item(hits: Sequence[Hit], item: QAItem, n_relevant_total: int) -> dict[str, float]:
    """All per-question metrics for one ranked list."""
    scores: dict[str, float] = {}
    gold = set(item.gold_refs)
    for k in (*KS, BASELINE_K):
        top = hits[:k]
        if gold:
            found = set().union(*(h.refs for h in top)) if top else set()
            scores[f"ref_recall@{k}"] = len(gold & found) / len(gold)
        if item.key_facts:
            text = fold_for_facts(" ".join(h.text for h in top))
            scores[f"fact_recall@{k}"] = sum(
                fold_for_facts(f) in text for f in item.key_facts
            ) / len(item.key_facts)
    relevance = [is_relevant(h, item) for h in hits[:10]]
    scores["mrr@10"] = next((1 / (i + 1) for i, r in enumerate(relevance) if r), 0.0)
    dcg = sum(1 / math.log2(i + 2) for i, r in enumerate(relevance) if r)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, max(n_relevant_total, 1))))
    scores["ndcg@10"] = dcg / ideal
    return scores


def mean_scores(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for row in rows for k in row})
    return {
        k: round(sum(r[k] for r in rows if k in r) / sum(1 for r in rows if k in r), 4)
        for k in keys
    }


def evaluate(
    items: Sequence[QAItem],
    retrieve: Callable[[QAItem], list[Hit]],
    corpus: Sequence[Hit],
) -> tuple[dict[str, float], list[dict]]:
    """Run ``retrieve`` on every answerable item; returns mean scores and per-item rows."""
    rows, per_item = [], []
    for item in items:
        if not item.gold_refs and not item.key_facts:
            continue
        started = time.perf_counter()
        hits = retrieve(item)
        elapsed = (time.perf_counter() - started) * 1000
        n_relevant = sum(is_relevant(h, item) for h in corpus)
        scores = score_item(hits, item, n_relevant)
        rows.append(scores)
        per_item.append(
            {
                "id": item.id,
                "lang": item.lang,
                "category": item.category,
                "ms": round(elapsed, 2),
                **scores,
            }
        )
    return mean_scores(rows), per_item


def hybrid_retriever(searcher) -> tuple[Callable[[QAItem], list[Hit]], list[Hit]]:
    """The searcher as ``evaluate`` asks it (top ``max(KS)`` hits) and the corpus it ranks."""
    from nenqa.types import Turn

    def hit(chunk) -> Hit:
        # A chunk is found in every language it is rendered in: an English question's key
        # facts are in the English rendering of the (Chinese) chunk the search returns.
        twin = searcher.rendering(chunk.chunk_id, "en")
        text = chunk.text if twin is None else f"{chunk.text}\n{twin.text}"
        return Hit(text, frozenset(chunk.refs))

    def retrieve(item: QAItem) -> list[Hit]:
        history = [Turn(t.role, t.content) for t in item.history]
        results = searcher.search(item.question, max(KS), history=history)
        return [hit(e.chunk) for e in results]

    return retrieve, [hit(c) for c in searcher.parents]


def run_retrieval_eval(
    settings: Settings,
    qa_path: Path,
    out_dir: Path,
    *,
    with_baseline: bool = True,
    console=None,
) -> dict:
    """Evaluate the hybrid retriever (and the tutorial recipe); write ``retrieval.json``."""
    from retriever.search import load_searcher

    items = load_qa(qa_path)
    searcher = load_searcher(settings)
    ours, corpus = hybrid_retriever(searcher)

    summary, per_item = evaluate(items, ours, corpus)
    report: dict = {"summary": {"nenqa": summary}, "items": {"nenqa": per_item}}
    if with_baseline:
        recipe, recipe_corpus = tutorial_recipe(settings, searcher.embedder)
        base_summary, base_items = evaluate(items, recipe, recipe_corpus)
        report["summary"]["tutorial_recipe"] = base_summary
        report["items"]["tutorial_recipe"] = base_items
        b = base_summary.get(f"fact_recall@{BASELINE_K}", 0) or 1e-9
        report["summary"]["gain_fact_recall@5_vs_recipe@4"] = round(
            summary.get("fact_recall@5", 0) / b, 2
        )
    report["summary"]["questions"] = len(per_item)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "retrieval.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    if console is not None:
        print_table(report["summary"], console)
    return report


def tutorial_recipe(
    settings: Settings, embedder
) -> tuple[Callable[[QAItem], list[Hit]], list[Hit]]:
    """RecursiveCharacterTextSplitter(1000, 200) over the raw review + dense top-k, same model."""
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from retriever.langchain import E5Embeddings

    raw = (settings.data_dir / "nen-drug-trials-review-2022.md").read_text(encoding="utf-8")
    pieces = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_text(raw)
    store = InMemoryVectorStore.from_texts(pieces, E5Embeddings(embedder))
    corpus = [Hit(p, marker_refs(p)) for p in pieces]

    def recipe(item: QAItem) -> list[Hit]:
        docs = store.similarity_search(item.question, k=max(KS))
        return [Hit(d.page_content, marker_refs(d.page_content)) for d in docs]

    return recipe, corpus


def print_table(summary: dict, console) -> None:
    from rich.table import Table

    systems = [name for name, value in summary.items() if isinstance(value, dict)]
    table = Table(title="retrieval on eval/qa.jsonl")
    table.add_column("metric")
    for name in systems:
        table.add_column(name, justify="right")
    metrics = sorted({m for name in systems for m in summary[name]})
    for metric in metrics:
        table.add_row(metric, *(f"{summary[n].get(metric, float('nan')):.3f}" for n in systems))
    console.print(table)
