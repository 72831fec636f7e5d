"""The one translation check: a faithful rendering passes, each kind of unfaithful one is named."""

from __future__ import annotations

import pytest

from nenqa.glossary import Glossary, Term
from nenqa.text import rendering_problems, unit_id

GLOSSARY = Glossary(
    [
        Term(("兰瑞肽",), ("lanreotide",), (), "drug"),
        Term(("无进展生存期",), ("progression-free survival",), ("PFS",), "endpoint"),
        Term(("中位无进展生存期",), ("median progression-free survival",), ("mPFS",), "endpoint"),
        Term(("神经内分泌瘤",), ("neuroendocrine tumor",), ("NET",), "disease"),
        Term(("一线",), ("first-line",), (), "other"),
        Term((), ("SPINET",), (), "trial"),
    ]
)
ZH = "SPINET研究^[7]显示, 兰瑞肽组的中位无进展生存期为13.3个月, 共纳入77例患者($P<0.05$)。"
EN = (
    "The SPINET study^[7] showed a median progression-free survival of 13.3 months with "
    "lanreotide, in 77 patients ($P<0.05$)."
)


def test_unit_ids_ignore_width_and_whitespace_but_not_content():
    assert unit_id("兰瑞肽 组 13.3个月($P>0.05$)") == unit_id("兰瑞肽组１３.３个月\n(P>0.05)")
    assert unit_id("兰瑞肽组13.3个月") != unit_id("兰瑞肽组13.4个月")
    assert unit_id(ZH).startswith("u") and len(unit_id(ZH)) == 17


@pytest.mark.parametrize(
    ("original", "rendering", "target"), [(ZH, EN, "en"), (EN, ZH, "zh")], ids=["zh-en", "en-zh"]
)
def test_a_faithful_rendering_passes_in_both_directions(original, rendering, target):
    assert rendering_problems(original, rendering, GLOSSARY, target) == []
    # The target language defaults to the one the original is not in.
    assert rendering_problems(original, rendering, GLOSSARY) == []


@pytest.mark.parametrize(
    ("original", "rendering", "problem"),
    [
        (ZH, EN.replace("13.3", "13.8"), "numbers missing from the rendering: 13.3"),
        (ZH, EN.replace("in 77", "in 77 of 78"), "numbers the original does not have: 78"),
        (ZH, EN.replace("^[7]", ""), "citation markers differ: original cites 7, rendering "),
        (ZH, EN.replace("^[7]", "^[8]"), "original cites 7, rendering 8"),
        (ZH, EN.replace("<", ""), "comparison signs differ: original <, rendering none"),
        (ZH, EN.replace("lanreotide", "兰瑞肽"), "Chinese characters left in the English"),
        (ZH, EN.replace("lanreotide", "the drug"), "glossary term 兰瑞肽 is not rendered"),
        (EN, ZH.replace("13.3", "13"), "numbers missing from the rendering: 13.3"),
        (EN, ZH.replace("^[7]", "^[7-8]"), "original cites 7, rendering 7, 8"),
        (EN, ZH.replace("<", "≤"), "comparison signs differ: original <, rendering ≤"),
        (EN, ZH.replace("兰瑞肽", "lanreotide"), "glossary term lanreotide is not rendered as"),
        (EN, ZH.replace("SPINET", "该"), "glossary term SPINET is not rendered"),
    ],
    ids=[
        "zh-en changed number",
        "zh-en added number",
        "zh-en dropped marker",
        "zh-en changed marker",
        "zh-en dropped sign",
        "zh-en leftover Chinese",
        "zh-en term not rendered",
        "en-zh changed number",
        "en-zh added citation",
        "en-zh changed sign",
        "en-zh term left in English",
        "en-zh trial name dropped",
    ],
)
def test_each_unfaithful_rendering_is_named(original, rendering, problem):
    problems = rendering_problems(original, rendering, GLOSSARY)
    assert any(problem in p for p in problems), problems


def test_a_dropped_greater_or_equal_is_caught_and_latex_reads_as_the_sign():
    original = "PD-L1表达≥1%的患者, 中位无进展生存期为$\\geq 6$个月^[26]。"
    faithful = "In patients with PD-L1 expression ≥1%, mPFS was $\\geq 6$ months^[26]."
    assert rendering_problems(original, faithful, GLOSSARY, "en") == []
    assert rendering_problems(original, faithful.replace("≥1%", "1%"), GLOSSARY, "en") == [
        "comparison signs differ: original ≥≥, rendering ≥"
    ]


def test_numbers_inside_names_and_compounds_count_as_written():
    original = "12个月的无进展生存期率为69%, 第5版标准^[3]。"
    rendering = "The 12-month PFS rate was 69% under the 5th edition criteria^[3]."
    assert rendering_problems(original, rendering, GLOSSARY, "en") == []
    # A quantity the rendering adds is still caught, even beside a compound.
    assert rendering_problems(original, rendering.replace("69%", "69% (n=40)"), GLOSSARY) == [
        "numbers the original does not have: 40",
        "comparison signs differ: original none, rendering =",
    ]


def test_the_longest_term_decides_and_a_waived_term_is_not_required():
    # 中位无进展生存期 is one term: its abbreviation satisfies it, PFS alone is not asked for.
    assert rendering_problems("中位无进展生存期为9个月。", "The mPFS was 9 months.", GLOSSARY) == []
    idiom = "ADC药物给NEC的治疗带来了一线曙光。"
    rendering = "ADC drugs have brought a glimmer of hope to the treatment of NEC."
    assert rendering_problems(idiom, rendering, GLOSSARY) == [
        "glossary term 一线 is not rendered as any of: first-line"
    ]
    assert rendering_problems(idiom, rendering, GLOSSARY, waive=["一线"]) == []
