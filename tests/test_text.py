"""The one text toolkit: where the copies in ingest, answers and eval used to disagree, and
what they now all read the same way."""

from __future__ import annotations

from decimal import Decimal

import pytest

from answer.citations import QuotedSentence, cite
from answer.claims import ClaimChecker
from answer.sentences import EvidenceSentence
from eval.judges import DeterministicJudge
from eval.metrics import score_answer
from nenqa.glossary import Glossary, load_glossary_table
from nenqa.settings import PROJECT_ROOT
from nenqa.text import (
    ANSWER,
    EVIDENCE_EN,
    EVIDENCE_ZH,
    detect_language,
    is_abbreviation,
    numbers_in,
    parse_citation_markers,
    sentence_spans,
    split_sentences,
    strip_citation_markers,
    strip_markers,
)

# --- numbers -----------------------------------------------------------------------------------


def test_numbers_are_compared_as_quantities():
    assert numbers_in("28.0个月, 40.4%, 3~4级") == numbers_in("28 months, 40.4 %, grade 3-4")
    # Identifiers glued to letters are names, not quantities.
    assert numbers_in("G3 PD-L1 IMpower133 NCT02215447") == set()


def test_names_with_digits_are_not_numbers():
    found = numbers_in("PD-L1 ≥10%, Ki-67<20%, 5-FU, G3, NCT02215447, 28.0个月, 1,000例[7]")

    assert found == {Decimal("10"), Decimal("20"), Decimal("28"), Decimal("1000")}


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        # The answer checks used to read PD-1 as the number 1 while the eval did not.
        ("PD-1抑制剂", set()),
        ("PD-1 inhibitors gave an ORR of 13%", {"13"}),
        ("5-FU and CTLA-4", set()),
        # Decimals stay whole; 28.0 and 28 are one number.
        ("mPFS 13.3 vs 9.8 months", {"13.3", "9.8"}),
        ("28.0个月", {"28"}),
        ("$P>0.05$", {"0.05"}),
        # Percentages are their number.
        ("40.4%", {"40.4"}),
        # Ranges are their two ends; a thousands comma is not a list.
        ("3~4级", {"3", "4"}),
        ("1,000例", {"1000"}),
        # Citation markers are not numbers, in the review's form or the answer's.
        ("兰瑞肽^[13-16]有效[7]。", set()),
    ],
)
def test_what_counts_as_a_number(text: str, numbers: set[str]) -> None:
    assert numbers_in(text) == {Decimal(n) for n in numbers}


def test_answer_check_and_eval_agree_on_names_with_digits():
    evidence = EvidenceSentence(
        text="PD-1抑制剂单药治疗NEC的ORR仅为3.7%^[30]。",
        refs=(30,),
        section="2 免疫治疗",
        kind="passage",
        position=0.0,
        chunk_ids=("p-1",),
    )
    shown_to_model = [QuotedSentence(evidence, "p-1")]
    # "PD-1" is a drug class, not a claimed "1": the sentence is supported in both readings.
    checked = ClaimChecker(None).align("PD-1抑制剂单药的ORR为3.7%。", shown_to_model)

    assert checked.supported
    judge = DeterministicJudge(Glossary(load_glossary_table(PROJECT_ROOT / "data/glossary.tsv")))
    shown = {"text": evidence.text, "refs": [30], "kind": "passage", "section": "2 免疫治疗"}
    text = cite(checked.claim, checked.cited)
    assert score_answer(text, [shown], judge).numeric_fidelity == 1.0
    wrong = ClaimChecker(None).align("PD-1抑制剂单药治疗NEC的ORR仅为13.7%。", shown_to_model)
    assert not wrong.supported and "13.7" in wrong.problem


# --- abbreviations and sentences ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "abbreviation"),
    [
        ("Baudin et al.", True),
        ("13.3 vs.", True),
        ("agents, e.g.", True),
        ("J.", True),  # an initial
        ("Prof.", True),  # was only ingest's
        ("months.", False),
        ("G3.", False),
    ],
)
def test_abbreviations_do_not_end_sentences(text: str, abbreviation: bool) -> None:
    assert is_abbreviation(text, len(text) - 1) is abbreviation


def test_chinese_sentences_keep_their_trailing_markers():
    text = "PROMID和CLARINET试验^[4-5]证实了疗效。最近发表的研究^[6]显示,差异无统计学意义。"

    assert split_sentences(text) == [
        "PROMID和CLARINET试验^[4-5]证实了疗效。",
        "最近发表的研究^[6]显示,差异无统计学意义。",
    ]


def test_english_sentences_do_not_split_inside_numbers_or_abbreviations():
    text = "mPFS was 13.3 months vs. 9.8 months. Liu et al. reported 116 patients."

    assert split_sentences(text) == [
        "mPFS was 13.3 months vs. 9.8 months.",
        "Liu et al. reported 116 patients.",
    ]


def test_spans_are_half_open_and_exclude_surrounding_whitespace():
    text = "  TTF为13.3个月。^[7]  安慰剂组为9.8个月；其余未报告  "
    spans = sentence_spans(text)

    assert spans == [(2, 17), (19, 30), (30, 35)]
    assert [text[a:b] for a, b in spans] == [
        "TTF为13.3个月。^[7]",
        "安慰剂组为9.8个月；",
        "其余未报告",
    ]


def test_evidence_and_answer_rules_differ_only_where_they_must():
    review = "兰瑞肽组TTF为13.3个月；安慰剂组为9.8个月。^[7]"
    # The review's ；separates statements with their own markers; an answer keeps a quoted
    # sentence's clauses together.
    assert split_sentences(review) == ["兰瑞肽组TTF为13.3个月；", "安慰剂组为9.8个月。^[7]"]
    assert split_sentences(review, ANSWER) == [review]
    # An answer's line break ends a sentence; in extracted evidence it is layout.
    assert split_sentences("第一句\n第二句", ANSWER) == ["第一句", "第二句"]
    assert split_sentences("TTF was 13.3 months.\n[7] Next", EVIDENCE_EN) == [
        "TTF was 13.3 months.",
        "[7] Next",
    ]
    assert split_sentences("A. B", EVIDENCE_ZH) == ["A. B"]


def test_answer_markers_stay_with_the_sentence_they_close():
    text = (
        "以下为综述原文摘录：TTF为13.3个月。[7]安慰剂组为9.8个月[7]！"
        "Baudin et al. reported 13.3 vs. 9.8 months.[§1 生物治疗] Next sentence [8]."
    )

    assert split_sentences(text, ANSWER) == [
        "以下为综述原文摘录：TTF为13.3个月。[7]",
        "安慰剂组为9.8个月[7]！",
        "Baudin et al. reported 13.3 vs. 9.8 months.[§1 生物治疗]",
        "Next sentence [8].",
    ]


# --- language ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("兰瑞肽 lanreotide 治疗胃肠胰NET", "zh"),
        ("What is the mPFS of everolimus in RADIANT-4?", "en"),
        ("A title with one 肽 in it is English text", "en"),
        ("", "en"),
    ],
)
def test_language_is_the_script_that_carries_the_text(text: str, language: str) -> None:
    assert detect_language(text) == language


# --- citation markers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "numbers"),
    [
        ("^[7]", (7,)),
        ("^[4-5]", (4, 5)),
        ("^[13-16]", (13, 14, 15, 16)),
        ("^[1,3]", (1, 3)),
        ("^[39-40]与^[7]", (7, 39, 40)),
        ("[7]", ()),  # an answer's marker, not the review's
        ("没有引用", ()),
    ],
)
def test_citation_markers_give_sorted_reference_numbers(
    marker: str, numbers: tuple[int, ...]
) -> None:
    assert parse_citation_markers(f"文字{marker}。") == numbers


def test_absurd_citation_ranges_are_not_expanded_number_by_number():
    for marker in ("x^[7-99999999]", "x^[7-" + "9" * 5000 + "]"):
        numbers = parse_citation_markers(marker)
        # Both ends survive, so the reference-list check refuses the marker with its line.
        assert len(numbers) == 2 and numbers[0] == 7 and numbers[1] > 50


def test_markers_are_removed_from_what_a_model_sees():
    assert strip_citation_markers("研究^[9-10]显示,兰瑞肽^[7]有效。") == "研究显示,兰瑞肽有效。"


def test_a_claim_is_its_text_without_any_kind_of_marker():
    claim = strip_markers("兰瑞肽^[4-5]有效 [7]【8】[§1 生物治疗]。TTF \\geq 13\\%")

    assert claim == "兰瑞肽有效。TTF ≥ 13%"
