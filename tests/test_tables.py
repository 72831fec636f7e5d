"""Evidence tables: questions about a set of trials get every matching record, strongest first."""

from __future__ import annotations

import re
import unicodedata

import pytest

from answer.table_mode import LEVEL_NOTE, EvidenceLevels
from answer.tables import build_table, evidence_level, table_markdown
from answer.trial_query import recognise_trial_query
from eval.tables import load_list_questions, product_table, run_table_eval
from ingest.sources import read_source
from ingest.trials import load_trials
from nenqa.settings import PROJECT_ROOT, get_settings
from nenqa.text import CJK_RANGE
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
        # Asks for the agents' pathways, not for a set of agents.
        "What pathways do the approved targeted agents for well-differentiated NETs hit?",
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


# --- trial names in Chinese answers ------------------------------------------------------------

# An acronym's words are capitals and digits (SPINET, IMpower133, Keynote-028); a descriptive
# name has lower-case words ("phase", "plus", "study", "et al.").
DESCRIPTIVE_WORD = re.compile(r"(?<![A-Za-z])[a-z]{2,}\b")
# How far before a record's sentences the review may have named what they talk about ("该研究").
NAME_CONTEXT_CHARS = 400


def review_words_form(text):
    """NFKC, no whitespace, markers, parentheses or LaTeX marks, lower case: how a name's words
    are looked up in the review."""
    text = unicodedata.normalize("NFKC", text).replace("$", "").replace("*", "")
    return re.sub(r"\^?\[[\d,\-–]+\]|[\s()（）]", "", text).lower()


def uncovered(name, source):
    """What of ``name`` is not made of pieces of ``source`` at least two characters long."""
    i = 0
    while i < len(name):
        j = len(name)
        while j - i >= 2 and name[i:j] not in source:
            j -= 1
        if j - i < 2:
            return name[i:]
        i = j
    return ""


def test_descriptive_trial_names_have_a_chinese_name_and_acronyms_stay(records):
    descriptive = {r.id for r in records if DESCRIPTIVE_WORD.search(r.name)}
    assert {"rovalpituzumab-tesirine", "dll3-phase-i", "liu-ssa-tae"} <= descriptive
    assert {r.id for r in records if r.name_zh} == descriptive
    assert {"spinet", "impower133", "keynote-028", "pen-221"}.isdisjoint(descriptive)


def test_chinese_trial_names_are_the_reviews_words_about_that_trial(records):
    review = (DATA / "nen-drug-trials-review-2022.md").read_text(encoding="utf-8")
    body = review_words_form(review.split("[参 考 文 献]")[0])
    problems = []
    for record in (r for r in records if r.name_zh):
        summary = review_words_form(record.summary_zh)
        at = body.find(summary.split("。")[0][:30])
        assert at >= 0, record.id
        # The record's own sentences and the review's text just before them.
        left = uncovered(
            review_words_form(record.name_zh), body[max(0, at - NAME_CONTEXT_CHARS) : at] + summary
        )
        if left or not re.search(f"[{CJK_RANGE}]", record.name_zh):
            problems.append((record.id, record.name_zh, left))
    assert not problems


def test_a_chinese_table_and_its_notes_name_descriptive_trials_in_chinese(glossary, records):
    question = "综述提到了哪些靶向DLL3的药物？"
    zh, en = (table_for(question, glossary, records, lang) for lang in ("zh", "en"))
    assert [r.cells[0] for r in zh.rows] == [
        "rovalpituzumab tesirine I/II期临床试验",
        "DLL3抗体偶联药物I期临床试验",
    ]
    assert [r.cells[0] for r in en.rows] == [
        "Rovalpituzumab tesirine phase I/II trial",
        "DLL3 ADC and multispecific antibody phase I trials",
    ]
    ssa = table_for("生长抑素类似物的临床试验有哪些？", glossary, records, "zh")
    names = [r.cells[0] for r in ssa.rows]
    assert {"SPINET", "CLARINET FORTE", "PROMID"} <= set(names), "acronyms stay as they are"
    assert "Liu等SSA联合肝动脉介入栓塞回顾性研究" in names
    rova = next(r for r in records if r.id == "rovalpituzumab-tesirine")
    noted = EvidenceLevels(records).note(rova.summary_zh.split("。")[0] + "。", "zh")
    assert "（rovalpituzumab tesirine I/II期临床试验：I/II期" in noted


def test_the_eval_judge_holds_a_chinese_named_row_to_its_trials_sentences(glossary, records):
    from eval.answer_text import answer_sentences
    from eval.judges import DeterministicJudge

    table = table_for("哪些研究用到了贝伐珠单抗？", glossary, records, "zh")
    rows = answer_sentences(table_markdown(table))
    assert rows[0].claim.startswith("Halperin等阿替利珠单抗联合贝伐珠单抗II期临床试验，")
    judge, by_id = DeterministicJudge(), {r.id: r for r in records}
    for row, sentence in zip(table.rows, rows, strict=True):
        evidence = [by_id[row.trial_id].summary_zh]
        assert judge.judge(sentence.claim, evidence).supported, sentence.claim
    # A value the trial's sentences do not hold is refused.
    wrong = rows[0].claim.replace("14.9", "19.4")
    assert not judge.judge(wrong, [by_id["halperin-atezolizumab-bevacizumab"].summary_zh]).supported
