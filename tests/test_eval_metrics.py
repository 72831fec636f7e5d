"""The answer metrics on hand-made answers whose right scores are known.

The evidence is the review's own text in the shape ``POST /v1/chat`` returns it; the answers
are what a faithful, a careless and a lying answerer would write.
"""

from __future__ import annotations

import pytest

from eval.answer_text import answered_in_language, parse_answer_citations
from eval.correctness import abstention_scores, missing_key_facts
from eval.judges import DeterministicJudge, cohen_kappa, parse_claims, parse_verdict
from eval.metrics import (
    QuotedRendering,
    Verdict,
    score_answer,
)
from eval.qa_schema import QAItem
from nenqa.glossary import Glossary, load_glossary_table
from nenqa.settings import PROJECT_ROOT

SPINET = (
    "在临床应用拓展方面,SPINET随机双盲Ⅲ期研究^[7]结果提示,SSA除可用于治疗胃肠胰及原发不明NET外,"
    "对肺典型/非典型类癌同样有效,该研究共纳入77例晚期肺典型/非典型类癌,经标准剂量兰瑞肽治疗后,"
    "兰瑞肽组的治疗失败时间(time to treatment failure, TTF)为13.3个月,而安慰剂组为9.8个月,"
    "其中典型类癌组的PFS达21.9个月,非典型类癌组则为13.8个月。"
)
CLARINET_FORTE = (
    "在SSA的增量使用方面,CLARINET FORTE前瞻性Ⅱ期临床试验^[8]结果显示,在标准剂量兰瑞肽治疗后进展的"
    "中肠和胰腺NET中,增量使用兰瑞肽可分别额外获得8.3个月和5.6个月的mPFS。"
)
E2211 = (
    "对比替莫唑胺单药和CAPTEM在进展期胰腺NET中疗效的前瞻性II期ECOG-ACRIN E2211临床试验的最终结果"
    "于2022年在ASCO年会上进行了报道,"
    "单药组和联合用药组的OS和ORR分别为53.8个月和34% vs 58.7个月和40%,差异无统计学意义。"
)
EVIDENCE = [
    {
        "chunk_id": "p-spinet",
        "text": SPINET,
        "refs": [7],
        "section": "1 生物治疗",
        "kind": "passage",
    },
    {
        "chunk_id": "p-forte",
        "text": CLARINET_FORTE,
        "refs": [8],
        "section": "1 生物治疗",
        "kind": "passage",
    },
    {"chunk_id": "p-e2211", "text": E2211, "refs": [], "section": "3 化疗", "kind": "passage"},
]
SPINET_QUOTE = (
    "SPINET随机双盲Ⅲ期研究[7]结果提示,经标准剂量兰瑞肽治疗后,"
    "兰瑞肽组的治疗失败时间(time to treatment failure, TTF)为13.3个月,而安慰剂组为9.8个月。"
)
FORTE_QUOTE = (
    "CLARINET FORTE前瞻性Ⅱ期临床试验[8]结果显示,"
    "增量使用兰瑞肽可分别额外获得8.3个月和5.6个月的mPFS。"
)


# The shipped English rendering of SPINET, as /v1/chat shows it: the evidence in translation
# with its original, the quote with its original, the answer behind the translated preface.
SPINET_EN = (
    "Regarding the extension of clinical use, the results of the randomized, double-blind, "
    "phase III SPINET study^[7] suggested that, besides being usable for gastroenteropancreatic "
    "NETs and NETs of unknown primary, SSA is likewise effective in pulmonary typical/atypical "
    "carcinoids; the study enrolled 77 patients with advanced pulmonary typical/atypical "
    "carcinoid, and after standard-dose lanreotide treatment the time to treatment failure (TTF) "
    "was 13.3 months in the lanreotide group versus 9.8 months in the placebo group, with the "
    "PFS reaching 21.9 months in the typical carcinoid group and 13.8 months in the atypical "
    "carcinoid group."
)
TRANSLATED = "Translated from the review's Chinese text (each quote keeps its original):"
EVIDENCE_EN = [{**EVIDENCE[0], "text": SPINET_EN, "original": SPINET}]


def translated_answer(rendering: str) -> tuple[str, list[QuotedRendering]]:
    """An English answer printing ``rendering`` of SPINET, and the quote it came from."""
    printed = rendering.replace("^[7]", "[7]")
    return f"{TRANSLATED} {printed}", [QuotedRendering(rendering, SPINET)]


@pytest.fixture(scope="module")
def judge() -> DeterministicJudge:
    return DeterministicJudge(Glossary(load_glossary_table(PROJECT_ROOT / "data" / "glossary.tsv")))


def test_a_faithful_quoted_answer_scores_full_marks(judge):
    answer = f"以下为综述原文摘录：{SPINET_QUOTE}{FORTE_QUOTE}"

    score = score_answer(answer, EVIDENCE, judge)

    assert len(score.sentences) == 2
    assert score.citation_recall == 1.0
    assert score.citation_precision == 1.0
    assert score.faithfulness == 1.0
    assert score.numeric_fidelity == 1.0
    assert score.invalid_citations == 0


def test_a_sentence_with_a_wrong_number_fails_recall_faithfulness_and_numbers(judge):
    answer = "SPINET研究[7]中兰瑞肽组的TTF为13.4个月,而安慰剂组为9.8个月。"

    score = score_answer(answer, EVIDENCE, judge)

    (sentence,) = score.sentences
    assert sentence.missing_numbers == ["13.4"]
    assert score.numeric_fidelity == pytest.approx(1 / 2)  # 9.8 is right, 13.4 is not
    assert score.citation_recall == 0.0
    assert score.citation_precision == 0.0  # ALCE: a citation of an unsupported sentence
    assert "13.4" in sentence.reason
    assert score.faithfulness == pytest.approx(1 / 2)  # the placebo clause is still right


def test_a_number_moved_to_the_wrong_arm_is_not_supported(judge):
    answer = "兰瑞肽组的治疗失败时间为9.8个月[7]。"

    score = score_answer(answer, EVIDENCE, judge)

    assert score.numeric_fidelity == 1.0  # 9.8 does occur in the evidence ...
    assert score.citation_recall == 0.0  # ... but about the placebo arm
    assert "9.8" in score.sentences[0].reason


def test_an_over_citation_halves_precision_and_keeps_recall(judge):
    answer = f"以下为综述原文摘录：{SPINET_QUOTE.replace('[7]', '[7][8]')}"

    score = score_answer(answer, EVIDENCE, judge)

    assert score.citation_recall == 1.0
    assert score.sentences[0].needed == {"7": True, "8": False}
    assert score.citation_precision == pytest.approx(1 / 2)


def test_a_sentence_without_a_citation_halves_recall(judge):
    uncited = FORTE_QUOTE.replace("[8]", "")
    answer = f"{SPINET_QUOTE}{uncited}"

    score = score_answer(answer, EVIDENCE, judge)

    assert score.citation_recall == pytest.approx(1 / 2)
    assert score.citation_precision == 1.0  # the one citation made is needed
    assert score.sentences[1].reason == "cites no valid evidence"


def test_invalid_citations_are_counted_apart_and_never_support(judge):
    answer = f"{SPINET_QUOTE.replace('[7]', '[7][12]')}兰瑞肽组的TTF为13.3个月[51]。"

    score = score_answer(answer, EVIDENCE, judge)

    assert score.citations == 3
    assert score.invalid_citations == 2
    assert set(score.sentences[0].invalid) == {"12"}  # not among the retrieved refs
    assert "outside 1-50" in score.sentences[1].invalid["51"]
    assert score.citation_recall == pytest.approx(1 / 2)  # [51] supports nothing
    assert score.citation_precision == 1.0  # only [7] is valid, and it is needed


def test_a_passage_citation_supports_a_trial_without_a_reference_number(judge):
    answer = "E2211中单药组和联合用药组的OS分别为53.8个月 vs 58.7个月,差异无统计学意义。[§3 化疗]"

    score = score_answer(answer, EVIDENCE, judge)
    wrong_section = score_answer(answer.replace("3 化疗", "4 免疫治疗"), EVIDENCE, judge)

    assert score.citation_recall == 1.0
    assert wrong_section.invalid_citations == 1
    assert wrong_section.citation_recall == 0.0


def test_an_english_claim_is_checked_on_its_numbers_and_names(judge):
    right = "In SPINET, lanreotide gave a TTF of 13.3 months versus 9.8 months with placebo [7]."
    invented = "In SPINET, the TTF with lanreotide was 13.3 months and the OS 30.1 months [7]."
    wrong_way = "In SPINET, lanreotide was worse than placebo: TTF 13.3 vs 9.8 months [7]."

    assert score_answer(right, EVIDENCE, judge).citation_recall == 1.0
    assert score_answer(invented, EVIDENCE, judge).citation_recall == 0.0
    refused = score_answer(wrong_way, EVIDENCE, judge).sentences[0]
    assert refused.supported is False and "worse" in refused.reason


def test_an_english_plural_names_what_its_chinese_evidence_says_in_the_singular(judge):
    # "NETs" for 胃肠胰及原发不明NET: Chinese has no plural.
    plural = (
        "In SPINET, lanreotide was used beyond gastroenteropancreatic NETs: TTF 13.3 months [7]."
    )
    assert score_answer(plural, EVIDENCE, judge).citation_recall == 1.0
    # A name the evidence does not hold in any number is still refused.
    other = "In SPINET, lanreotide was used beyond MiNENs: TTF 13.3 months [7]."
    refused = score_answer(other, EVIDENCE, judge).sentences[0]
    assert refused.supported is False and "minen" in refused.reason


class _UnparseableJudge:
    """A judge whose every output failed to parse."""

    name = "broken"

    def judge(self, claim, evidence):
        return Verdict(None, "invalid judge output")

    def claims(self, sentence):
        return None


def test_unparseable_judge_output_is_counted_not_guessed():
    score = score_answer(f"{SPINET_QUOTE}{FORTE_QUOTE}", EVIDENCE, _UnparseableJudge())

    assert score.citation_recall is None
    assert score.faithfulness is None
    assert score.citation_precision is None
    assert score.judge_invalid == 4  # two sentence verdicts, two claim extractions
    assert score.numeric_fidelity == 1.0  # numbers never depend on the judge


@pytest.mark.parametrize(
    "output",
    [
        "Supported.",
        '{"verdict": "yes"}',
        '{"verdict": "supported", "confidence": 0.9}',
        'The answer is {"verdict": "supported"}',
        "[]",
        "",
    ],
)
def test_a_verdict_that_does_not_parse_is_invalid(output):
    assert parse_verdict(output).supported is None


def test_a_strict_verdict_parses_with_or_without_a_json_fence():
    assert parse_verdict('{"verdict": "not_supported", "reason": "wrong arm"}') == Verdict(
        False, "wrong arm"
    )
    assert parse_verdict('```json\n{"verdict": "supported"}\n```').supported is True


def test_claims_parse_strictly():
    assert parse_claims('{"claims": ["SPINET纳入77例患者", "TTF为13.3个月"]}') == [
        "SPINET纳入77例患者",
        "TTF为13.3个月",
    ]
    assert parse_claims('{"claims": []}') == []
    assert parse_claims('{"claims": ["", "x"]}') is None
    assert parse_claims('{"claims": "TTF为13.3个月"}') is None
    assert parse_claims("1. TTF为13.3个月") is None


def _item(item_id: str, category: str, *, answerable: bool, facts=("13.3",), refs=(7,)) -> QAItem:
    out_of_scope = category == "out_of_scope"
    return QAItem(
        id=item_id,
        lang="zh",
        category=category,
        question="问题",
        gold_answer="回答" if out_of_scope else f"回答[{refs[0]}]",
        gold_refs=[] if out_of_scope else list(refs),
        key_facts=[] if out_of_scope else list(facts),
        answerable=answerable,
    )


def test_abstention_precision_and_recall():
    diabetes = _item("q901", "out_of_scope", answerable=False)
    insulin = _item("q902", "out_of_scope", answerable=False)
    spinet = _item("q903", "single_fact", answerable=True)
    injection = _item("q904", "adversarial", answerable=False)

    scores = abstention_scores(
        [(diabetes, True), (insulin, False), (spinet, True), (injection, True)]
    )

    assert scores.recall == pytest.approx(1 / 2)  # insulin was answered
    assert scores.precision == pytest.approx(2 / 3)  # abstaining on SPINET was wrong
    assert abstention_scores([(spinet, False)]).precision is None  # no abstention at all


def test_key_facts_ignore_width_spacing_and_citation_markers():
    answer = "兰瑞肽组 TTF 为１３.３个月[7]，典型类癌组的PFS达21.9个月。"

    assert missing_key_facts(answer, ["13.3个月", "PFS达21.9个月", "9.8"]) == ["9.8"]


def test_english_key_facts_ignore_case_hyphens_and_dash_variants():
    answer = (
        "The primary endpoint was the 12 month PFS rate [§3 化疗]. Temozolomide-based "
        "regimens with a Ki67 proliferation index <10% had grade 3–4 toxicity in 45%."
    )

    facts = ["12-month PFS rate", "temozolomide based", "Ki-67 proliferation index <10%"]
    assert missing_key_facts(answer, [*facts, "grade 3-4", "grade 34", "15-month"]) == [
        "grade 34",
        "15-month",
    ]


def test_cohen_kappa_of_known_ratings():
    agreement = cohen_kappa([True, True, False, False], [True, False, False, False])

    assert agreement.raw == pytest.approx(0.75)
    assert agreement.kappa == pytest.approx(0.5)
    assert cohen_kappa([True, True], [True, True]).kappa == 1.0


def test_citation_markers_parse_ranges_lists_and_passages():
    keys = [
        c.key for c in parse_answer_citations("a[4-6] b[9, 12] c【7】 d[§3 化疗] e[2022-08-25]")
    ]

    assert keys == ["4", "5", "6", "9", "12", "7", "§3 化疗", "2022", "8", "25"]


def test_a_faithful_translation_is_checked_and_judged_as_its_original(judge):
    answer, quotes = translated_answer(SPINET_EN)

    score = score_answer(answer, EVIDENCE_EN, judge, quotes, judge)

    (sentence,) = score.sentences
    assert sentence.original == SPINET and sentence.translation_problems == []
    assert score.renderings_checked == 1 and score.rendering_fidelity == 1.0
    assert score.citation_recall == 1.0 and score.faithfulness == 1.0
    assert score.numeric_fidelity == 1.0


def test_a_model_sentence_restating_a_fact_of_the_quote_is_judged_as_its_own(judge):
    """A model sentence that repeats the quote's last words ("13.8 months in the atypical
    carcinoid group [7].") is its own claim, not a part of the quote printed: the quote alone
    is checked as a translation, with its one marker (not two)."""
    answer, quotes = translated_answer(SPINET_EN)
    # The llm mode's answer: the model's sentence, then the quote it restates (no preface).
    answer = answer.replace(TRANSLATED, "13.8 months in the atypical carcinoid group [7].")

    score = score_answer(answer, EVIDENCE_EN, judge, quotes, judge)

    restated, quoted = score.sentences
    assert restated.original is None and restated.supported is True
    assert quoted.original == SPINET and quoted.translation_problems == []
    assert score.rendering_fidelity == 1.0 and score.faithfulness == 1.0


@pytest.mark.parametrize(
    ("unfaithful", "problem"),
    [
        (SPINET_EN.replace("13.3 months", "15.3 months"), "numbers"),
        (SPINET_EN.replace("^[7]", ""), "citation markers differ"),
        (SPINET_EN.replace("lanreotide", "the study drug"), "兰瑞肽"),
    ],
    ids=["changed number", "dropped marker", "missing glossary term"],
)
def test_an_unfaithful_translation_supports_nothing(judge, unfaithful, problem):
    answer, quotes = translated_answer(unfaithful)

    score = score_answer(answer, EVIDENCE_EN, judge, quotes, judge)

    (sentence,) = score.sentences
    assert sentence.supported is False and "unfaithful translation" in sentence.reason
    assert any(problem in p for p in sentence.translation_problems), sentence.translation_problems
    assert score.rendering_fidelity == 0.0
    assert score.citation_recall == 0.0 and score.faithfulness == 0.0


def test_a_passage_marker_naming_a_chinese_section_is_not_translated_text(judge):
    original = (
        "常用的生物治疗药物为长效生长抑素类似物(somatostatin analogue, SSA),"
        "包括长效奥曲肽和长效兰瑞肽。"
    )
    rendering = (
        "The commonly used biotherapy drugs are long-acting somatostatin analogues (SSA), "
        "including octreotide LAR and lanreotide autogel."
    )
    evidence = [
        {
            "chunk_id": "p-ssa",
            "text": rendering,
            "original": original,
            "refs": [],
            "section": "1 生物治疗",
            "kind": "passage",
        },
    ]
    answer = f"{TRANSLATED} {rendering}[§1 生物治疗]"

    score = score_answer(answer, evidence, judge, [QuotedRendering(rendering, original)], judge)

    assert score.sentences[0].translation_problems == []
    assert score.rendering_fidelity == 1.0 and score.citation_recall == 1.0


def test_without_the_check_a_translation_is_judged_as_written(judge):
    answer, quotes = translated_answer(SPINET_EN.replace("13.3 months", "15.3 months"))

    score = score_answer(answer, EVIDENCE_EN, judge, quotes)

    assert score.renderings_checked == 0 and score.sentences[0].original is None
    assert score.sentences[0].missing_numbers == ["15.3"]  # still caught, as any number is


def test_answered_in_the_question_language_counts_the_answer_own_text():
    english, quotes = translated_answer(SPINET_EN)
    untranslated = f"{english} 该研究共纳入77例晚期肺典型/非典型类癌[7]。"
    shown_original = f"{english} {SPINET.replace('^[7]', '[7]')}"

    assert answered_in_language(english, "en")
    assert not answered_in_language(english, "zh")
    assert not answered_in_language(untranslated, "en")  # a quote left in Chinese
    assert answered_in_language(shown_original, "en", [q.original for q in quotes])
    assert answered_in_language(f"以下为综述原文摘录：{SPINET_QUOTE}", "zh")
    assert answered_in_language("The review does not answer this question.", "en")
    assert not answered_in_language("综述未涉及该问题。", "en")


TABLE_ANSWER = (
    "综述中符合条件的试验共1项，按证据强度排列：\n\n"
    "| 试验 | 设计与分期 | 例数 | 人群 | 主要结果 | 文献 |\n"
    "| --- | --- | --- | --- | --- | --- |\n"
    "| SPINET | III期，随机，双盲 | 77 | 肺; G1, G2, Ki-67<10% | TTF 13.3个月 vs 9.8个月 | [7] |\n"
)


def test_a_table_row_claims_its_trial_and_values_and_is_read_whole_for_its_language():
    from eval.answer_text import answer_sentences

    (row,) = answer_sentences(TABLE_ANSWER)  # summary, header and rule claim nothing
    assert row.claim == "SPINET，77，10%，13.3，9.8"  # not a grade's digit, not Ki-67's
    assert [c.ref for c in row.citations] == [7]
    assert answered_in_language(TABLE_ANSWER, "zh")
    english = TABLE_ANSWER.replace("III期，随机，双盲", "phase III, randomised, double-blind")
    assert not answered_in_language(english.replace("肺", "lung"), "zh")
