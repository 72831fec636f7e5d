"""Benchmark: the llm answer mode on the real local model, and what the citation checker removes.

Starts the prepared local model (``make llm``; Qwen2.5-Coder-1.5B-Instruct Q4_K_M on
llama-cpp-python, 2 threads, loopback) unless ``--base-url`` names a running OpenAI-compatible
server, loads the chat service over the configured index (``nenqa ingest`` first), and asks a
fixed subset of ``eval/qa.jsonl`` in the llm mode, streaming, in this process (the code path of
``/v1/chat/completions`` without HTTP). For each question it records:

- the model's raw output (``Answer.draft``) and every sentence of it after alignment and the
  checks (``answer/claims.py``): kept, or removed because it restates no evidence sentence, or
  for a number, name, claim word, endpoint/arm binding, direction, negation or placeholder; and
  how many answers kept a quote the kept sentences did not restate;
- the eval metrics (``eval.report.score_item``, deterministic judge) of the raw output cited by
  alignment ("before the checks") and of the checked answer ("after"), and of the extractive
  answer to the same question;
- latency: first content (the quoted answer, sent before the model is asked), first model
  token, first checked sentence and total, all from the moment the question arrives.

The subset (``SUBSET_RULE``): per category and language, the first 3 answerable items (by id) of
single_fact, comparison and multi_turn and the first 2 of list, no_marker and adversarial
(30 answerable questions), plus every item that must or may be abstained on (14 out-of-scope,
2 injections). Prints a table and writes JSON (default ``benchmarks/out/bench_llm.json``).

    .venv/bin/python benchmarks/bench_llm.py [--limit N] [--ids q009,q019] [--base-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from answer.citations import cite  # noqa: E402
from answer.claims import Aligned  # noqa: E402
from answer.llm import (  # noqa: E402
    LLMAnswerer,
    build_answer_prompt,
    evidence_lines,
    make_chat_model,
)
from eval.client import ChatReply  # noqa: E402
from eval.judges import DeterministicJudge  # noqa: E402
from eval.metrics import QuotedRendering  # noqa: E402
from eval.qa_schema import QAItem, batch_of, load_qa  # noqa: E402
from eval.report import score_item, summarize  # noqa: E402
from nenqa.settings import Settings, get_settings  # noqa: E402
from nenqa.text import detect_language, numbers_in  # noqa: E402
from nenqa.types import Answer, Question, Turn  # noqa: E402
from retriever.search import build_glossary  # noqa: E402

SUBSET_RULE = (
    "first 3 answerable items by id per language of single_fact, comparison, multi_turn; "
    "first 2 per language of list, no_marker, adversarial; every unanswerable item"
)
SUBSET_SIZES = {"single_fact": 3, "comparison": 3, "multi_turn": 3}
DEFAULT_SIZE = 2
WARM_UP = "SPINET研究纳入了多少例患者？"


def default_subset(items: Sequence[QAItem]) -> list[QAItem]:
    """The fixed subset of ``SUBSET_RULE``, in id order."""
    taken: dict[tuple[str, str], int] = {}
    chosen = []
    for item in sorted(items, key=lambda i: i.id):
        if not item.answerable:
            chosen.append(item)
            continue
        group = (item.category, item.lang)
        if taken.get(group, 0) < SUBSET_SIZES.get(item.category, DEFAULT_SIZE):
            taken[group] = taken.get(group, 0) + 1
            chosen.append(item)
    return chosen


def paraphrase_items(path: Path, batches: set[str]) -> list[QAItem]:
    """The answerable paraphrases of the scope set (``eval/scope_questions.jsonl``) of the given
    batches ("1", "2", "10": the number after ``ans`` in their ids, none for the first) as
    evaluation items: questions in words the review does not use, never used to tune the llm
    mode, with their gold references and key facts. Ids become ``q900``... in file order."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line) if line else None
        if not row or row["kind"] != "answerable":
            continue
        if batch_of(row["id"]) not in batches:
            continue
        items.append(
            QAItem(
                id=f"q{900 + len(items)}",
                lang=row["lang"],
                # A follow-up is asked after its conversation, as the clinician asked it.
                category="multi_turn" if row.get("history") else "single_fact",
                question=row["question"],
                history=row.get("history", []),
                gold_answer="; ".join(row["key_facts"])
                + "".join(f"[{ref}]" for ref in row["gold_refs"]),
                gold_refs=row["gold_refs"],
                key_facts=row["key_facts"],
                answerable=True,
                notes=f"scope set {row['id']}",
            )
        )
    return items


def question_of(item: QAItem) -> Question:
    return Question(item.question, tuple(Turn(t.role, t.content) for t in item.history))


def reply_of(answer: Answer, text: str | None = None, ms: float = 0.0) -> ChatReply:
    """What ``/v1/chat`` would have returned, as the evaluation reads it: with the quotes shown
    in translation and their originals, so the judge checks a translated quote against its
    original (as ``nenqa eval`` does) instead of reading English words in Chinese evidence."""
    quotes = [q for c in (*answer.citations, *answer.passages) for q in c.quotes]
    renderings = {(q.text, q.original): None for q in quotes if q.original}
    return ChatReply(
        answer=answer.text if text is None else text,
        abstained=answer.abstained if text is None else not text,
        evidence=[e.as_json() for e in answer.evidence],
        citations=[],
        mode=answer.mode,
        ms=ms,
        renderings=[QuotedRendering(text, original) for text, original in renderings],
    )


# Why a sentence was removed, by the start of ``Aligned.problem`` (answer/claims.py).
VERDICTS = {
    "restates none": "unaligned",
    "numbers not": "wrong_number",
    "names what": "named_term",
    "claims what": "claim_word",
    "holds a placeholder": "placeholder",
    "gives ": "misbound",
    "says better": "direction",
    "drops a negation": "negation",
    "states a negation": "negation",
    "a number alone": "bare_number",
}


def sentence_record(checked: Aligned, shown_numbers: set) -> dict:
    """One draft sentence after alignment and the checks, with why it was removed."""
    missing = numbers_in(checked.claim) - shown_numbers
    verdict = "kept" if checked.supported else "other"
    for start, name in VERDICTS.items():
        if not checked.supported and checked.problem.startswith(start):
            verdict = name
    return {
        "draft": checked.claim,
        "rendered": cite(checked.claim, checked.cited) if checked.cited else checked.claim,
        "verdict": verdict,
        "reason": checked.problem,
        "made_up_numbers": sorted(format(n, "f") for n in missing),
    }


def ask(llm: LLMAnswerer, item: QAItem) -> tuple[Answer, dict[str, float]]:
    """The answer, streamed as a client would receive it, and its latencies in ms."""
    started = time.perf_counter()
    first_sentence = first_content = None
    answer = None
    for piece in llm.stream(question_of(item)):
        if (piece.text or piece.quoted) and first_content is None:
            first_content = (time.perf_counter() - started) * 1000
        if piece.text and first_sentence is None:
            first_sentence = (time.perf_counter() - started) * 1000
        if piece.answer is not None:
            answer = piece.answer
    total = (time.perf_counter() - started) * 1000
    assert answer is not None
    latency = {
        "first_content_ms": round(first_content, 1) if first_content is not None else None,
        "first_token_ms": answer.timings_ms.get("first_token"),
        "first_sentence_ms": round(first_sentence, 1) if first_sentence is not None else None,
        "total_ms": round(total, 1),
    }
    return answer, latency


def analyse(llm: LLMAnswerer, item: QAItem, answer: Answer, judges: dict) -> dict:
    """The checker's decisions on the raw draft, and the metrics before and after them."""
    question = question_of(item)
    retrieval = replace(llm.searcher.prepare(question), evidence=answer.evidence)
    relevance = llm.scorer.relevance(retrieval)
    shown = [q.shown_in(answer.language) for q in llm.extractive.select(relevance)]
    shown_numbers = set().union(*(numbers_in(evidence_lines([q])) for q in shown))
    checked = llm.check_draft(answer.draft, shown) if answer.draft else []
    joiner = "" if answer.language == "zh" else " "
    before_text = joiner.join(cite(c.claim, c.cited) if c.cited else c.claim for c in checked)
    before = score_item(item, reply_of(answer, before_text), judges, judges["deterministic"])
    return {
        "reached_model": bool(answer.draft),
        "model_abstained": bool(answer.draft) and not checked,
        "evidence_sentences": len(shown),
        "evidence_chars": len(evidence_lines(shown)),
        "sentences": [sentence_record(c, shown_numbers) for c in checked],
        "restored_quotes": len(llm.lost_quotes(shown, checked)) if answer.draft else 0,
        "before": before,
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def checker_summary(records: Sequence[dict]) -> dict:
    """How often the model wrote something the checks removed, over the whole run."""
    sentences = [s for r in records for s in r["analysis"]["sentences"]]
    drafted = [r for r in records if r["analysis"]["reached_model"]]
    verdicts = {
        v: sum(s["verdict"] == v for s in sentences)
        for v in ("kept", *dict.fromkeys(VERDICTS.values()), "other")
    }
    return {
        "questions_reaching_model": len(drafted),
        "model_wrote_abstain_token": sum(r["analysis"]["model_abstained"] for r in records),
        "draft_sentences": len(sentences),
        "kept_sentences": verdicts["kept"],
        "removed_sentences": len(sentences) - verdicts["kept"],
        **{f"removed_{v}": n for v, n in verdicts.items() if v != "kept"},
        "wrong_numbers_made_up": sum(len(s["made_up_numbers"]) for s in sentences),
        "answers_with_a_removed_sentence": sum(
            any(s["verdict"] != "kept" for s in r["analysis"]["sentences"]) for r in drafted
        ),
        "answers_with_restored_quotes": sum(r["analysis"]["restored_quotes"] > 0 for r in drafted),
        "answers_in_the_question_language": sum(
            not r["abstained"] and detect_language(r["answer"]) == r["lang"] for r in drafted
        ),
        "answers_not_abstained": sum(not r["abstained"] for r in drafted),
        "answers_emptied_by_the_checks": sum(
            bool(r["analysis"]["sentences"]) and r["abstained"] for r in drafted
        ),
        "evidence_chars_p50": percentile([r["analysis"]["evidence_chars"] for r in drafted], 50),
        "unsupported_sentences_before": _judge_count(records, "before"),
        "unsupported_sentences_after": _judge_count(records, "after"),
        "sentences_with_missing_numbers_before": _missing_numbers(records, "before"),
        "sentences_with_missing_numbers_after": _missing_numbers(records, "after"),
    }


def _sentences(record: dict, when: str) -> list[dict]:
    row = record["analysis"]["before"] if when == "before" else record["row"]
    return row["judges"].get("deterministic", {}).get("sentences", [])


def _judge_count(records: Sequence[dict], when: str) -> int:
    return sum(s["supported"] is False for r in records for s in _sentences(r, when))


def _missing_numbers(records: Sequence[dict], when: str) -> int:
    return sum(bool(s["missing_numbers"]) for r in records for s in _sentences(r, when))


def latency_summary(records: Sequence[dict]) -> dict:
    drafted = [r["latency"] for r in records if r["analysis"]["reached_model"]]
    gated = [r["latency"]["total_ms"] for r in records if not r["analysis"]["reached_model"]]
    summary: dict[str, Any] = {"questions": len(drafted)}
    for key in ("first_content_ms", "first_token_ms", "first_sentence_ms", "total_ms"):
        values = [v[key] for v in drafted if v[key] is not None]
        summary[key] = {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "mean": round(statistics.fmean(values), 1) if values else None,
        }
    summary["abstained_before_the_model_total_ms_p50"] = percentile(gated, 50)
    return summary


@contextmanager
def llm_endpoint(settings: Settings, base_url: str | None, log: Path) -> Iterator[Settings]:
    """Settings whose llm mode uses ``base_url``, or the local model started for the run."""
    from nenqa.models.llm_server import local_llm, local_llm_settings

    if base_url:
        yield local_llm_settings(settings, base_url)
        return
    with local_llm(settings, log_path=log) as (_, local):
        yield local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qa", type=Path, default=ROOT / "eval" / "qa.jsonl")
    parser.add_argument("--ids", help="comma-separated item ids instead of the subset")
    parser.add_argument(
        "--paraphrases",
        help="instead of the eval subset, the scope set's answerable paraphrases of these "
        "batches (comma-separated: 1,2,3), questions never used to tune the llm mode",
    )
    parser.add_argument("--limit", type=int, help="only the first N items of the selection")
    parser.add_argument("--base-url", help="a running OpenAI-compatible server (/v1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_llm.json")
    parser.add_argument(
        "--prompts",
        type=Path,
        help="a folder with a variant of answer_system.md and answer_user.md (default prompts/)",
    )
    args = parser.parse_args(argv)

    items = load_qa(args.qa)
    if args.paraphrases:
        scope_set = ROOT / "eval" / "scope_questions.jsonl"
        items = paraphrase_items(scope_set, set(args.paraphrases.split(",")))
        selected = items
    elif args.ids:
        wanted = args.ids.split(",")
        selected = [i for i in items if i.id in wanted]
    else:
        selected = default_subset(items)
    selected = selected[: args.limit] if args.limit else selected
    by_id = {i.id: i for i in selected}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    judges = {"deterministic": DeterministicJudge(build_glossary(settings))}

    from server.state import load_service

    started = time.perf_counter()
    with llm_endpoint(settings, args.base_url, args.out.with_suffix(".server.log")) as local:
        service = load_service(local)
        llm, extractive = service.answerers["llm"], service.answerers["extractive"]
        assert isinstance(llm, LLMAnswerer)
        if args.prompts:
            llm = LLMAnswerer(
                service.scorer,
                service.references,
                make_chat_model(local),
                top_k=local.answer_top_k,
                prompt=build_answer_prompt(args.prompts),
                records=service.trials,
            )
        warm_started = time.perf_counter()
        llm.answer(Question(WARM_UP))  # loads the weights and the system prompt's tokens
        warm_up_s = time.perf_counter() - warm_started
        records = []
        for n, item in enumerate(selected, start=1):
            answer, latency = ask(llm, item)
            record = {
                "id": item.id,
                "lang": item.lang,
                "category": item.category,
                "answerable": item.answerable,
                "question": item.question,
                "answer": answer.text,
                "draft": answer.draft,
                "abstained": answer.abstained,
                "latency": latency,
                "row": score_item(
                    item, reply_of(answer, ms=latency["total_ms"]), judges, judges["deterministic"]
                ),
                "analysis": analyse(llm, item, answer, judges),
            }
            quoted = extractive.answer(question_of(item))
            record["extractive_row"] = score_item(
                item, reply_of(quoted), judges, judges["deterministic"]
            )
            records.append(record)
            removed = sum(s["verdict"] != "kept" for s in record["analysis"]["sentences"])
            print(
                f"[{n}/{len(selected)}] {item.id} {item.category}/{item.lang} "
                f"{latency['total_ms'] / 1000:.1f} s, removed {removed}: {answer.text[:80]!r}",
                file=sys.stderr,
                flush=True,
            )

    rows = {
        "llm": [r["row"] for r in records],
        "llm_before_checks": [r["analysis"]["before"] for r in records],
        "extractive": [r["extractive_row"] for r in records],
    }
    report = {
        "subset": args.ids
        or (args.paraphrases and f"scope-set paraphrases, batches {args.paraphrases}")
        or SUBSET_RULE,
        "ids": [i.id for i in selected],
        "items": len(selected),
        "answerable": sum(i.answerable for i in selected),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "llm_threads": 2},
        "warm_up_s": round(warm_up_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "metrics": {name: summarize(r, by_id, "deterministic") for name, r in rows.items()},
        "checker": checker_summary(records),
        "latency": latency_summary(records),
        "records": records,
    }
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print_report(report)
    print(f"\nJSON: {args.out}")
    return 0


def print_report(report: dict) -> None:
    metrics = report["metrics"]
    names = list(metrics)
    print(f"\n{report['items']} questions ({report['answerable']} answerable): {report['subset']}")
    print(f"{'metric':<26}" + "".join(f"{n:>20}" for n in names))
    for key in metrics["llm"]:
        cells = "".join(f"{_cell(metrics[n].get(key)):>20}" for n in names)
        print(f"{key:<26}{cells}")
    print("\nthe citation checker on the model's raw output")
    for key, value in report["checker"].items():
        print(f"  {key:<40}{value:>6}")
    latency = report["latency"]
    print(f"\nlatency over {latency['questions']} questions that reached the model (ms)")
    for key in ("first_content_ms", "first_token_ms", "first_sentence_ms", "total_ms"):
        values = latency[key]
        print(f"  {key:<20} p50 {_cell(values['p50'])}  p95 {_cell(values['p95'])}")
    print(f"  abstained before the model: p50 {latency['abstained_before_the_model_total_ms_p50']}")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) and value <= 1.0 else f"{value:.0f}"


if __name__ == "__main__":
    sys.exit(main())
