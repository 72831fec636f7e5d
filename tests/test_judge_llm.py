"""``benchmarks/judge_llm.py``: recorded answers judged again by the LLM judge, resumably.

The judge model is the scripted OpenAI-compatible server of ``tests/scripted_llm.py`` (a process
on loopback), so the judge's prompts, HTTP call and strict parsing are the real ones.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.judge_llm import CachedLLMJudge, judge_records, judged_report, recorded_reply
from eval.qa_schema import QAItem
from eval.run import deterministic_judge
from nenqa.settings import Settings
from tests.test_eval_metrics import EVIDENCE, SPINET_QUOTE


def _claims(*claims: str) -> str:
    return json.dumps({"claims": list(claims)}, ensure_ascii=False)


def _verdict(word: str) -> str:
    return json.dumps({"verdict": word, "reason": "scripted"})


# The first rule whose text occurs in the prompt answers: SPINET's quote is one supported claim;
# the answer that gives the lanreotide arm 15.0 months is one claim the judge refuses.
JUDGE_SCRIPT = [
    {"when": "Sentence:\nSPINET", "reply": _claims("兰瑞肽组的TTF为13.3个月")},
    {"when": "Sentence:\n兰瑞肽组的TTF为15.0", "reply": _claims("兰瑞肽组的TTF为15.0个月")},
    {"when": "15.0", "reply": _verdict("not_supported")},
    {"when": "", "reply": _verdict("supported")},
]

ITEMS = {
    "q001": QAItem(
        id="q001",
        lang="zh",
        category="single_fact",
        question="SPINET研究中兰瑞肽组的TTF是多少？",
        gold_answer="13.3个月[7]",
        gold_refs=[7],
        key_facts=["13.3个月"],
        answerable=True,
    ),
    "q002": QAItem(
        id="q002",
        lang="zh",
        category="single_fact",
        question="SPINET研究中兰瑞肽组的TTF是多少个月？",
        gold_answer="13.3个月[7]",
        gold_refs=[7],
        key_facts=["13.3个月"],
        answerable=True,
    ),
}
RECORDS = [
    {"id": "q001", "answer": SPINET_QUOTE, "abstained": False, "latency": {"total_ms": 1.0}},
    # Unsupported by its cited evidence: SPINET's lanreotide arm had 13.3 months.
    {"id": "q002", "answer": "兰瑞肽组的TTF为15.0个月[7]。", "abstained": False},
]


@pytest.fixture
def scripted_judge(tmp_path):
    from tests.scripted_llm import ScriptedLLM

    server = ScriptedLLM(JUDGE_SCRIPT, tmp_path)
    yield server
    server.stop()


def _judge_all(base_url: str, cache, claim_split: str = "llm"):
    judge = CachedLLMJudge(
        base_url=base_url, model="scripted-judge", cache_path=cache, claim_split=claim_split
    )
    deterministic = deterministic_judge(Settings())
    replies = {r["id"]: recorded_reply(r, EVIDENCE, []) for r in RECORDS}
    judges = {"deterministic": deterministic, "llm": judge}
    rows = judge_records(RECORDS, replies, ITEMS, judges, deterministic)
    return rows, judged_report(rows, ITEMS, judge)


def test_a_recorded_answer_with_an_unsupported_claim_is_scored_unfaithful(scripted_judge, tmp_path):
    rows, report = _judge_all(scripted_judge.base_url, tmp_path / "cache.jsonl")

    faithfulness = {r["id"]: r["judges"]["llm"]["faithfulness"] for r in rows}
    assert faithfulness == {"q001": 1.0, "q002": 0.0}
    assert report["metrics"]["llm"]["faithfulness"] == 0.5
    assert report["metrics"]["deterministic"]["faithfulness"] == 0.5
    assert report["sentence_agreement"]["cohen_kappa"] == 1.0
    assert report["invalid_outputs"] == 0
    assert report["calls_this_run"] == len(scripted_judge.requests())


def test_a_stopped_run_continues_from_the_cache_without_asking_again(scripted_judge, tmp_path):
    cache = tmp_path / "cache.jsonl"
    _, first = _judge_all(scripted_judge.base_url, cache)
    asked = len(scripted_judge.requests())
    scripted_judge.stop()

    _, again = _judge_all(scripted_judge.base_url, cache)

    assert again["calls_this_run"] == 0
    assert again["outputs_from_cache"] == asked == first["calls_this_run"]
    assert again["calls_behind_this_report"] == asked
    assert again["calls_behind_this_report_untimed"] == 0
    assert again["metrics"] == first["metrics"]


def test_deterministic_claims_are_judged_claim_by_claim_by_both_judges(scripted_judge, tmp_path):
    rows, report = _judge_all(scripted_judge.base_url, tmp_path / "cache.jsonl", "deterministic")

    assert not any("Sentence:" in r["messages"][-1]["content"] for r in scripted_judge.requests())
    assert report["claim_split"] == "deterministic"
    assert report["claims"]["llm"] == report["claims"]["deterministic"]
    assert report["claim_agreement"]["pairs"] == report["claims"]["llm"]
    assert rows[1]["judges"]["llm"]["faithfulness"] == 0.0


def test_splitting_every_sentence_first_asks_no_verdict_and_changes_no_score(
    scripted_judge, tmp_path
):
    _, one_pass = _judge_all(scripted_judge.base_url, tmp_path / "one.jsonl")
    asked_before = len(scripted_judge.requests())
    judge = CachedLLMJudge(
        base_url=scripted_judge.base_url, model="scripted-judge", cache_path=tmp_path / "two.jsonl"
    )
    deterministic = deterministic_judge(Settings())
    replies = {r["id"]: recorded_reply(r, EVIDENCE, []) for r in RECORDS}

    judge.splitting_only = True
    judge_records(RECORDS, replies, ITEMS, {"llm": judge}, deterministic)
    split_prompts = [r["messages"][-1]["content"] for r in scripted_judge.requests()[asked_before:]]
    judge.splitting_only = False
    judges = {"deterministic": deterministic, "llm": judge}
    two_passes = judged_report(
        judge_records(RECORDS, replies, ITEMS, judges, deterministic), ITEMS, judge
    )

    assert split_prompts and all(p.startswith("Sentence:") for p in split_prompts)
    assert two_passes["metrics"] == one_pass["metrics"]
    assert two_passes["calls_this_run"] == one_pass["calls_this_run"]
