"""Citation rules: review markers kept in place, model keys mapped back, numbers checked."""

from __future__ import annotations

from answer.citations import (
    DraftSentenceSplitter,
    QuotedSentence,
    check_draft_sentence,
    collect_citations,
    render_quote,
    split_draft,
)
from answer.sentences import EvidenceSentence
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


def test_keys_become_the_review_numbers_of_the_cited_sentence():
    result = check_draft_sentence("Lanreotide gave a TTF of 13.3 months vs 9.8 [S1].", KEYS)
    assert result.supported
    assert result.text == "Lanreotide gave a TTF of 13.3 months vs 9.8 [7]."


def test_a_number_missing_from_the_cited_evidence_rejects_the_sentence():
    result = check_draft_sentence("Lanreotide doubled overall survival to 26.6 months [S1].", KEYS)
    assert not result.supported
    assert "26.6" in result.reason


def test_a_number_from_other_evidence_does_not_count():
    # 8.51 is in S2, but the sentence cites only S1.
    assert not check_draft_sentence("Pasireotide alone gave 8.51 months [S1].", KEYS).supported
    assert check_draft_sentence("Pasireotide alone gave 8.51 months [S2].", KEYS).supported


def test_keys_never_given_and_numbers_typed_by_the_model_are_dropped():
    result = check_draft_sentence("TTF was 13.3 months [S1][S42][7] ^[12].", KEYS)
    assert result.supported
    assert result.text == "TTF was 13.3 months [7]."
    unknown_only = check_draft_sentence("Lanreotide cures NEC [S42][12].", KEYS)
    assert not unknown_only.supported
    assert unknown_only.reason == "cites no evidence it was given"


def test_sentence_citing_unmarked_evidence_gets_its_passage_marker():
    result = check_draft_sentence("帕瑞肽联合依维莫司组的mPFS为16.53个月[S2]。", KEYS)
    assert result.supported
    assert result.text == "帕瑞肽联合依维莫司组的mPFS为16.53个月[§1 生物治疗]。"


def test_several_keys_in_one_bracket_are_all_mapped():
    result = check_draft_sentence("Both trials [S1, S3] were positive.", KEYS)
    assert result.text == "Both trials [4][5][7] were positive."


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
