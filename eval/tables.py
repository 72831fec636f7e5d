"""Evidence tables on ``eval/list_questions.jsonl``: coverage and precision of the rows.

Each item is a question about a set of trials (``kind`` list or comparison) with the trial ids
the review gives for it, or a question about one trial (``kind`` single) that must get no table.
Coverage: expected trials listed / expected trials; precision: listed trials that are expected /
listed trials (a question without a table lists nothing: coverage 0, precision undefined). The
split (``tune`` / ``test``) was fixed when the file was written, before any result was seen.

    python -m eval.tables [--split tune|test|all] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from answer.tables import build_table
from answer.trial_query import recognise_trial_query
from nenqa.glossary import Glossary
from nenqa.types import EvidenceTable, TrialRecord

LIST_QUESTIONS = Path(__file__).resolve().parent / "list_questions.jsonl"
SPLITS = ("tune", "test")


@dataclass(frozen=True)
class ListQuestion:
    id: str
    lang: str
    split: str
    kind: str
    question: str
    gold_trials: tuple[str, ...]


@dataclass(frozen=True)
class TableScore:
    """One question's result: the trials listed and how they compare with the expected ones."""

    id: str
    split: str
    kind: str
    lang: str
    question: str
    listed: tuple[str, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    coverage: float | None
    precision: float | None


def load_list_questions(path: Path = LIST_QUESTIONS) -> list[ListQuestion]:
    """The questions of a list-question file (JSON lines), in file order."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            raw["gold_trials"] = tuple(raw["gold_trials"])
            items.append(ListQuestion(**raw))
    return items


def score_table(item: ListQuestion, table: EvidenceTable | None) -> TableScore:
    """Coverage and precision of one question's table against its expected trials."""
    listed = tuple(row.trial_id for row in table.rows) if table else ()
    gold = set(item.gold_trials)
    found = gold & set(listed)
    return TableScore(
        id=item.id,
        split=item.split,
        kind=item.kind,
        lang=item.lang,
        question=item.question,
        listed=listed,
        missing=tuple(sorted(gold - found)),
        extra=tuple(t for t in listed if t not in gold),
        coverage=len(found) / len(gold) if gold else None,
        precision=len(found) / len(listed) if listed else None,
    )


def product_table(
    glossary: Glossary, records: Sequence[TrialRecord]
) -> Callable[[ListQuestion], EvidenceTable | None]:
    """The table the product answers a question with (``answer.tables``), in its language."""

    def table(item: ListQuestion) -> EvidenceTable | None:
        query = recognise_trial_query(item.question, glossary, records)
        return build_table(query, records, item.lang) if query else None

    return table


def summarize(scores: Sequence[TableScore]) -> dict[str, float | int | None]:
    """Mean coverage and precision over the set questions; tables given to single questions."""
    sets = [s for s in scores if s.kind != "single"]
    singles = [s for s in scores if s.kind == "single"]
    coverage = [s.coverage for s in sets if s.coverage is not None]
    precision = [s.precision if s.precision is not None else 0.0 for s in sets]
    return {
        "questions": len(sets),
        "coverage": round(sum(coverage) / len(coverage), 4) if coverage else None,
        "precision": round(sum(precision) / len(precision), 4) if precision else None,
        "recognised": sum(bool(s.listed) for s in sets),
        "single_questions": len(singles),
        "single_given_a_table": sum(bool(s.listed) for s in singles),
    }


def run_table_eval(
    table: Callable[[ListQuestion], EvidenceTable | None],
    items: Sequence[ListQuestion],
) -> dict:
    """Scores per question and summaries per split and language."""
    scores = [score_table(item, table(item)) for item in items]
    report: dict = {"items": [asdict(s) for s in scores]}
    for split in SPLITS:
        chosen = [s for s in scores if s.split == split]
        report[split] = summarize(chosen)
        for lang in ("en", "zh"):
            report[f"{split}.{lang}"] = summarize([s for s in chosen if s.lang == lang])
    return report


def main(argv: Sequence[str] | None = None) -> None:
    from ingest.sources import read_source
    from ingest.trials import load_trials
    from nenqa.settings import get_settings
    from retriever.search import build_glossary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="all")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    settings = get_settings()
    records = load_trials(settings.data_dir / "trials.jsonl")
    review = read_source(settings.data_dir / "nen-drug-trials-review-2022.md")
    glossary = build_glossary(settings, review.chunks)
    items = [i for i in load_list_questions() if args.split in ("all", i.split)]
    report = run_table_eval(product_table(glossary, records), items)
    for item in report["items"]:
        if item["missing"] or item["extra"] or (item["kind"] == "single" and item["listed"]):
            print(
                f"{item['id']} {item['split']} {item['kind']}: {item['question']}\n"
                f"    missing {list(item['missing'])} extra {list(item['extra'])}"
            )
    print(f"{'split':<10} {'n':>3} {'coverage':>9} {'precision':>10} {'single→table':>13}")
    for key in [k for k in report if k != "items"]:
        row = report[key]
        print(
            f"{key:<10} {row['questions']:>3} {row['coverage']!s:>9} {row['precision']!s:>10} "
            f"{row['single_given_a_table']:>6}/{row['single_questions']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
