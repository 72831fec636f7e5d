"""Hybrid retrieval on the real corpus and model: what a clinician's question brings back."""

from __future__ import annotations

import pytest

from nenqa.types import Turn
from retriever.search import SearchFilters

pytestmark = pytest.mark.slow


def top_refs(results, n=3):
    return {ref for e in results[:n] for ref in e.chunk.refs}


def test_an_english_question_reaches_the_chinese_spinet_passage(searcher):
    results = searcher.search("what did SPINET show for lanreotide in lung carcinoids?", 5)
    assert 7 in top_refs(results, 1)
    assert any("13.3" in e.chunk.text and "9.8" in e.chunk.text for e in results[:3])


def test_english_drug_names_bridge_to_chinese_passages(searcher):
    # The body only says 仑伐替尼; the glossary and the reference titles carry "lenvatinib".
    results = searcher.search("lenvatinib objective response rate in pancreatic NET", 5)
    assert 17 in top_refs(results, 2)
    assert any("40.4%" in e.chunk.text for e in results[:3])


def test_a_chinese_question_finds_the_right_trial(searcher):
    results = searcher.search("德瓦鲁单抗联合曲美木单抗的DUNE研究各队列ORR是多少？", 5)
    assert 30 in top_refs(results, 2)


def test_a_reference_hit_lifts_the_passages_that_cite_it(searcher):
    # "belzutifan von Hippel-Lindau" is the title of reference [46]; the passage citing it
    # must come back as a passage, not only as the reference entry.
    results = searcher.search("Belzutifan for renal cell carcinoma in von Hippel-Lindau disease", 5)
    passages = [e for e in results if e.chunk.kind == "passage"]
    assert passages and 46 in passages[0].chunk.refs


def test_trials_without_a_reference_marker_are_found_and_carry_no_number(searcher):
    results = searcher.search("SEQTOR everolimus STZ-5-FU sequence 12-month PFS rate", 5)
    seqtor = [e for e in results[:3] if "SEQTOR" in e.chunk.text]
    assert seqtor
    assert all(e.chunk.refs == () for e in seqtor if e.chunk.kind == "passage")


def test_a_follow_up_uses_the_conversation(searcher):
    history = [
        Turn("user", "SPINET研究中兰瑞肽组的治疗失败时间是多少？"),
        Turn("assistant", "兰瑞肽组的TTF为13.3个月 [7]。"),
    ]
    results = searcher.search("那安慰剂组呢？", 3, history=history)
    assert 7 in top_refs(results, 1)
    assert any("9.8" in e.chunk.text for e in results)


def test_filters_restrict_kind_and_trial_metadata(searcher):
    trials = searcher.search("lanreotide", 10, filters=SearchFilters(kind="trial"))
    assert trials and all(e.chunk.kind == "trial" for e in trials)
    phase3 = searcher.search("SSA", 10, filters=SearchFilters(kind="trial", phase="III"))
    assert phase3 and all(e.chunk.metadata.get("phase") == "III" for e in phase3)
    cited = searcher.search("immunotherapy", 5, filters=SearchFilters(ref=28))
    assert cited and all(28 in e.chunk.refs for e in cited)


def test_results_are_deterministic_and_k_is_respected(searcher):
    first = searcher.search("帕博利珠单抗 Keynote-158 ORR", 7)
    second = searcher.search("帕博利珠单抗 Keynote-158 ORR", 7)
    assert len(first) == 7
    assert [e.chunk.chunk_id for e in first] == [e.chunk.chunk_id for e in second]


def test_an_empty_question_returns_nothing(searcher):
    assert searcher.search("   ", 5) == []
