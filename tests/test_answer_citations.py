"""Citation rules: review markers kept in place, a model's sentence cited with what it restates."""

from __future__ import annotations

import pytest

from answer.citations import (
    DraftSentenceSplitter,
    QuotedSentence,
    cite,
    collect_citations,
    render_quote,
    split_draft,
)
from answer.claims import ClaimChecker, flipped_group, same_concept
from answer.sentences import EvidenceSentence
from nenqa.glossary import Term
from nenqa.types import Reference, Span

SPINET = EvidenceSentence(
    text="SPINET随机双盲Ⅲ期研究^[7]结果提示,兰瑞肽组的TTF为13.3个月,而安慰剂组为9.8个月。",
    refs=(7,),
    section="1 生物治疗",
    kind="passage",
    position=100,
    chunk_ids=("p-spinet",),
)
LUNA_RESULT = EvidenceSentence(
    text="结果显示,帕瑞肽单药组、依维莫司单药组和帕瑞肽联合依维莫司组的mPFS分别为8.51、12.48和16.53个月。",
    refs=(),
    section="1 生物治疗",
    kind="passage",
    position=200,
    chunk_ids=("p-luna",),
)
PROMID = EvidenceSentence(
    text="PROMID和CLARINET两大经典药物临床试验^[4-5]分别证实了其疗效,见$P>0.05$。",
    refs=(4, 5),
    section="1 生物治疗",
    kind="passage",
    position=50,
    chunk_ids=("p-promid",),
)
KEYS = {
    "S1": QuotedSentence(SPINET, "p-spinet"),
    "S2": QuotedSentence(LUNA_RESULT, "p-luna"),
    "S3": QuotedSentence(PROMID, "p-promid"),
}


def reference(number: int) -> Reference:
    return Reference(number, f"entry {number}", (), "", "", None, "", Span(0, 1))


def test_quoted_sentence_keeps_its_markers_where_the_review_prints_them():
    assert (
        render_quote(PROMID)
        == "PROMID和CLARINET两大经典药物临床试验[4][5]分别证实了其疗效,见P>0.05。"
    )


def test_a_quote_shows_the_extractions_latex_as_a_reader_sees_it():
    dll3 = EvidenceSentence(
        text="且在DLL3表达 $\\geq 50\\%$ 的亚组中, ORR和PFS获益更显著^[41-42]。",
        refs=(41, 42),
        section="4 免疫治疗",
        kind="passage",
        position=300,
        chunk_ids=("p-dll3",),
    )
    assert render_quote(dll3) == "且在DLL3表达 ≥ 50% 的亚组中, ORR和PFS获益更显著[41][42]。"


def test_sentence_without_marker_is_cited_by_its_section_never_a_number():
    rendered = render_quote(LUNA_RESULT)
    assert rendered.endswith("[§1 生物治疗]")
    assert "[1]" not in rendered and "^[" not in rendered


def test_unknown_reference_numbers_are_never_printed():
    assert render_quote(PROMID, known_refs={4}).startswith(
        "PROMID和CLARINET两大经典药物临床试验[4]分"
    )


def test_citations_list_refs_in_order_and_passages_separately():
    quoted = [KEYS["S3"], KEYS["S1"], KEYS["S2"]]
    citations, passages = collect_citations(quoted, {n: reference(n) for n in (4, 5, 7)})
    assert [c.ref for c in citations] == [4, 5, 7]
    assert citations[2].quotes[0].text == SPINET.text
    assert [p.section for p in passages] == ["1 生物治疗"]
    assert passages[0].quotes[0].chunk_id == "p-luna"


def test_a_plain_sentence_is_cited_with_the_review_numbers_of_what_it_restates():
    result = ClaimChecker(None).align(
        "兰瑞肽组的TTF为13.3个月，而安慰剂组为9.8个月。", list(KEYS.values())
    )
    assert result.supported and result.cited == (KEYS["S1"],)
    assert cite(result.claim, result.cited) == "兰瑞肽组的TTF为13.3个月，而安慰剂组为9.8个月[7]。"


def test_a_sentence_sharing_only_numbers_with_its_evidence_restates_none_of_it():
    # Most of its words are not the evidence's (here: another language, no rendering shown):
    # the quote it would stand for is kept instead.
    result = ClaimChecker(None).align(
        "Lanreotide gave a TTF of 13.3 months vs 9.8.", list(KEYS.values())
    )
    assert not result.supported and result.cited == ()
    assert result.problem.startswith("restates none")


def test_a_number_missing_from_the_evidence_rejects_the_sentence():
    result = ClaimChecker(None).align("兰瑞肽组的TTF为13.3个月，安慰剂组为26.6个月。", [KEYS["S1"]])
    assert not result.supported
    assert "26.6" in result.problem


def test_a_sentence_is_aligned_with_the_evidence_holding_its_numbers():
    # 8.51 is in the LUNA sentence only: that is the one cited, with its passage marker.
    result = ClaimChecker(None).align("帕瑞肽单药组的mPFS为8.51个月。", list(KEYS.values()))
    assert result.supported and result.cited == (KEYS["S2"],)
    assert cite(result.claim, result.cited) == "帕瑞肽单药组的mPFS为8.51个月[§1 生物治疗]。"


def test_a_sentence_restating_no_evidence_is_rejected():
    result = ClaimChecker(None).align("Lanreotide cures NEC.", list(KEYS.values()))
    assert not result.supported
    assert result.problem == "restates none of the evidence it was given"


def test_streamed_text_is_cut_into_whole_sentences_with_their_keys():
    splitter = DraftSentenceSplitter()
    pieces = ["TTF was 13", ".3 months.", " [S", "1] Placebo", " gave 9.8 [S1", "].", ""]
    out = [sentence for piece in pieces for sentence in splitter.feed(piece)]
    out += splitter.flush()
    assert out == ["TTF was 13.3 months. [S1]", "Placebo gave 9.8 [S1]."]


def test_chinese_draft_sentences_split_on_chinese_punctuation():
    assert split_draft("兰瑞肽组TTF为13.3个月[S1]。安慰剂组为9.8个月[S1]。") == [
        "兰瑞肽组TTF为13.3个月[S1]。",
        "安慰剂组为9.8个月[S1]。",
    ]


def test_a_number_alone_is_not_a_statement():
    # "32." restates a number of its evidence, but not what was 32: the quote stays instead.
    alone = ClaimChecker(None).align("13.3。", [KEYS["S1"]])
    assert not alone.supported and alone.problem.startswith("a number alone")
    said = ClaimChecker(None).align("兰瑞肽组的TTF为13.3个月。", [KEYS["S1"]])
    assert said.supported


EVIDENCE_BY_HISTOLOGY = (
    "PFS reached 21.9 months in the typical carcinoid group and 13.8 months in the atypical "
    "carcinoid group"
)


@pytest.mark.parametrize(
    ("claim", "evidence", "problem"),
    [
        ("The PFS in typical histology was 13.8 months", EVIDENCE_BY_HISTOLOGY, "for typical"),
        ("PFS was 21.9 months in atypical carcinoids", EVIDENCE_BY_HISTOLOGY, "for atypical"),
        ("PFS was 21.9 months in typical carcinoids", EVIDENCE_BY_HISTOLOGY, ""),
        ("非胰腺组的ORR为20%", "胰腺组的ORR为20%，非胰腺组的ORR为15%", "for 非胰腺"),
        ("非胰腺组的ORR为15%", "胰腺组的ORR为20%，非胰腺组的ORR为15%", ""),
        (
            "In the non-pancreatic group the ORR was 20%",
            "the ORR was 20% in the pancreatic group and 15% in the non-pancreatic group",
            "for non-pancreatic",
        ),
        # "a" + "live" is no group: only words of five letters or more are negated by "a".
        ("Patients were alive at 12 months", "12 months of live follow-up", ""),
    ],
)
def test_a_number_given_to_the_opposite_group_is_found(claim, evidence, problem):
    found = flipped_group(claim, evidence)
    assert (problem in found) if problem else found == ""


def test_a_form_inside_another_is_the_same_concept_but_its_opposite_group_is_not():
    typical = Term(("典型类癌",), ("typical carcinoid",), (), "disease")
    atypical = Term(("非典型类癌",), ("atypical carcinoid",), (), "disease")
    survival = Term(("总生存期",), ("overall survival",), ("OS",), "endpoint")
    median = Term(("中位OS",), ("median overall survival",), ("mOS",), "endpoint")
    assert not same_concept(typical, atypical) and not same_concept(atypical, typical)
    assert same_concept(survival, median)
