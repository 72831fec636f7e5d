"""Scoring each reply and the reports built from the scores.

``score_item`` measures one answer (with every judge); ``summarize`` and ``assemble_report``
give ``report.json``'s content; ``write_reports`` writes it with ``report.md`` and
``comparison.png``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eval.answer_text import answered_in_language, parse_answer_citations
from eval.client import ChatReply
from eval.correctness import abstention_scores, fold_for_facts, missing_key_facts, must_abstain
from eval.judges import cohen_kappa
from eval.metrics import (
    AnswerScore,
    RenderingCheck,
    SupportJudge,
    score_answer,
)
from eval.qa_schema import QAItem
from eval.recipe import RECIPE_RETRIEVAL_METRICS

RETRIEVAL_METRICS = ("ref_recall@5", "fact_recall@5", "mrr@10", "ndcg@10")


def score_item(
    item: QAItem,
    reply: ChatReply,
    judges: Mapping[str, SupportJudge],
    rendering_check: RenderingCheck | None = None,
) -> dict:
    """Everything measured on one question, ready for ``report.json``'s ``items``.

    ``rendering_check`` (the deterministic judge) verifies every quote the answer shows in
    translation, whichever judge scores support; without it translations are judged as written.
    """
    cited = sorted(c.ref for c in parse_answer_citations(reply.answer) if c.ref is not None)
    originals = [r.original for r in reply.renderings]
    row: dict[str, Any] = {
        "id": item.id,
        "lang": item.lang,
        "category": item.category,
        "question": item.question,
        "answerable": item.answerable,
        "abstained": reply.abstained,
        "answer": reply.answer,
        "cited_refs": cited,
        "mode": reply.mode,
        "ms": reply.ms,
        "error": reply.error,
        "answered_in_language": not reply.error
        and answered_in_language(reply.answer, item.lang, originals),
        "judges": {},
    }
    if item.answerable:
        text = "" if reply.abstained else reply.answer
        row["missing_key_facts"] = missing_key_facts(text, item.key_facts)
        row["key_fact_share"] = 1 - len(row["missing_key_facts"]) / len(item.key_facts)
        if item.gold_refs:
            row["gold_reference_hit"] = not reply.abstained and bool(
                set(cited) & set(item.gold_refs)
            )
        found_refs = {int(r) for e in reply.evidence for r in e.get("refs", ())}
        if item.gold_refs:
            row["evidence_ref_recall"] = len(found_refs & set(item.gold_refs)) / len(item.gold_refs)
        # Evidence shown in translation counts in both its languages.
        evidence_text = fold_for_facts(
            " ".join(f"{e.get('text', '')} {e.get('original') or ''}" for e in reply.evidence)
        )
        row["evidence_fact_recall"] = sum(
            fold_for_facts(f) in evidence_text for f in item.key_facts
        ) / len(item.key_facts)
    if not reply.abstained and not reply.error:
        for name, judge in judges.items():
            score = score_answer(
                reply.answer, reply.evidence, judge, reply.renderings, rendering_check
            )
            row["judges"][name] = _answer_row(score)
    return row


def _answer_row(score: AnswerScore) -> dict:
    return {
        "citation_recall": score.citation_recall,
        "citation_precision": score.citation_precision,
        "faithfulness": score.faithfulness,
        "numeric_fidelity": score.numeric_fidelity,
        "citations": score.citations,
        "invalid_citations": score.invalid_citations,
        "judge_invalid": score.judge_invalid,
        "rendering_fidelity": score.rendering_fidelity,
        "renderings_checked": score.renderings_checked,
        "renderings_faithful": score.renderings_faithful,
        "sentences": [
            {
                "text": s.text,
                "citations": s.citations,
                "invalid": s.invalid,
                "judged": s.judged,
                "supported": s.supported,
                "reason": s.reason,
                "needed": s.needed,
                "numbers": s.numbers,
                "missing_numbers": s.missing_numbers,
                "claims_invalid": s.claims_invalid,
                "claims": [
                    {"claim": c.claim, "supported": c.supported, "reason": c.reason}
                    for c in s.claims
                ],
                "original": s.original,
                "translation_problems": s.translation_problems,
            }
            for s in score.sentences
        ],
    }


def summarize(rows: Sequence[dict], items: Mapping[str, QAItem], judge: str) -> dict:
    """Mean metrics over ``rows`` with the answer scores of ``judge`` (``None``: undefined)."""
    scored = [r["judges"][judge] for r in rows if judge in r["judges"]]
    answerable = [r for r in rows if r["answerable"]]
    citations = sum(s["citations"] for s in scored)
    abstention = abstention_scores([(items[r["id"]], r["abstained"]) for r in rows])
    summary: dict[str, float | None] = {
        "citation_recall": _mean(s["citation_recall"] for s in scored),
        "citation_precision": _mean(s["citation_precision"] for s in scored),
        "invalid_citation_rate": (
            sum(s["invalid_citations"] for s in scored) / citations if citations else None
        ),
        "faithfulness": _mean(s["faithfulness"] for s in scored),
        "numeric_fidelity": _mean(s["numeric_fidelity"] for s in scored),
        "key_fact_correctness": _mean(not r["missing_key_facts"] for r in answerable),
        "key_fact_recall": _mean(r["key_fact_share"] for r in answerable),
        "gold_reference_hit_rate": _mean(r.get("gold_reference_hit") for r in answerable),
        "answered_in_language": _mean(r.get("answered_in_language") for r in rows),
        "rendering_fidelity": _mean(s.get("rendering_fidelity") for s in scored),
        "abstention_precision": abstention.precision,
        "abstention_recall": abstention.recall,
        "evidence_ref_recall": _mean(r.get("evidence_ref_recall") for r in answerable),
        "evidence_fact_recall": _mean(r.get("evidence_fact_recall") for r in answerable),
    }
    return {k: None if v is None else round(float(v), 4) for k, v in summary.items()}


def _mean(values: Iterable[float | bool | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def judged_sentence_pairs(
    rows: Sequence[dict], first: str, second: str
) -> Iterator[tuple[dict, dict, dict]]:
    """``(row, first's sentence, second's sentence)`` for every answer sentence both judges
    scored (the same sentences, in order)."""
    for row in rows:
        if first not in row["judges"] or second not in row["judges"]:
            continue
        yield from (
            (row, x, y)
            for x, y in zip(
                row["judges"][first]["sentences"], row["judges"][second]["sentences"], strict=True
            )
        )


def judge_agreement(rows: Sequence[dict], first: str, second: str) -> dict:
    """Cohen's kappa and raw agreement of two judges on the same sentence-support questions."""
    a: list[bool] = []
    b: list[bool] = []
    for _, x, y in judged_sentence_pairs(rows, first, second):
        if x["judged"] and y["judged"] and None not in (x["supported"], y["supported"]):
            a.append(bool(x["supported"]))
            b.append(bool(y["supported"]))
    agreement = cohen_kappa(a, b)
    return {
        "judges": [first, second],
        "pairs": agreement.pairs,
        "raw_agreement": round(agreement.raw, 4),
        "cohen_kappa": round(agreement.kappa, 4),
    }


def failures(rows: Sequence[dict], items: Mapping[str, QAItem], judge: str) -> list[dict]:
    """Every item that misses something, with what it misses, in words."""
    found = []
    for row in rows:
        item = items[row["id"]]
        problems: list[str] = []
        if row["error"]:
            problems.append(f"request failed: {row['error']}")
        elif row.get("answered_in_language") is False:
            problems.append(f"not answered in the question's language ({item.lang})")
        if row["abstained"] and item.answerable:
            problems.append("abstained on an answerable question")
        if must_abstain(item) and not row["abstained"]:
            problems.append("answered an out-of-scope question instead of abstaining")
        if item.answerable and row["missing_key_facts"] and not row["abstained"]:
            problems.append(f"missing key facts: {', '.join(row['missing_key_facts'])}")
        if row.get("gold_reference_hit") is False and not row["abstained"]:
            gold, cited = item.gold_refs, row["cited_refs"]
            problems.append(f"cites none of the gold references {gold} (cited {cited})")
        for sentence in row["judges"].get(judge, {}).get("sentences", []):
            problems.extend(_sentence_problems(sentence))
        if problems:
            found.append(
                {"id": item.id, "category": item.category, "lang": item.lang, "problems": problems}
            )
    return found


def _sentence_problems(sentence: dict) -> list[str]:
    text = sentence["text"][:80]
    problems = [f"invalid citation {reason}" for reason in sentence["invalid"].values()]
    if sentence["supported"] is False:
        problems.append(f"not supported by its citations ({sentence['reason']}): {text}")
    elif sentence["supported"] is None:
        problems.append(f"judge output invalid for: {text}")
    problems += [
        f"[{key}] not needed in: {text}" for key, v in sentence["needed"].items() if v is False
    ]
    if sentence["missing_numbers"]:
        missing = ", ".join(sentence["missing_numbers"])
        problems.append(f"numbers not in the cited evidence: {missing} in: {text}")
    problems += [
        f"claim not supported ({c['reason']}): {c['claim'][:80]}"
        for c in sentence["claims"]
        if c["supported"] is False
    ]
    return problems


def assemble_report(
    rows: Sequence[dict],
    items: Mapping[str, QAItem],
    primary: str,
    judges: Mapping[str, SupportJudge],
    retrieval: dict | None = None,
    recipe: dict | None = None,
) -> dict:
    """``report.json``'s content: the metrics of ``primary`` on top, then the details."""
    summary = summarize(rows, items, primary)
    report: dict[str, Any] = {k: v for k, v in summary.items() if v is not None}
    if retrieval is not None:
        ours = retrieval["summary"]["nenqa"]
        report.update({k: ours[k] for k in RETRIEVAL_METRICS if k in ours})
    report["run"] = _run_info(rows, list(judges), primary)
    report["undefined_metrics"] = [k for k, v in summary.items() if v is None]
    report["by_category"] = _grouped(rows, items, primary, "category")
    report["by_language"] = _grouped(rows, items, primary, "lang")
    report["judges"] = {name: summarize(rows, items, name) for name in judges}
    if "llm" in judges:
        report["judges"]["agreement"] = judge_agreement(rows, "deterministic", "llm")
        report["judges"]["llm_invalid_outputs"] = [
            {"prompt": o.prompt, "output": o.output}
            for o in judges["llm"].invalid_outputs  # type: ignore[attr-defined]
        ]
    if retrieval is not None:
        report["retrieval"] = retrieval["summary"]
    if recipe is not None:
        report["tutorial_recipe"] = recipe
    report["failures"] = failures(rows, items, primary)
    report["items"] = list(rows)
    return report


def _grouped(rows: Sequence[dict], items: Mapping[str, QAItem], judge: str, key: str) -> dict:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return {
        name: {"items": len(group), **summarize(group, items, judge)}
        for name, group in sorted(groups.items())
    }


def _run_info(rows: Sequence[dict], judges: list[str], primary: str) -> dict:
    latencies = [r["ms"] for r in rows if not r["error"]]
    scored = [r["judges"][primary] for r in rows if primary in r["judges"]]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "items": len(rows),
        "modes_answered": sorted({r["mode"] for r in rows} - {""}),
        "judge": primary,
        "judges": judges,
        "answered": len(scored),
        "abstained": sum(r["abstained"] for r in rows),
        "errors": sum(bool(r["error"]) for r in rows),
        "citations": sum(s["citations"] for s in scored),
        "invalid_citations": sum(s["invalid_citations"] for s in scored),
        "judge_invalid_outputs": sum(s["judge_invalid"] for s in scored),
        "renderings_checked": sum(s.get("renderings_checked", 0) for s in scored),
        "renderings_unfaithful": sum(
            s.get("renderings_checked", 0) - s.get("renderings_faithful", 0) for s in scored
        ),
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
    }


def write_reports(report: dict, out_dir: Path) -> None:
    """``report.json``, ``report.md`` and ``comparison.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    plot_comparison(report, out_dir / "comparison.png")


_TABLE_COLUMNS = (
    ("citation_recall", "cit. recall"),
    ("citation_precision", "cit. precision"),
    ("invalid_citation_rate", "invalid cit."),
    ("faithfulness", "faithfulness"),
    ("numeric_fidelity", "numbers"),
    ("key_fact_correctness", "key facts"),
    ("gold_reference_hit_rate", "gold ref cited"),
    ("answered_in_language", "in question's lang"),
    ("rendering_fidelity", "translations faithful"),
    ("abstention_precision", "abst. precision"),
    ("abstention_recall", "abst. recall"),
)


def render_markdown(report: dict) -> str:
    """The human-readable report: overall, per category, per language, recipe, failures."""
    run = report["run"]
    lines = [
        "# nenqa evaluation",
        "",
        f"{run['items']} questions from `{run['qa']}`, asked {run['target']} "
        f"(mode: {run['mode']}); judge: {run['judge']}; {run['answered']} answered, "
        f"{run['abstained']} abstained, {run['errors']} failed requests; "
        f"{run['seconds']['total']} s in all ({_phases(run['seconds'])}), "
        f"p50 {run['latency_ms_p50']} ms per answer.",
        "",
        "## Overall",
        "",
        "| metric | value |",
        "|---|---:|",
    ]
    for key, value in report.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            lines.append(f"| {key} | {value:.3f} |")
    for title, key in (("By category", "by_category"), ("By language", "by_language")):
        lines += ["", f"## {title}", "", _group_table(report[key])]
    if "agreement" in report.get("judges", {}):
        a = report["judges"]["agreement"]
        lines += [
            "",
            "## Judge agreement",
            "",
            f"{a['judges'][0]} vs {a['judges'][1]} on {a['pairs']} sentence-support decisions: "
            f"raw agreement {a['raw_agreement']:.3f}, Cohen's kappa {a['cohen_kappa']:.3f}.",
        ]
    if "tutorial_recipe" in report:
        lines += ["", "## Against the tutorial recipe", "", _recipe_table(report)]
    lines += ["", f"## Items that miss something ({len(report['failures'])})", ""]
    for failure in report["failures"]:
        lines.append(f"- **{failure['id']}** ({failure['category']}, {failure['lang']})")
        lines += [f"  - {p}" for p in failure["problems"]]
    return "\n".join(lines) + "\n"


def _phases(seconds: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value} s" for name, value in seconds.items() if name != "total")


def _group_table(groups: Mapping[str, dict]) -> str:
    header = "| group | items | " + " | ".join(label for _, label in _TABLE_COLUMNS) + " |"
    rule = "|---|---:|" + "---:|" * len(_TABLE_COLUMNS)
    rows = [
        f"| {name} | {values['items']} | "
        + " | ".join(_cell(values.get(key)) for key, _ in _TABLE_COLUMNS)
        + " |"
        for name, values in groups.items()
    ]
    return "\n".join([header, rule, *rows])


def _recipe_table(report: dict) -> str:
    recipe = report["tutorial_recipe"]
    lines = ["| metric | nenqa | tutorial recipe |", "|---|---:|---:|"]
    for key, _ in (*_TABLE_COLUMNS, ("key_fact_recall", "")):
        lines.append(f"| {key} | {_cell(report.get(key))} | {_cell(recipe.get(key))} |")
    for key in RECIPE_RETRIEVAL_METRICS:
        ours = recipe.get("retrieval_nenqa", {}).get(key)
        theirs = recipe.get("retrieval", {}).get(key)
        lines.append(f"| retrieval {key} | {_cell(ours)} | {_cell(theirs)} |")
    lines.append("")
    lines.append(
        "The recipe: RecursiveCharacterTextSplitter(1000, 200) over the raw review, dense top 4 "
        "with the same embedder, answered by the same extractive construction."
    )
    return "\n".join(lines)


def _cell(value: object) -> str:
    return "–" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]


_CHART_METRICS = (
    ("retrieval", "ref_recall@4", "gold refs\nin top 4"),
    ("retrieval", "fact_recall@4", "key facts\nin top 4"),
    ("retrieval", "mrr@10", "MRR@10"),
    ("answer", "citation_recall", "citation\nrecall"),
    ("answer", "citation_precision", "citation\nprecision"),
    ("answer", "faithfulness", "faithful-\nness"),
    ("answer", "key_fact_correctness", "key facts\ncorrect"),
    ("answer", "gold_reference_hit_rate", "gold ref\ncited"),
    ("answer", "abstention_recall", "abstention\nrecall"),
)


def plot_comparison(report: dict, path: Path) -> None:
    """A grouped bar chart of nenqa against the tutorial recipe (nenqa alone without one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipe = report.get("tutorial_recipe")
    labels, ours, theirs = [], [], []
    for kind, key, label in _CHART_METRICS:
        if kind == "retrieval":
            if not recipe or "retrieval" not in recipe:
                continue
            mine, other = recipe["retrieval_nenqa"].get(key), recipe["retrieval"].get(key)
        else:
            mine, other = report.get(key), (recipe or {}).get(key)
        if mine is None:
            continue
        labels.append(label)
        ours.append(mine)
        theirs.append(other or 0.0)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(labels) + 2), 4.2))
    positions = list(range(len(labels)))
    width = 0.38 if recipe else 0.6
    axes.bar([p - width / 2 if recipe else p for p in positions], ours, width, label="nenqa")
    if recipe:
        axes.bar(
            [p + width / 2 for p in positions],
            theirs,
            width,
            label="tutorial recipe (1000/200, top 4)",
        )
    axes.set_xticks(positions, labels, fontsize=8)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("score (0-1)")
    run = report["run"]
    axes.set_title(
        f"nenqa eval: {run['items']} questions, mode {run['mode']}, judge {run['judge']}"
    )
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
