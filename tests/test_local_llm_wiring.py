"""What the llm mode checks beyond keys and numbers, and how the CLI reaches the local model,
without the model itself (the real model runs in tests/test_llm_e2e.py, marker ``llm``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from answer.citations import split_draft
from answer.llm import ClaimWordCheck, NamedTermCheck, is_statement
from nenqa.glossary import Glossary, load_glossary_table
from nenqa.models.llm_prep import MODEL_ALIAS, LocalLLMError, check_local_llm_ready
from nenqa.models.llm_server import LOCAL_MAX_TOKENS, local_llm_settings
from nenqa.settings import PROJECT_ROOT, Settings

SURUFATINIB = (
    "索凡替尼联合特瑞普利单抗的ⅠB期临床研究共纳入22例NEN患者,结果显示,ORR为24.1%,DCR为79.3%。"
)
SPINET = (
    "SPINET随机双盲Ⅲ期研究共纳入77例晚期肺典型/非典型类癌,兰瑞肽组的治疗失败时间"
    "(time to treatment failure, TTF)为13.3个月,而安慰剂组为9.8个月。"
)


@pytest.fixture(scope="module")
def terms() -> NamedTermCheck:
    return NamedTermCheck(Glossary(load_glossary_table(PROJECT_ROOT / "data" / "glossary.tsv")))


def test_a_right_number_given_to_the_wrong_drug_is_refused(terms):
    claim = "舒尼替尼联合特瑞普利单抗的研究中ORR为24.1%。"
    assert terms.missing(claim, [SURUFATINIB]) == ["舒尼替尼"]


def test_an_endpoint_the_evidence_never_reports_is_refused(terms):
    claim = "Lanreotide doubled overall survival in SPINET."
    assert terms.missing(claim, [SPINET]) == ["overall survival"]


def test_english_names_are_checked_against_chinese_evidence(terms):
    assert terms.missing("In SPINET, lanreotide gave a TTF of 13.3 months.", [SPINET]) == []


def test_a_narrower_form_of_the_same_concept_counts(terms):
    evidence = "两组的中位无进展生存期(mPFS)分别为28.0个月和30.1个月。长效兰瑞肽组。"
    assert terms.missing("The median PFS with lanreotide was 30.1 months.", [evidence]) == []


@pytest.mark.parametrize(
    ("claim", "evidence", "expected"),
    [
        ("舒尼替尼可以治愈NEC。", "舒尼替尼对分化好的NET有一定疗效。", ["治愈"]),
        ("Sunitinib cures NEC.", "舒尼替尼对分化好的NET有一定疗效。", ["cures"]),
        ("Lanreotide doubled the TTF in SPINET.", SPINET, ["doubled"]),
        ("In SPINET, lanreotide gave a TTF of 13.3 months.", SPINET, []),
        ("The regimen cured two patients.", "2例患者获得根治。", []),  # same concept in Chinese
        ("该方案使mPFS翻倍。", "该方案使mPFS延长了一倍。", []),
    ],
)
def test_a_claim_word_needs_its_cited_evidence_to_make_the_same_claim(claim, evidence, expected):
    assert ClaimWordCheck().unsupported(claim, [evidence]) == expected


def test_a_key_on_the_line_after_its_sentence_stays_with_it():
    assert split_draft("安慰剂组的TTF为9.8个月。\n[S4]\n兰瑞肽组为13.3个月。[S4]") == [
        "安慰剂组的TTF为9.8个月。\n[S4]",
        "兰瑞肽组为13.3个月。[S4]",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[S4]", False),
        ("[S1][S2]。", False),
        ("INSUFFICIENT_EVIDENCE", False),
        ("TTF 13.3 [S1]", True),
    ],
)
def test_keys_alone_or_the_abstain_token_are_not_statements(text, expected):
    assert is_statement(text) is expected


def test_local_settings_point_the_llm_mode_at_the_server_and_cap_the_answer():
    local = local_llm_settings(Settings(llm_max_tokens=2048), "http://127.0.0.1:5/v1")
    assert local.llm_base_url == "http://127.0.0.1:5/v1" and local.llm_model == MODEL_ALIAS
    assert local.llm_max_tokens == LOCAL_MAX_TOKENS
    assert local.llm_timeout_s >= 300


def test_an_unprepared_model_is_refused_with_how_to_prepare_it(tmp_path):
    with pytest.raises(LocalLLMError, match="make llm"):
        check_local_llm_ready(tmp_path)


def run_nenqa(*args: str, cache_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "NENQA_MODEL_CACHE_DIR": str(cache_dir), "COLUMNS": "400"}
    env.pop("NENQA_LLM_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=120,
    )


def test_serve_with_the_local_llm_unprepared_says_to_run_make_llm(tmp_path):
    result = run_nenqa("serve", "--llm", "local", "--port", "0", cache_dir=tmp_path)
    assert result.returncode == 1
    assert "make llm" in result.stderr and "missing" in result.stderr


def test_serve_refuses_an_unknown_llm_choice(tmp_path):
    result = run_nenqa("serve", "--llm", "remote", cache_dir=tmp_path)
    assert result.returncode == 2 and "unknown --llm 'remote'" in result.stderr


def test_eval_in_llm_mode_without_an_endpoint_starts_the_local_model_or_says_why(tmp_path):
    result = run_nenqa(
        "eval", "--mode", "llm", "--ids", "q120", "--no-baseline", "--out", str(tmp_path),
        cache_dir=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "make llm" in result.stderr
