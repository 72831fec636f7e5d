"""Answer quality on the evaluation set: key facts present, gold references cited, abstentions.

Reads ``eval/qa.jsonl`` lines itself (``server`` does not import ``eval``). The three numbers:

- ``fact_rate``: share of answerable questions whose answer contains every key fact
  (compared with width, case, spaces and citation markers folded away);
- ``gold_ref_rate``: share of answerable questions with gold references whose answer cites at
  least one of them;
- ``out_of_scope_abstention_rate``: share of out-of-scope questions answered with an abstention
  and no citation at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval.correctness import missing_key_facts
from nenqa.types import Answer, Question, Turn


@dataclass(frozen=True)
class EvalQuestion:
    """The fields of an ``eval/qa.jsonl`` line that answer scoring needs."""

    id: str
    lang: str
    category: str
    question: str
    history: tuple[Turn, ...]
    gold_refs: tuple[int, ...]
    key_facts: tuple[str, ...]
    answerable: bool


def load_eval_questions(path: Path | str) -> list[EvalQuestion]:
    """The evaluation questions of a JSONL file (validated by ``eval/qa_schema.py`` elsewhere)."""
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        items.append(
            EvalQuestion(
                id=raw["id"],
                lang=raw["lang"],
                category=raw["category"],
                question=raw["question"],
                history=tuple(Turn(t["role"], t["content"]) for t in raw.get("history", [])),
                gold_refs=tuple(raw.get("gold_refs", [])),
                key_facts=tuple(raw.get("key_facts", [])),
                answerable=bool(raw["answerable"]),
            )
        )
    return items


def missing_facts(answer: Answer, facts: Sequence[str]) -> list[str]:
    """The key facts the answer text does not contain."""
    return missing_key_facts(answer.text, facts)


@dataclass
class QualityReport:
    """The three answer-quality numbers and the questions that missed them."""

    answerable: int = 0
    with_all_facts: int = 0
    with_gold_refs: int = 0
    citing_gold_ref: int = 0
    out_of_scope: int = 0
    out_of_scope_abstained: int = 0
    answerable_abstained: int = 0
    misses: list[dict] = field(default_factory=list)

    @property
    def fact_rate(self) -> float:
        return self.with_all_facts / self.answerable if self.answerable else 0.0

    @property
    def gold_ref_rate(self) -> float:
        return self.citing_gold_ref / self.with_gold_refs if self.with_gold_refs else 0.0

    @property
    def out_of_scope_abstention_rate(self) -> float:
        return self.out_of_scope_abstained / self.out_of_scope if self.out_of_scope else 0.0

    def summary(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "misses"}
        data.update(
            fact_rate=round(self.fact_rate, 4),
            gold_ref_rate=round(self.gold_ref_rate, 4),
            out_of_scope_abstention_rate=round(self.out_of_scope_abstention_rate, 4),
        )
        return data


def score_answers(
    items: Sequence[EvalQuestion], answer: Callable[[Question], Answer]
) -> QualityReport:
    """Answer every question with ``answer`` and count what the module docstring describes."""
    report = QualityReport()
    for item in items:
        result = answer(Question(item.question, item.history))
        cited = {c.ref for c in result.citations}
        miss: dict = {}
        if item.category == "out_of_scope":
            report.out_of_scope += 1
            if result.abstained and not cited and not result.passages:
                report.out_of_scope_abstained += 1
            else:
                miss["answered_out_of_scope"] = True
        if item.answerable:
            report.answerable += 1
            report.answerable_abstained += result.abstained
            missing = missing_facts(result, item.key_facts)
            if missing:
                miss["missing_facts"] = missing
            else:
                report.with_all_facts += 1
            if item.gold_refs:
                report.with_gold_refs += 1
                if cited & set(item.gold_refs):
                    report.citing_gold_ref += 1
                else:
                    miss["gold_refs"] = list(item.gold_refs)
                    miss["cited"] = sorted(cited)
        if miss:
            report.misses.append(
                {"id": item.id, "question": item.question, "abstained": result.abstained, **miss}
            )
    return report
