"""Tune the llm mode's alignment thresholds on recorded model drafts, without the model.

``benchmarks/bench_llm.py`` records each question's raw model output (``draft``). Everything
after the model, aligning each sentence to the evidence it restates, the checks and the quotes
kept beside it, is code, so it can be replayed on those drafts with other thresholds: each
question is answered again in the llm mode by a chat model that returns its recorded draft, and
scored by the deterministic judge as ``bench_llm`` does. The thresholds are the shares of a
sentence's words an evidence sentence must hold to align (``answer/claims.py``:
``MIN_WORD_SHARE``, ``MIN_WORD_SHARE_WITH_ANCHOR``). They are chosen on the tune half of the
recorded items (``eval.qa_schema.half_of``: highest faithfulness, then key facts, then the
values nearest the current ones) and the test half is reported.

    .venv/bin/python benchmarks/tune_claims.py [--records benchmarks/out/bench_llm.json]
    .venv/bin/python benchmarks/tune_claims.py --records <bench_llm --paraphrases 2,3 run> \
        --paraphrases 2,3

With ``--paraphrases`` the records are held-out questions (the scope set's answerable
paraphrases, never used to tune the llm mode): they are scored at the current thresholds only,
with the code as it is now (checks added since the run apply to its drafts).

``--tune-paraphrases 2,3=<bench_llm --paraphrases 2,3 run>`` (repeatable) adds such runs to the
choice: each question counts in its scope-set half (the hash of its scope-set id, as the
file's ``split`` column), so their tune halves join the eval items' tune half and their test
halves are reported with the eval items' test half.

Needs the index ``bench_llm`` ran on (``nenqa ingest``). Prints a table, writes JSON
(default ``benchmarks/out/tune_claims.json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import answer.claims as claims  # noqa: E402
from answer.llm import LLMAnswerer  # noqa: E402
from benchmarks.bench_llm import paraphrase_items, question_of, reply_of  # noqa: E402
from eval.judges import DeterministicJudge  # noqa: E402
from eval.qa_schema import half_of, load_qa  # noqa: E402
from eval.report import score_item, summarize  # noqa: E402
from nenqa.settings import get_settings  # noqa: E402
from nenqa.types import Answer  # noqa: E402
from retriever.search import build_glossary  # noqa: E402

WORD_SHARE_GRID = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ANCHORED_SHARE_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
METRICS = ("faithfulness", "key_fact_recall", "citation_precision", "gold_reference_hit_rate")
SCOPE_SET = ROOT / "eval" / "scope_questions.jsonl"


def replayed_model(draft: str):
    """A chat model whose every reply is ``draft`` (the model's recorded output)."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    return FakeListChatModel(responses=[draft or "INSUFFICIENT_EVIDENCE"])


def replay(service, settings, draft: str, item) -> Answer:
    """The llm mode's answer to ``item`` today, with the model's recorded ``draft`` as its
    reply: everything after the model (alignment, checks, citations) runs as in the product."""
    llm = LLMAnswerer(
        service.scorer,
        service.references,
        replayed_model(draft),
        top_k=settings.answer_top_k,
        records=service.trials,
    )
    return llm.answer(question_of(item))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--records", type=Path, default=ROOT / "benchmarks" / "out" / "bench_llm.json"
    )
    parser.add_argument("--qa", type=Path, default=ROOT / "eval" / "qa.jsonl")
    parser.add_argument(
        "--paraphrases",
        help="the records are bench_llm's --paraphrases run of these batches (1,2,3): score "
        "them at the current thresholds only, as held-out questions (no choice is made)",
    )
    parser.add_argument(
        "--tune-paraphrases",
        action="append",
        default=[],
        metavar="BATCHES=RECORDS",
        help="a bench_llm --paraphrases run (batches and its JSON) whose scope-set halves join "
        "the tune and test halves (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "tune_claims.json"
    )
    args = parser.parse_args(argv)

    recorded = json.loads(args.records.read_text(encoding="utf-8"))["records"]
    if args.paraphrases:
        qa_items = paraphrase_items(SCOPE_SET, set(args.paraphrases.split(",")))
    else:
        qa_items = load_qa(args.qa)
    items = {i.id: i for i in qa_items}
    # (item, draft, half) of every record replayed: the eval items by their id's hash, the
    # paraphrases by their scope-set half. Paraphrase runs number their items from q900 each,
    # and every one is answerable, so ``items`` keeps one of each id for ``summarize``.
    replayed = [(items[r["id"]], r["draft"], half_of(r["id"])) for r in recorded]
    for spec in args.tune_paraphrases:
        batches, path = spec.split("=", 1)
        runs = paraphrase_items(SCOPE_SET, set(batches.split(",")))
        by_id = {i.id: i for i in runs}
        for record in json.loads(Path(path).read_text(encoding="utf-8"))["records"]:
            item = by_id[record["id"]]
            # Its scope-set id's half (the file's ``split`` column is that hash too).
            replayed.append((item, record["draft"], half_of(item.notes.split()[-1])))
            items.setdefault(item.id, item)
    settings = get_settings()
    judges = {"deterministic": DeterministicJudge(build_glossary(settings))}

    from server.state import load_service

    service = load_service(settings)

    def scores(word_share: float, anchored_share: float) -> dict[str, dict]:
        claims.MIN_WORD_SHARE, claims.MIN_WORD_SHARE_WITH_ANCHOR = word_share, anchored_share
        rows: dict[str, list[dict]] = {"tune": [], "test": [], "all": []}
        for item, draft, half in replayed:
            answer = replay(service, settings, draft, item)
            row = score_item(item, reply_of(answer), judges, judges["deterministic"])
            rows[half].append(row)
            rows["all"].append(row)
        return {half: summarize(r, items, "deterministic") for half, r in rows.items()}

    current = (claims.MIN_WORD_SHARE, claims.MIN_WORD_SHARE_WITH_ANCHOR)
    if args.paraphrases:
        held_out = scores(*current)["all"]
        print(f"{current}, {len(recorded)} held-out questions: ")
        print(json.dumps(held_out, indent=2))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"thresholds": current, **held_out}, indent=2))
        return 0
    results = {}
    for word_share, anchored_share in itertools.product(WORD_SHARE_GRID, ANCHORED_SHARE_GRID):
        if anchored_share > word_share:
            continue
        results[(word_share, anchored_share)] = scores(word_share, anchored_share)
        tune = results[(word_share, anchored_share)]["tune"]
        print(
            f"{word_share:.1f} {anchored_share:.1f} tune "
            + " ".join(f"{m} {tune[m]:.3f}" for m in METRICS),
            flush=True,
        )

    def objective(point: tuple[float, float]) -> tuple:
        tune = results[point]["tune"]
        distance = abs(point[0] - current[0]) + abs(point[1] - current[1])
        return (round(tune["faithfulness"], 3), round(tune["key_fact_recall"], 3), -distance)

    chosen = max(results, key=objective)
    report = {
        "records": str(args.records),
        "items": {h: sum(half == h for _, _, half in replayed) for h in ("tune", "test")},
        "paraphrase_runs": args.tune_paraphrases,
        "current": {"thresholds": current, **results[current]},
        "chosen": {"thresholds": chosen, **results[chosen]},
        "grid": [{"thresholds": k, **v} for k, v in results.items()],
    }
    print(f"\n| | thresholds | half | {' | '.join(METRICS)} |")
    print(f"|---|---|---|{'---|' * len(METRICS)}")
    for name in ("current", "chosen"):
        for half in ("tune", "test"):
            cells = " | ".join(f"{report[name][half][m]:.3f}" for m in METRICS)
            print(f"| {name} | {report[name]['thresholds']} | {half} | {cells} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
