"""English answers from the review's renderings, on a hand-made index (no model, no Chroma).

A Chinese question must get exactly the answer it got before renderings existed; an English
one gets the renderings with the same markers, each quote keeping its Chinese original.
"""

from __future__ import annotations

import numpy as np
import pytest

from answer.extractive import ExtractiveAnswerer
from answer.relevance import ScoringConfig, SentenceScorer
from answer.scope import ScopeCheck
from answer.sentences import SentenceBank
from nenqa.glossary import Glossary
from nenqa.types import Chunk, Question, Reference, Span
from retriever.generation import Generation
from retriever.search import HybridSearcher

SPINET_ZH = "SPINET研究中兰瑞肽组TTF为13.3个月，安慰剂组为9.8个月^[7]。"
FOLLOW_ZH = "SPINET研究的TTF结果支持兰瑞肽用于类癌。"
SPINET_EN = "In SPINET the TTF was 13.3 months with lanreotide and 9.8 months with placebo^[7]."
ENTRY_ZH = "中国抗癌协会. 神经内分泌肿瘤诊治指南 [J]. 中国癌症杂志, 2022(6): 545-580."
ENTRY_EN = "China Anti-Cancer Association. Guideline for neuroendocrine neoplasms [J]. 2022."


class SameVectorEmbedder:
    """Every text the same unit vector: the scores rest on word overlap and ranks alone."""

    def embed_queries(self, texts):
        return np.full((len(texts), 4), 0.5, dtype=np.float32)

    embed_passages = embed_queries


class ListStore:
    def __init__(self, chunks):
        self.chunks = chunks

    def generation(self):
        return Generation(0, "")

    def all_chunks(self):
        return list(self.chunks)

    def query(self, embedding, limit, where=None):
        return [(c.chunk_id, 0.9) for c in self.chunks[:limit]]


def index(with_renderings: bool) -> list[Chunk]:
    text = f"{SPINET_ZH}{FOLLOW_ZH}"
    offsets = ((0, len(SPINET_ZH)), (len(SPINET_ZH), len(text)))
    passage = Chunk(
        "p-spinet",
        "review",
        "passage",
        text,
        "1 生物治疗",
        (7,),
        ("SPINET",),
        (Span(0, len(text)),),
        {"cites": "review"},
        offsets,
    )
    reference = Chunk("r-7", "review", "reference", f"[7] {ENTRY_ZH}", "参考文献", (7,))
    chunks = [passage, reference]
    if with_renderings:
        # The second sentence has no rendering: an empty span at the end of the twin.
        end = len(SPINET_EN)
        twin_offsets = ((0, end), (end, end))
        chunks.append(
            Chunk(
                "p-spinet-en",
                "review",
                "passage",
                SPINET_EN,
                "1 生物治疗",
                (7,),
                ("SPINET",),
                metadata={"cites": "review", "rendering_of": "p-spinet"},
                sentence_offsets=twin_offsets,
                language="en",
            )
        )
        chunks.append(
            Chunk(
                "r-7-en",
                "review",
                "reference",
                f"[7] {ENTRY_EN}",
                "参考文献",
                (7,),
                metadata={"rendering_of": "r-7"},
                language="en",
            )
        )
    return chunks


def answerer(with_renderings: bool) -> ExtractiveAnswerer:
    embedder = SameVectorEmbedder()
    searcher = HybridSearcher(ListStore(index(with_renderings)), embedder, Glossary([]))
    bank = SentenceBank(embedder, searcher.chunks)
    config = ScoringConfig(min_similarity=0.5, min_overlap=0.1, margin=1.0)
    scorer = SentenceScorer(searcher, bank, ScopeCheck([c.text for c in searcher.chunks]), config)
    reference = Reference(7, ENTRY_ZH, (), "", "", 2022, "", Span(0, 1))
    return ExtractiveAnswerer(searcher, scorer, {7: reference})


@pytest.fixture(scope="module")
def bilingual():
    return answerer(with_renderings=True)


def test_each_sentence_carries_its_rendering_and_twins_add_no_sentence(bilingual):
    bank = bilingual.scorer.bank
    assert [s.text for s in bank.sentences] == [SPINET_ZH, FOLLOW_ZH]
    assert bank.sentences[0].renderings == {"en": SPINET_EN}
    assert bank.sentences[1].renderings == {}
    assert bank.reference_rendering(ENTRY_ZH, "en") == ENTRY_EN


def test_a_chinese_answer_is_byte_identical_with_or_without_renderings(bilingual):
    question = Question("SPINET研究中兰瑞肽组的TTF是多少？")
    before = answerer(with_renderings=False).answer(question)
    after = bilingual.answer(question)
    assert after.text == before.text and after.segments == before.segments
    assert after.citations == before.citations and after.passages == before.passages
    assert after.text.startswith("以下为综述原文摘录：") and "13.3个月" in after.text
    assert all(q.original is None for c in after.citations for q in c.quotes)


def test_an_english_answer_shows_the_renderings_with_the_same_markers(bilingual):
    answer = bilingual.answer(Question("What was the TTF of lanreotide in SPINET?"))
    assert answer.language == "en" and not answer.abstained
    assert answer.text.startswith("Translated from the review")
    assert "(1 without a translation, quoted in the original)" in answer.segments[0]
    assert (
        answer.segments[1]
        == " In SPINET the TTF was 13.3 months with lanreotide and 9.8 months with placebo[7]."
    )
    # The sentence without a rendering is quoted in Chinese alone, with its passage marker.
    assert answer.segments[2] == f" {FOLLOW_ZH}[§1 生物治疗]"
    assert answer.untranslated == 1
    (citation,) = answer.citations
    assert citation.ref == 7
    assert citation.reference == ENTRY_EN and citation.reference_original == ENTRY_ZH
    (quote,) = citation.quotes
    assert quote.text == SPINET_EN and quote.original == SPINET_ZH
    (passage,) = answer.passages
    assert passage.quotes[0].text == FOLLOW_ZH and passage.quotes[0].original is None


def test_the_askers_language_overrides_the_question(bilingual):
    answer = bilingual.answer(Question("SPINET研究中兰瑞肽组的TTF是多少？", language="en"))
    assert answer.language == "en" and "13.3 months" in answer.text
    chinese = bilingual.answer(Question("What was the TTF in SPINET?", language="zh"))
    assert chinese.language == "zh" and chinese.text.startswith("以下为综述原文摘录：")


def test_an_english_answer_without_renderings_says_it_quotes_the_chinese():
    answer = answerer(with_renderings=False).answer(Question("What was the TTF in SPINET?"))
    assert answer.text.startswith("Quoted from the review (original Chinese text):")
    assert SPINET_ZH.replace("^[7]", "[7]") in answer.text
    assert answer.untranslated == 2
