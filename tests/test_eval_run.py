"""``nenqa eval`` end to end: reports written, thresholds enforced, judges pluggable.

The offline run goes through the CLI in a subprocess on a few items of the real set (the whole
set is CI's job: ``nenqa eval --check``); the LLM judge is exercised against a scripted
OpenAI-compatible server process on loopback (``tests/scripted_llm.py``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import httpx
import pytest

from eval.check_thresholds import check_thresholds, load_thresholds
from eval.check_thresholds import main as check_main
from eval.client import ChatClient, ChatReply
from eval.judges import JudgeUnavailableError, LLMJudge
from eval.metrics import score_answer
from eval.report import assemble_report, failures, render_markdown, score_item
from eval.run import deterministic_judge, run_eval
from nenqa.settings import PROJECT_ROOT, Settings
from tests.test_eval_metrics import (
    EVIDENCE,
    EVIDENCE_EN,
    FORTE_QUOTE,
    SPINET,
    SPINET_EN,
    SPINET_QUOTE,
    translated_answer,
)

QA_PATH = PROJECT_ROOT / "eval" / "qa.jsonl"
THRESHOLDS = PROJECT_ROOT / "eval" / "thresholds.toml"
# One of each kind of question a clinician asks: a fact, a comparison, a follow-up, a trial
# without a reference number, an out-of-scope question.
FEW_IDS = ("q001", "q005", "q095", "q032", "q120")
METRIC_KEYS = {
    "citation_recall",
    "citation_precision",
    "invalid_citation_rate",
    "faithfulness",
    "numeric_fidelity",
    "key_fact_correctness",
    "abstention_precision",
    "abstention_recall",
    "ref_recall@5",
    "mrr@10",
    "ndcg@10",
}


def _few_items(path):
    lines = [
        line
        for line in QA_PATH.read_text(encoding="utf-8").splitlines()
        if json.loads(line)["id"] in FEW_IDS
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _nenqa_eval(args: list[str], index_dir, work):
    """``nenqa eval ARGS --check`` on a few items in a subprocess: (process result, out dir).

    The thresholds are the issue's faithfulness targets: they hold answer by answer, so they
    hold on a few items too (the project's thresholds, set on the whole set, are CI's).
    """
    qa = _few_items(work / "qa.jsonl")
    out = work / "out"
    thresholds = work / "thresholds.toml"
    thresholds.write_text(
        "[min]\ncitation_precision = 0.95\ncitation_recall = 0.90\nfaithfulness = 0.95\n"
        "numeric_fidelity = 1.0\nabstention_recall = 1.0\n[max]\ninvalid_citation_rate = 0.0\n"
    )
    command = ["eval", *args, "--qa", str(qa), "--out", str(out), "--check"]
    command += ["--thresholds", str(thresholds)]
    env = {**os.environ, "NENQA_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=900,
    )
    return result, out


@pytest.fixture(scope="module")
def offline_run(indexed_settings, tmp_path_factory):
    """``nenqa eval --check`` on a few items, in-process, offline."""
    return _nenqa_eval([], indexed_settings.index_dir, tmp_path_factory.mktemp("eval"))


@pytest.mark.slow
def test_offline_eval_writes_the_three_reports_and_meets_the_thresholds(offline_run):
    result, out = offline_run

    assert result.returncode == 0, result.stderr[-3000:]
    assert "every threshold" in result.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report) >= METRIC_KEYS
    numbers = {k: v for k, v in report.items() if isinstance(v, int | float)}
    assert numbers and all(0.0 <= v <= 1.0 for v in numbers.values()), numbers
    assert sorted(row["id"] for row in report["items"]) == sorted(FEW_IDS)
    assert report["run"]["errors"] == 0
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "retrieval.json").exists()


@pytest.mark.slow
def test_the_markdown_report_has_a_table_per_category_and_per_language(offline_run):
    _, out = offline_run
    markdown = (out / "report.md").read_text(encoding="utf-8")

    for heading in ("## By category", "## By language", "## Against the tutorial recipe"):
        assert heading in markdown
    for group in ("single_fact", "comparison", "multi_turn", "no_marker", "out_of_scope"):
        assert re.search(rf"^\| {group} \| 1 \|", markdown, re.MULTILINE), group
    assert re.search(r"^\| zh \| \d+ \|", markdown, re.MULTILINE)
    assert re.search(r"^\| en \| \d+ \|", markdown, re.MULTILINE)


@pytest.mark.slow
def test_the_out_of_scope_question_is_abstained_on_without_citations(offline_run):
    _, out = offline_run
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    diabetes = next(row for row in report["items"] if row["id"] == "q120")

    assert diabetes["abstained"] is True
    assert diabetes["cited_refs"] == []


@pytest.mark.slow
def test_a_stricter_threshold_file_fails_the_check(offline_run, tmp_path):
    _, out = offline_run
    strict = tmp_path / "strict.toml"
    strict.write_text("[min]\nnumeric_fidelity = 1.0\nnot_a_measured_metric = 0.5\n")

    assert check_main([str(out / "report.json"), "--thresholds", str(strict)]) == 1


@pytest.mark.slow
def test_a_deployment_over_http_scores_the_same_answers_as_the_in_process_run(
    offline_run, indexed_settings, tmp_path_factory
):
    from tests.browser_support import start_api_server

    env = {
        "NENQA_INDEX_DIR": str(indexed_settings.index_dir),
        "NENQA_ANSWER_MODE": "extractive",
        "NENQA_API_KEYS": "eval-key",
        "HF_HUB_OFFLINE": "1",
    }
    server = start_api_server(env, tmp_path_factory.mktemp("api"))
    try:
        args = ["--url", server.url, "--api-key", "eval-key"]
        result, out = _nenqa_eval(args, indexed_settings.index_dir, tmp_path_factory.mktemp("url"))
    finally:
        server.stop()
    _, in_process_out = offline_run

    assert result.returncode == 0, result.stderr[-3000:]
    over_http = json.loads((out / "report.json").read_text(encoding="utf-8"))
    in_process = json.loads((in_process_out / "report.json").read_text(encoding="utf-8"))
    assert over_http["run"]["target"] == server.url
    assert {r["id"]: r["answer"] for r in over_http["items"]} == {
        r["id"]: r["answer"] for r in in_process["items"]
    }
    assert "tutorial_recipe" not in over_http  # the recipe needs the local index and model


def test_thresholds_name_what_is_missed():
    report = {"citation_recall": 0.8, "invalid_citation_rate": 0.02, "run": {"errors": 1}}
    limits = {
        "min": {"citation_recall": 0.9, "faithfulness": 0.95},
        "max": {"invalid_citation_rate": 0.0},
    }

    problems = check_thresholds(report, limits)

    assert problems == [
        "citation_recall = 0.8000 is below the minimum 0.9",
        "faithfulness: not in the report (threshold min 0.95)",
        "invalid_citation_rate = 0.0200 is above the maximum 0.0",
        "1 requests failed during the run",
    ]


def test_a_dotted_threshold_checks_one_language_of_the_report():
    report = {"by_language": {"en": {"key_fact_correctness": 0.9}, "zh": {}}}
    limits = {
        "min": {
            "by_language.en.key_fact_correctness": 0.94,
            "by_language.zh.key_fact_correctness": 0.94,
        }
    }

    assert check_thresholds(report, limits) == [
        "by_language.en.key_fact_correctness = 0.9000 is below the minimum 0.94",
        "by_language.zh.key_fact_correctness: not in the report (threshold min 0.94)",
    ]


def test_the_project_thresholds_cover_every_target_of_the_issue():
    limits = load_thresholds(THRESHOLDS)

    assert limits["min"]["citation_precision"] >= 0.95
    assert limits["min"]["citation_recall"] >= 0.90
    assert limits["min"]["faithfulness"] >= 0.95
    assert limits["min"]["numeric_fidelity"] == 1.0
    assert limits["min"]["key_fact_correctness"] >= 0.85
    assert limits["min"]["abstention_recall"] == 1.0
    assert limits["min"]["abstention_precision"] >= 0.9
    assert limits["max"]["invalid_citation_rate"] == 0.0
    assert limits["min"]["answered_in_language"] >= 0.98
    for language in ("zh", "en"):
        assert limits["min"][f"by_language.{language}.key_fact_correctness"] >= 0.94
        assert limits["min"][f"by_language.{language}.gold_reference_hit_rate"] >= 0.99


def test_a_malformed_thresholds_file_is_refused_with_its_entry(tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text("[min]\nfaithfulness = 95\n")

    with pytest.raises(ValueError, match=r"\[min\] faithfulness = 95 is outside 0-1"):
        load_thresholds(bad)


# --- a deployment over HTTP --------------------------------------------------------------------


def _deployment(handler) -> ChatClient:
    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://nenqa.test")
    return ChatClient(client, mode="extractive", where="http://nenqa.test")


def test_a_deployment_is_asked_with_history_and_mode(tmp_path):
    from eval.qa_schema import load_qa

    follow_up = next(item for item in load_qa(QA_PATH) if item.id == "q095")
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        body = {"answer": "安慰剂组为9.8个月[7]。", "abstained": False, "evidence": EVIDENCE}
        return httpx.Response(200, json=body)

    reply = _deployment(handler).ask(follow_up)

    path, body = seen[0]
    assert path == "/v1/chat"
    assert body["mode"] == "extractive"
    assert body["history"][0]["content"] == "SPINET研究中兰瑞肽组的治疗失败时间是多少？"
    assert reply.error is None and reply.answer.startswith("安慰剂组")


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, {"detail": "boom"}, "answered 500"),
        (200, {"answer": "x", "evidence": []}, "'abstained' missing"),
    ],
)
def test_a_failed_or_malformed_response_is_an_error_not_an_answer(status, body, message):
    from eval.qa_schema import load_qa

    item = load_qa(QA_PATH)[0]
    reply = _deployment(lambda request: httpx.Response(status, json=body)).ask(item)

    assert reply.error is not None and message in reply.error


def test_atranslated_answer_is_scored_for_its_language_and_its_translation():
    """An English question answered with the review's English rendering, over HTTP: the reply's
    quotes carry their originals, the translation is checked, the language is reported."""
    from eval.qa_schema import QAItem

    item = QAItem(
        id="q900",
        lang="en",
        category="comparison",
        question="For lung carcinoids treated with lanreotide in SPINET, how did PFS differ?",
        gold_answer="21.9 months in typical and 13.8 months in atypical carcinoids [7].",
        gold_refs=[7],
        key_facts=["21.9", "13.8", "typical carcinoid"],
        answerable=True,
    )
    answer, quotes = translated_answer(SPINET_EN)
    quote = {"chunk_id": "p-spinet", "text": SPINET_EN, "section": "1 生物治疗"}
    body = {
        "answer": answer,
        "abstained": False,
        "evidence": EVIDENCE_EN,
        "citations": [{"ref": 7, "reference": "[7]", "quotes": [{**quote, "original": SPINET}]}],
        "passages": [],
    }
    reply = _deployment(lambda request: httpx.Response(200, json=body)).ask(item)
    judge = deterministic_judge(Settings())

    assert reply.renderings == quotes
    row = score_item(item, reply, {"deterministic": judge}, judge)
    report = assemble_report([row], {item.id: item}, "deterministic", {"deterministic": judge})

    assert row["answered_in_language"] is True and row["missing_key_facts"] == []
    assert row["judges"]["deterministic"]["rendering_fidelity"] == 1.0
    english = report["by_language"]["en"]
    assert english["answered_in_language"] == 1.0 and english["key_fact_correctness"] == 1.0
    assert english["gold_reference_hit_rate"] == 1.0 and report["run"]["renderings_checked"] == 1
    report["run"].update(qa="qa.jsonl", target="test", mode="extractive", seconds={"total": 0})
    assert "in question's lang" in render_markdown(report)

    wrong = score_item(
        item, replace(reply, answer=f"以下为综述原文摘录：{SPINET_QUOTE}"), {}, judge
    )
    assert wrong["answered_in_language"] is False
    assert (
        "not answered in the question's language (en)"
        in failures([wrong], {item.id: item}, "deterministic")[0]["problems"]
    )


# --- the LLM judge -----------------------------------------------------------------------------


def _claims(*claims: str) -> str:
    return json.dumps({"claims": list(claims)}, ensure_ascii=False)


def _verdict(word: str) -> str:
    return json.dumps({"verdict": word, "reason": "scripted"})


# The scripted judge (tests/scripted_llm.py: the first rule whose text occurs in the prompt
# answers). Each sentence is one claim; a claim with 13.4 months is refused; whatever mentions
# 8.3 months gets prose instead of JSON.
JUDGE_SCRIPT = [
    {"when": "Sentence:\nSPINET", "reply": _claims("兰瑞肽组的TTF为13.3个月,而安慰剂组为9.8个月")},
    {"when": "Sentence:\nCLARINET FORTE", "reply": _claims("增量兰瑞肽额外获得8.3个月的mPFS")},
    {"when": "Sentence:\n兰瑞肽组的TTF为13.4", "reply": _claims("兰瑞肽组的TTF为13.4个月")},
    {"when": "8.3个月", "reply": "I believe this claim is supported by E1."},
    {"when": "13.4", "reply": _verdict("not_supported")},
    {"when": "", "reply": _verdict("supported")},
]


@pytest.fixture
def scripted_judge(tmp_path):
    from tests.scripted_llm import ScriptedLLM

    server = ScriptedLLM(JUDGE_SCRIPT, tmp_path)
    yield server
    server.stop()


def test_the_llm_judge_counts_output_that_does_not_parse(scripted_judge):
    judge = LLMJudge(base_url=scripted_judge.base_url, model="scripted-judge")

    score = score_answer(f"{SPINET_QUOTE}{FORTE_QUOTE}", EVIDENCE, judge)

    assert score.sentences[0].supported is True
    assert score.sentences[1].supported is None  # the 8.3 sentence got prose
    assert score.citation_recall == 1.0  # over the one sentence with a verdict
    assert score.judge_invalid == 2  # its sentence verdict and its claim verdict
    assert {o.prompt for o in judge.invalid_outputs} == {"judge_verdict"}
    requests = scripted_judge.requests()
    assert all(r["model"] == "scripted-judge" and r["temperature"] == 0 for r in requests)
    verdict_prompt = next(r for r in requests if "Evidence:" in r["messages"][-1]["content"])
    assert "E1: " in verdict_prompt["messages"][-1]["content"]


def test_with_the_llm_judge_both_judges_run_and_their_agreement_is_reported(
    scripted_judge, tmp_path
):
    qa = _few_items(tmp_path / "qa.jsonl")
    answers = {
        "q001": f"以下为综述原文摘录：{SPINET_QUOTE}",
        "q005": "兰瑞肽组的TTF为13.4个月[7]。",  # wrong number: both judges refuse it
        "q095": f"{FORTE_QUOTE}",  # the LLM judge's output for this one does not parse
    }

    def ask(item) -> ChatReply:
        text = answers.get(item.id)
        return ChatReply(text or "不作回答。", text is None, EVIDENCE, [], "extractive", 1.0)

    report = run_eval(
        Settings(),
        qa,
        tmp_path / "out",
        judge="llm",
        judge_url=scripted_judge.base_url,
        judge_model="scripted-judge",
        with_retrieval=False,
        with_baseline=False,
        ask=ask,
    )

    agreement = report["judges"]["agreement"]
    assert agreement["judges"] == ["deterministic", "llm"]
    assert agreement["pairs"] == 2  # q001 and q005; q095's LLM verdict did not parse
    assert agreement["raw_agreement"] == 1.0
    assert report["run"]["judge"] == "llm"
    assert report["run"]["judge_invalid_outputs"] == 2
    assert report["judges"]["llm_invalid_outputs"][0]["prompt"] == "judge_verdict"
    assert report["citation_recall"] == pytest.approx(1 / 2)
    assert "Judge agreement" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")


def test_an_unreachable_judge_says_which_endpoint_failed(scripted_judge):
    url = scripted_judge.base_url
    scripted_judge.stop()
    judge = LLMJudge(base_url=url, model="scripted-judge", timeout_s=5)

    with pytest.raises(JudgeUnavailableError, match=re.escape(url)):
        judge.judge("TTF为13.3个月", ["兰瑞肽组的TTF为13.3个月"])
