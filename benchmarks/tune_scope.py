"""Scope and abstention on eval/scope_questions.jsonl: measure the product, or tune the scope.

The set holds near-domain questions the review does not cover (``out_of_scope``) and
paraphrases of what it does cover in words it does not use (``answerable``), each with its
half (``tune`` / ``test``: a hash of the id, written into the file before any result was seen).

    .venv/bin/python benchmarks/tune_scope.py measure [--label before] [--out benchmarks/out]
    .venv/bin/python benchmarks/tune_scope.py tune [--out benchmarks/out]

``measure`` answers every question with the extractive mode and prints, per half, kind and
language, the share abstained (out of scope: should be 1; answerable: should be 0).
``tune`` chooses the scope thresholds (``answer.scope.ScopeThresholds``) on the tune half only,
by a grid over the signals each question's evidence gives, and reports both halves.
Needs an index (``NENQA_INDEX_DIR``; ``nenqa ingest`` first).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCOPE_SET = ROOT / "eval" / "scope_questions.jsonl"


def load_scope_set(path: Path = SCOPE_SET) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def abstention_table(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Share abstained per ``half/kind`` and ``half/kind/lang``, with the counts."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        for key in (
            f"{row['split']}/{row['kind']}",
            f"{row['split']}/{row['kind']}/{row['lang']}",
        ):
            groups[key].append(row["abstained"])
    return {
        key: {"abstained": round(sum(v) / len(v), 3), "n": len(v)}
        for key, v in sorted(groups.items())
    }


def print_table(table: dict[str, dict[str, float]]) -> None:
    print(f"{'group':<32} | {'abstained':>9} | {'n':>3}")
    for key, cell in table.items():
        print(f"{key:<32} | {cell['abstained']:>9} | {cell['n']:>3}")


def load_product():
    from nenqa.settings import Settings
    from server.state import load_service

    return load_service(Settings())


def measure(args: argparse.Namespace) -> None:
    from nenqa.types import Question

    service = load_product()
    answerer = service.answerer("extractive")
    rows = []
    for item in load_scope_set():
        answer = answerer.answer(Question(item["question"]))
        rows.append({**item, "abstained": answer.abstained, "answer": answer.text})
    table = abstention_table(rows)
    print_table(table)
    wrong = [
        r for r in rows if r["abstained"] != (r["kind"] == "out_of_scope") and r["split"] == "tune"
    ]
    print(f"tune items decided wrongly: {len(wrong)}")
    for row in wrong:
        print(f"  {row['id']}: {row['question']}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scope_{args.label}.json"
    path.write_text(
        json.dumps({"table": table, "rows": rows}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("measure", "tune"))
    parser.add_argument("--label", default="now")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    {"measure": measure}[args.command](args)


if __name__ == "__main__":
    main()
