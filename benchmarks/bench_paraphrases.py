"""Benchmark: the extractive answers to the scope set's answerable paraphrases.

The answerable questions of ``eval/scope_questions.jsonl`` ask what the review covers in words
it does not use, each with its gold references and key facts, and its half (``tune`` /
``test``, fixed by a hash of the id before any result was seen). This answers every one with
the extractive mode (no model) and scores it as ``nenqa eval`` does (``eval.report.score_item``):
key facts present, a gold reference cited, abstained. Prints one row per half and batch group
and writes JSON with every answer (default ``benchmarks/out/paraphrases.json``).

The llm mode quotes the same selected sentences, so its key facts and gold references on these
questions follow the extractive answers' (``bench_llm.py --paraphrases`` measures it on the
model). Needs an index (``NENQA_INDEX_DIR``; ``nenqa ingest`` first).

    .venv/bin/python benchmarks/bench_paraphrases.py [--label now] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_llm import paraphrase_items, question_of, reply_of  # noqa: E402
from benchmarks.tune_scope import SCOPE_SET, load_product, load_scope_set  # noqa: E402
from eval.qa_schema import batch_of  # noqa: E402
from eval.report import score_item  # noqa: E402

# Batches reported together: the first ones, those issue 14's held-out runs asked (2-3, 5-6,
# 7-8); every later batch of the scope set is a group of its own (``batch_groups``).
# ``paraphrase_items`` numbers at most 100 questions per call.
EARLY_GROUPS = (
    ("1",),
    ("2", "3"),
    ("4",),
    ("5", "6"),
    ("7", "8"),
)


def batch_groups() -> tuple[tuple[str, ...], ...]:
    """``EARLY_GROUPS``, then each other batch of the scope set alone, in number order."""
    early = {batch for group in EARLY_GROUPS for batch in group}
    later = {batch_of(row["id"]) for row in load_scope_set()} - early
    return (*EARLY_GROUPS, *((batch,) for batch in sorted(later, key=int)))


def answer_all() -> list[dict]:
    """Every answerable paraphrase, answered and scored, with its scope-set id and half."""
    halves = {row["id"]: row["split"] for row in load_scope_set()}
    answerer = load_product().answerer("extractive")
    rows = []
    for group in batch_groups():
        for item in paraphrase_items(SCOPE_SET, set(group)):
            scope_id = item.notes.split()[-1]
            answer = answerer.answer(question_of(item))
            score = score_item(item, reply_of(answer), {})
            rows.append(
                {
                    "id": scope_id,
                    "split": halves[scope_id],
                    "batch": batch_of(scope_id),
                    "question": item.question,
                    "abstained": answer.abstained,
                    "key_fact_share": score["key_fact_share"],
                    "missing_key_facts": score["missing_key_facts"],
                    "gold_reference_hit": score.get("gold_reference_hit"),
                    "answer": answer.text,
                }
            )
    return rows


def summary(rows: list[dict]) -> dict[str, dict]:
    """Per half, and per half and batch group: questions, key facts, gold references hit (of
    those with gold references), abstentions."""
    groups: dict[str, list[dict]] = {}
    known = batch_groups()
    for row in rows:
        group = next(g for g in known if row["batch"] in g)
        for key in (row["split"], f"{row['split']}/batches {'+'.join(group)}"):
            groups.setdefault(key, []).append(row)
    table = {}
    for key in sorted(groups, key=lambda k: (k.split("/")[0] != "tune", k)):
        members = groups[key]
        golds = [r["gold_reference_hit"] for r in members if r["gold_reference_hit"] is not None]
        table[key] = {
            "n": len(members),
            "key_facts": round(sum(r["key_fact_share"] for r in members) / len(members), 3),
            "gold_hit": sum(golds),
            "gold_n": len(golds),
            "abstained": sum(r["abstained"] for r in members),
        }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="now")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args(argv)
    rows = answer_all()
    table = summary(rows)
    print(f"{'group':<22} | {'n':>3} | {'key facts':>9} | {'gold ref':>9} | {'abstained':>9}")
    for key, cell in table.items():
        gold = f"{cell['gold_hit']}/{cell['gold_n']}"
        print(
            f"{key:<22} | {cell['n']:>3} | {cell['key_facts']:>9} | {gold:>9} | "
            f"{cell['abstained']:>9}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"paraphrases_{args.label}.json"
    path.write_text(
        json.dumps({"table": table, "rows": rows}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
