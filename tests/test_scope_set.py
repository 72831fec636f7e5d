"""The held-out scope set (eval/scope_questions.jsonl): well formed, halves fixed, facts true."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = (ROOT / "eval" / "scope_questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


@pytest.fixture(scope="module")
def corpus() -> str:
    review = "nen-drug-trials-review-2022"
    names = (f"{review}.md", f"{review}.en.jsonl", "trials.jsonl")
    return "\n".join((DATA / name).read_text(encoding="utf-8") for name in names)


def test_each_question_keeps_the_half_its_id_hashes_to(rows):
    for row in rows:
        expected = "tune" if hashlib.sha256(row["id"].encode()).digest()[0] % 2 == 0 else "test"
        assert row["split"] == expected, row["id"]


def test_the_set_holds_enough_questions_of_each_kind_in_both_languages(rows):
    assert len({r["id"] for r in rows}) == len(rows)
    counts = Counter((r["kind"], r["lang"]) for r in rows)
    assert counts["out_of_scope", "en"] + counts["out_of_scope", "zh"] >= 80
    assert counts["answerable", "en"] + counts["answerable", "zh"] >= 40
    assert min(counts.values()) >= 20
    assert {r["split"] for r in rows} == {"tune", "test"}


def test_out_of_scope_questions_name_what_the_review_never_mentions(rows, corpus):
    folded = corpus.lower()
    present = {
        (r["id"], term)
        for r in rows
        if r["kind"] == "out_of_scope"
        for term in r["uncovered"]
        if term.lower() in folded
    }
    # Renal cell carcinoma is in the review (belzutifan), never with sunitinib: the one exception.
    assert present == {("oos-en-13", "renal cell carcinoma")}


def test_answerable_paraphrases_have_key_facts_the_review_states(rows, corpus):
    for row in (r for r in rows if r["kind"] == "answerable"):
        assert row["key_facts"], row["id"]
        for fact in row["key_facts"]:
            assert fact in corpus, (row["id"], fact)
