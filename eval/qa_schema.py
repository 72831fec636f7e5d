"""The evaluation set's schema: one ``QAItem`` per line of ``eval/qa.jsonl``, strictly validated.

``gold_refs`` are the review's own reference numbers (1-50) that the review attaches to the
statement the answer rests on; trials the review discusses without a marker have none.
``key_facts`` are strings exactly as the review prints them (after page-break repair): a
Chinese item's in the review's Chinese, an English item's in the review's English rendering of
the same fact (``data/nen-drug-trials-review-2022.en.jsonl``; numbers as printed), so each is
looked for in an answer in its own language. Citations written in
``gold_answer`` (``[7]``, ``[9-10]``, ``[4,5]``) must be exactly the ``gold_refs``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REFERENCE_COUNT = 50
Language = Literal["zh", "en"]
Category = Literal[
    "single_fact",
    "comparison",
    "list",
    "no_marker",
    "multi_turn",
    "out_of_scope",
    "adversarial",
]

_CITATION = re.compile(r"\[(\d+(?:\s*[-–,，]\s*\d+)*)\]")


class QASetError(ValueError):
    """A line of the evaluation set is malformed; the message names the file and line."""


class HistoryTurn(BaseModel):
    """One earlier turn of a multi-turn conversation."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


class QAItem(BaseModel):
    """One evaluation question with its gold answer, references and key facts."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    id: str = Field(pattern=r"^q\d{3}$")
    lang: Language
    category: Category
    question: str = Field(min_length=1)
    history: list[HistoryTurn] = Field(default_factory=list)
    gold_answer: str = Field(min_length=1)
    gold_refs: list[int] = Field(default_factory=list)
    key_facts: list[str] = Field(default_factory=list)
    gold_sections: list[str] = Field(default_factory=list)
    answerable: bool
    notes: str = ""

    @model_validator(mode="after")
    def _check_consistency(self) -> QAItem:
        problems = [
            *self._history_problems(),
            *self._reference_problems(),
            *self._answerability_problems(),
        ]
        if any(not fact.strip() for fact in self.key_facts):
            problems.append("key_facts must not contain empty strings")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _history_problems(self) -> list[str]:
        if self.category != "multi_turn":
            return ["history must be empty unless category is multi_turn"] if self.history else []
        if not self.history:
            return ["a multi_turn item needs a non-empty history"]
        roles = [turn.role for turn in self.history]
        expected = ["user", "assistant"] * (len(roles) // 2 + 1)
        if roles != expected[: len(roles)] or roles[-1] != "assistant":
            return ["history must alternate user/assistant, starting with user, ending assistant"]
        return []

    def _reference_problems(self) -> list[str]:
        problems = []
        out_of_range = [n for n in self.gold_refs if not 1 <= n <= REFERENCE_COUNT]
        if out_of_range:
            problems.append(f"gold_refs {out_of_range} outside 1..{REFERENCE_COUNT}")
        if len(set(self.gold_refs)) != len(self.gold_refs):
            problems.append("gold_refs has duplicates")
        cited = cited_references(self.gold_answer)
        if cited != set(self.gold_refs):
            problems.append(
                f"gold_answer cites {sorted(cited)} but gold_refs is {sorted(self.gold_refs)}"
            )
        if self.category == "no_marker" and self.gold_refs:
            problems.append("a no_marker item must have gold_refs []")
        return problems

    def _answerability_problems(self) -> list[str]:
        problems = []
        if self.category == "out_of_scope":
            if self.answerable:
                problems.append("an out_of_scope item must have answerable false")
            if self.gold_refs or self.key_facts:
                problems.append("an out_of_scope item must have no gold_refs and no key_facts")
        elif not self.answerable and self.category != "adversarial":
            problems.append("only out_of_scope or adversarial items may be unanswerable")
        if self.answerable and not self.key_facts:
            problems.append("an answerable item needs at least one key fact")
        return problems


def cited_references(text: str) -> set[int]:
    """Reference numbers cited in ``text`` as ``[n]``, ``[n-m]`` or ``[n,m]`` (ranges expanded)."""
    numbers: set[int] = set()
    for group in _CITATION.findall(text):
        for part in re.split(r"[,，]", group):
            bounds = [int(x) for x in re.split(r"[-–]", part) if x.strip()]
            numbers.update(range(bounds[0], bounds[-1] + 1))
    return numbers


def load_qa(path: Path | str) -> list[QAItem]:
    """Read and validate every line of an evaluation-set JSONL file.

    Raises ``QASetError`` naming ``path:line`` for an empty line, invalid JSON, a field that
    breaks the schema, or a repeated id; the whole file is refused, never partly loaded.
    """
    path = Path(path)
    items: list[QAItem] = []
    first_line_of: dict[str, int] = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path}:{line_number}"
        if not line.strip():
            raise QASetError(f"{where}: empty line; every line must be one JSON object")
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as error:
            raise QASetError(f"{where}: not valid JSON ({error.msg})") from error
        try:
            item = QAItem.model_validate(raw)
        except ValidationError as error:
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}"
                for e in error.errors()
            )
            raise QASetError(f"{where}: {details}") from error
        if item.id in first_line_of:
            raise QASetError(
                f"{where}: id {item.id!r} already used on line {first_line_of[item.id]}"
            )
        first_line_of[item.id] = line_number
        items.append(item)
    return items


def batch_of(scope_id: str) -> str:
    """The batch of a scope-set item (``eval/scope_questions.jsonl``): the number after
    ``ans`` / ``oos`` in its id ("ans10-zh-01": "10"), "1" for the first batch's ("ans-zh-01").
    Each batch was written and committed before anything was measured on it."""
    match = re.match(r"^[a-z]+(\d*)-", scope_id)
    return match.group(1) or "1" if match else "1"


def half_of(item_id: str) -> str:
    """``tune`` or ``test``: the fixed half an item's id hashes to, independent of any result
    (the rule the tuning scripts and the scope set's ``split`` column use)."""
    return "tune" if hashlib.sha256(item_id.encode()).digest()[0] % 2 == 0 else "test"
