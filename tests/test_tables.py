"""Evidence tables: questions about a set of trials get every matching record, strongest first."""

from __future__ import annotations

import pytest

from answer.table_mode import LEVEL_NOTE, EvidenceLevels
from answer.tables import build_table, evidence_level, table_markdown
from answer.trial_query import recognise_trial_query
from eval.tables import load_list_questions, product_table, run_table_eval
from ingest.sources import read_source
from ingest.trials import load_trials
from nenqa.settings import PROJECT_ROOT, get_settings
from retriever.search import build_glossary

DATA = PROJECT_ROOT / "data"


@pytest.fixture(scope="module")
def records():
    return load_trials(DATA / "trials.jsonl")


@pytest.fixture(scope="module")
def glossary():
    review = read_source(DATA / "nen-drug-trials-review-2022.md")
    return build_glossary(get_settings(), review.chunks)


def table_for(question, glossary, records, language="en"):
    query = recognise_trial_query(question, glossary, records)
    return build_table(query, records, language) if query else None


def test_spinet_carries_its_phase_design_and_size(records):
    spinet = next(r for r in records if r.id == "spinet")
    assert evidence_level(spinet, "en") == "phase III, randomised, double-blind, n=77"
    assert evidence_level(spinet, "zh") == "III期，随机，双盲，n=77"


def test_checkpoint_inhibitor_question_lists_every_trial_phase_iii_first(glossary, records):
    table = table_for(
        "Which trials in the review tested immune checkpoint inhibitors in NEN?", glossary, records
    )
    assert table is not None and len(table.rows) == 14
    assert {r.trial_id for r in table.rows[:2]} == {"caspian", "impower133"}
    assert "keynote-158" in {r.trial_id for r in table.rows}


def test_chinese_question_gets_chinese_cells_and_citations(glossary, records):
    table = table_for("哪些研究用到了贝伐珠单抗？", glossary, records, "zh")
    assert [r.trial_id for r in table.rows] == [
        "halperin-atezolizumab-bevacizumab",
        "folfox-bevacizumab-retrospective",
    ]
    markdown = table_markdown(table)
    assert "阿替利珠单抗联合贝伐珠单抗" in markdown and "[34]" in markdown and "[24]" in markdown
    assert markdown.startswith("综述中符合条件（贝伐珠单抗）的试验共2项")


def test_a_trial_without_a_marker_is_cited_by_its_section(glossary, records):
    table = table_for("Which trials tested temozolomide-based regimens?", glossary, records)
    cells = {r.trial_id: r.cells[-1] for r in table.rows}
    assert cells["et-nec"] == "[§3 化疗]"


@pytest.mark.parametrize(
    "question",
    [
        "What was the ORR of lenvatinib in the pancreatic cohort of TALENT?",
        "SPINET研究中兰瑞肽的治疗失败时间是多少？",
        "哪些患者从特瑞普利单抗治疗中获益更多？",
    ],
)
def test_a_question_about_one_trial_gets_no_table(glossary, records, question):
    assert recognise_trial_query(question, glossary, records) is None


def test_a_quote_carries_the_level_of_evidence_of_its_trial(records):
    levels = EvidenceLevels(records)
    quote = "该研究共纳入77例晚期肺典型/非典型类癌,兰瑞肽组的TTF为13.3个月,而安慰剂组为9.8个月。[7]"
    noted = levels.note(f"在临床应用拓展方面,SPINET随机双盲Ⅲ期研究^[7]结果提示,{quote}", "zh")
    assert "（SPINET：III期，随机，双盲，n=77）。[7]" in noted
    assert LEVEL_NOTE.sub("", noted).endswith("9.8个月。[7]")


def test_held_out_list_questions_meet_the_targets(glossary, records):
    items = [i for i in load_list_questions() if i.split == "test"]
    report = run_table_eval(product_table(glossary, records), items)
    assert report["test"]["coverage"] >= 0.95
    assert report["test"]["precision"] >= 0.90
    assert report["test"]["single_given_a_table"] == 0
