"""The quotable sentences of the real corpus, and what the scope check calls out of scope."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from answer.scope import ScopeCheck
from answer.sentences import SentenceBank, dedup_key, quotable_sentence_offsets
from ingest.pipeline import default_sources, parse_sources
from ingest.trials import TRIAL_REVIEW_TEXT, review_text_start
from nenqa.glossary import load_glossary_table
from nenqa.settings import Settings
from nenqa.text import sentence_spans


class HashEmbedder:
    """Deterministic unit vectors from text hashes: no model, same text gives same vector."""

    def __init__(self) -> None:
        self.calls = 0

    def embed_passages(self, texts):
        self.calls += 1
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            row = np.random.default_rng(seed).normal(size=8)
            rows.append(row / np.linalg.norm(row))
        return np.asarray(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def corpus():
    return parse_sources(default_sources(Settings().data_dir))


@pytest.fixture(scope="module")
def bank(corpus):
    return SentenceBank(HashEmbedder(), corpus.chunks)


def test_every_passage_sentence_is_quotable_once_with_its_own_refs(bank, corpus):
    texts = [s.text for s in bank.sentences]
    assert len(texts) == len({dedup_key(t) for t in texts})
    spinet = next(s for s in bank.sentences if "SPINET随机双盲" in s.text)
    assert spinet.refs == (7,)
    assert spinet.kind == "passage"
    luna_results = next(s for s in bank.sentences if "8.51、12.48和16.53" in s.text)
    assert luna_results.refs == ()  # the review prints no marker on this sentence


def test_chunks_carry_the_sentences_the_one_splitter_gives(corpus):
    # Ingest records each chunk's sentences; splitting the chunk's quotable text again (what
    # SentenceBank did before) gives exactly the same ranges, so no quote changed.
    quotable = [c for c in corpus.chunks if c.kind != "reference"]
    assert {c.kind for c in quotable} == {"passage", "trial"}
    for chunk in quotable:
        if chunk.kind == "passage":
            start, text = 0, chunk.text
        else:
            start = review_text_start(chunk.text)
            assert start is not None and TRIAL_REVIEW_TEXT in chunk.text
            text = chunk.text[start:]
        resplit = [(start + lo, start + hi) for lo, hi in sentence_spans(text)]
        assert chunk.sentence_offsets == tuple(resplit), chunk.chunk_id
        assert quotable_sentence_offsets(chunk) == chunk.sentence_offsets


def test_a_bank_from_an_older_index_quotes_the_same_sentences(bank, corpus):
    # Chunks from an index written before they carried offsets are split on load instead.
    older = [replace(c, sentence_offsets=None) for c in corpus.chunks]
    resplit = SentenceBank(HashEmbedder(), older)

    assert resplit.sentences == bank.sentences
    assert all(resplit.sentences_of(c.chunk_id) == bank.sentences_of(c.chunk_id) for c in older)


def test_reference_entries_are_never_quotable(bank):
    assert not any(s.text.startswith("[") and "[J]" in s.text for s in bank.sentences)


def test_a_trial_record_leads_to_the_passage_sentence_it_repeats(bank, corpus):
    trial = next(c for c in corpus.chunks if c.kind == "trial" and "SPINET" in c.trials)
    review_text = trial.text[review_text_start(trial.text) :]
    assert "SPINET" in review_text
    indices = bank.sentences_of(trial.chunk_id)
    assert indices
    sentence = bank.sentences[indices[0]]
    assert sentence.kind == "passage"
    assert bank.quote_chunk(indices[0], trial).startswith("p-")


def test_sentences_are_ordered_as_the_review_prints_them(bank):
    positions = [s.position for s in bank.sentences]
    assert positions == sorted(positions)
    first_body = next(i for i, s in enumerate(bank.sentences) if "PROMID和CLARINET" in s.text)
    later = next(i for i, s in enumerate(bank.sentences) if "SPINET随机双盲" in s.text)
    assert first_body < later


def test_rebuilding_reuses_embeddings_of_unchanged_sentences(corpus):
    embedder = HashEmbedder()
    bank = SentenceBank(embedder, corpus.chunks)
    bank.rebuild(corpus.chunks)
    assert embedder.calls == 1


@pytest.fixture(scope="module")
def scope(corpus):
    terms = load_glossary_table(Settings().data_dir / "glossary.tsv")
    return ScopeCheck([c.text for c in corpus.chunks], [f for t in terms for f in t.forms])


@pytest.mark.parametrize(
    ("question", "unknown"),
    [
        ("Does hydroxychloroquine help in rheumatoid arthritis?", "hydroxychloroquine"),
        ("2型糖尿病患者的胰岛素起始剂量怎么定？", "糖尿病"),
        ("What PFS did 177Lu-DOTATATE achieve in NETTER-1?", "NETTER-1"),
        ("肝细胞癌一线使用阿替利珠单抗联合贝伐珠单抗的疗效如何？", "肝细胞癌"),
        ("Which antihypertensive suits chronic kidney disease?", "antihypertensive"),
    ],
)
def test_entities_the_review_never_mentions_are_out_of_scope(scope, question, unknown):
    assert unknown in scope.unknown_entities(question)


@pytest.mark.parametrize(
    "question",
    [
        "What did Halperin's atezolizumab-bevacizumab trial show?",
        "How large was the GETNE-TRASGU cohort and what Ki-67 ceiling did it use?",
        "What does the summary say about SSAs for low-grade NET?",
        "阿替利珠单抗联合贝伐珠单抗治疗G1/G2 NET的疗效如何？",
        "What did the 2021 phase II data for surufatinib plus toripalimab show?",
        "替莫唑胺联合纳武利尤单抗的研究提示什么指标与获益相关？",
    ],
)
def test_questions_about_the_review_name_no_unknown_entity(scope, question):
    assert scope.unknown_entities(question) == []


def test_a_bank_rebuilt_after_a_reingest_embeds_only_new_sentences(corpus):
    first = HashEmbedder()
    old = SentenceBank(first, corpus.chunks)
    second = HashEmbedder()
    SentenceBank(second, corpus.chunks, reuse=old)
    assert second.calls == 0
