"""The scope probe: questions naming only what the review knows, asking what it never discusses
(side-effect care, diet, vaccines, monitoring), abstain in every mode; what it covers is still
answered, follow-ups included."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from answer.scope_probe import (
    PROBE_FILE,
    NgramWeights,
    ScopeProbe,
    corpus_coverage,
    load_probe,
    masked_question,
    ngram_vectorizer,
    probe_text,
)
from nenqa.errors import MalformedRecordError, UnreadableFileError
from nenqa.glossary import Glossary, Term
from nenqa.resources import bundled_dir
from nenqa.types import Question, Turn

GLOSSARY = Glossary(
    [
        Term(("依维莫司",), ("everolimus",), (), "drug"),
        Term(("肺类癌",), ("lung carcinoid",), (), "disease"),
        Term((), ("SPINET",), ("SPINET",), "trial"),
    ]
)


def _probe(model_id: str = "model-a", threshold: float = 0.5) -> ScopeProbe:
    return ScopeProbe(model_id, np.array([2.0, -2.0], dtype=np.float32), 0.0, threshold, {})


class _Embedder:
    """Embeds a question as (share of capitals, its complement) and records what it was asked."""

    model_id = "model-a"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def embed_queries(self, texts):
        self.asked += texts
        shares = [sum(c.isupper() for c in t) / max(len(t), 1) for t in texts]
        return np.array([[s, 1 - s] for s in shares], dtype=np.float32)


def test_the_probe_reads_what_is_asked_with_each_name_replaced_by_its_type():
    assert (
        masked_question("How should mouth ulcers caused by Everolimus be managed?", GLOSSARY)
        == "How should mouth ulcers caused by DRUG be managed?"
    )
    masked = masked_question("依维莫司治疗肺类癌，SPINET呢？", GLOSSARY)
    assert masked == "DRUG治疗DISEASE,TRIAL呢?"
    # Full-width forms fold as the glossary folds them (NFKC); the rest of the text is kept.
    assert masked_question("ＳＰＩＮＥＴ的结果", GLOSSARY) == "TRIAL的结果"


def test_a_follow_up_is_read_after_the_askers_previous_turn():
    question = Question(
        "And in atypical ones?",
        (Turn("user", "What did SPINET show?"), Turn("assistant", "Lanreotide…")),
    )
    assert probe_text(question, GLOSSARY) == "What did TRIAL show?\nAnd in atypical ones?"
    assert probe_text(Question("What did SPINET show?"), GLOSSARY) == "What did TRIAL show?"


def test_the_probability_crosses_the_threshold_only_for_its_side():
    embedder = _Embedder()
    high = _probe().out_of_scope(Question("ABCD"), GLOSSARY, embedder)
    low = _probe().out_of_scope(Question("abcd"), GLOSSARY, embedder)
    assert high is not None and high > 0.5
    assert low is not None and low < 0.5
    assert embedder.asked == ["ABCD", "abcd"]


def test_under_another_embedding_model_the_probe_does_not_apply_and_embeds_nothing():
    embedder = _Embedder()
    assert _probe(model_id="model-b").out_of_scope(Question("ABCD"), GLOSSARY, embedder) is None
    assert embedder.asked == []


def test_a_saved_probe_loads_back_the_same(tmp_path):
    path = tmp_path / "probe.json"
    weights = np.array([0.25, -1.5], dtype=np.float32)
    probe = ScopeProbe("m", weights, 0.5, 0.7, {"C": 3.0}, rare_threshold=0.45)
    probe.save(path)
    loaded = ScopeProbe.load(path)
    assert loaded.model_id == "m" and loaded.threshold == 0.7 and loaded.bias == 0.5
    assert loaded.weights.tolist() == [0.25, -1.5]
    assert loaded.provenance == {"C": 3.0}
    assert loaded.threshold_for(rare_words=True) == 0.45
    assert loaded.threshold_for(rare_words=False) == 0.7


def _ngram_probe() -> ScopeProbe:
    """A probe whose vector says nothing and whose n-grams say out of scope for 'ulcer' and
    溃疡, as fit on three questions."""
    texts = ["mouth ulcer on DRUG", "口腔溃疡 DRUG", "PFS of DRUG"]
    vectorizer = ngram_vectorizer(min_df=1).fit(texts)
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
    weights = np.array([20.0 if g.strip() in {"ulc", "溃", "疡"} else 0.0 for g in vocabulary])
    ngrams = NgramWeights(tuple(vocabulary), vectorizer.idf_.astype(np.float32), weights)
    return ScopeProbe("model-a", np.zeros(2, dtype=np.float32), -1.0, 0.5, {}, ngrams=ngrams)


def test_the_probe_reads_the_masked_questions_character_ngrams_beside_its_vector():
    probe = _ngram_probe()
    assert probe.out_of_scope(Question("Mouth ulcers on DRUG?"), GLOSSARY, _Embedder()) > 0.5
    assert probe.out_of_scope(Question("依维莫司引起口腔溃疡？"), GLOSSARY, _Embedder()) > 0.5
    assert probe.out_of_scope(Question("PFS of everolimus?"), GLOSSARY, _Embedder()) < 0.5


def test_a_saved_ngram_probe_loads_back_the_same_probabilities(tmp_path):
    path = tmp_path / "probe.json"
    probe = replace(_ngram_probe(), coverage_weights=np.array([0.5, -1.0, 2.0], np.float32))
    probe.save(path)
    loaded = ScopeProbe.load(path)
    assert loaded.coverage_weights.tolist() == [0.5, -1.0, 2.0]
    for text in ("mouth ulcers", "口腔溃疡", "PFS"):
        vector = np.zeros(2, dtype=np.float32)
        expected = probe.probability(vector, text, "mouth 口腔")
        assert loaded.probability(vector, text, "mouth 口腔") == pytest.approx(expected)


def test_coverage_is_the_share_of_the_questions_own_wording_the_corpus_holds():
    corpus = "2021年asco年会上报道了pen-221的疗效 mouth"
    # Types and capitals (DRUG, ASCO) are left out: of 年会 会上 上报 报道 道的 的疗 疗效 效如
    # 如何, all but 道的 效如 如何 are found.
    chinese = corpus_coverage("DRUG在ASCO年会上报道的疗效如何?", corpus)
    assert chinese.tolist() == pytest.approx([6 / 9, 1.0, 6 / 9])
    english = corpus_coverage("How should mouth ulcers caused by DRUG be managed?", corpus)
    assert english.tolist() == pytest.approx([1.0, 1 / 5, 1 / 5])  # should mouth … managed
    assert corpus_coverage("PFS of DRUG?", corpus).tolist() == [1.0, 1.0, 1.0]


def test_a_probe_reading_coverage_answers_more_readily_in_the_corpus_words_and_needs_them():
    probe = ScopeProbe(
        "model-a",
        np.zeros(2, dtype=np.float32),
        2.0,
        0.5,
        {},
        coverage_weights=np.array([0.0, 0.0, -4.0], dtype=np.float32),
    )
    corpus = "what was the progression of this tumour"
    asked = probe.out_of_scope(Question("What was the progression?"), GLOSSARY, _Embedder(), corpus)
    other = probe.out_of_scope(Question("Which vaccine schedule?"), GLOSSARY, _Embedder(), corpus)
    assert asked < 0.5 < other
    with pytest.raises(ValueError, match="reads the corpus"):
        probe.out_of_scope(Question("What was it?"), GLOSSARY, _Embedder())


def test_a_probe_file_without_a_rare_word_threshold_uses_its_one_threshold(tmp_path):
    path = tmp_path / "probe.json"
    record = {"model_id": "m", "weights": [1.0], "bias": 0.0, "threshold": 0.6}
    path.write_text(json.dumps(record), encoding="utf-8")
    assert ScopeProbe.load(path).threshold_for(rare_words=True) == 0.6


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not a scope probe"),
        (json.dumps({"model_id": "m", "bias": 0, "threshold": 0.6}), "not a scope probe"),
        (
            json.dumps({"model_id": "m", "weights": [1], "bias": 0, "threshold": 1.5}),
            "threshold in (0, 1]",
        ),
        (
            json.dumps(
                {
                    "model_id": "m",
                    "weights": [1],
                    "bias": 0,
                    "threshold": 0.6,
                    "rare_threshold": 0.8,
                }
            ),
            "rare_threshold must be in (0, threshold]",
        ),
        (
            json.dumps(
                {
                    "model_id": "m",
                    "weights": [1],
                    "bias": 0,
                    "threshold": 0.6,
                    "ngrams": {"vocabulary": ["a", "b"], "idf": [1.0, 1.0], "weights": [0.5]},
                }
            ),
            "vocabulary, idf and weights must be as long",
        ),
        (
            json.dumps(
                {
                    "model_id": "m",
                    "weights": [1],
                    "bias": 0,
                    "threshold": 0.6,
                    "coverage_weights": [0.5, 1.0],
                }
            ),
            "coverage_weights must be three numbers",
        ),
    ],
)
def test_a_malformed_probe_file_is_refused_with_its_name(tmp_path, content, reason):
    path = tmp_path / "bad_probe.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=r"bad_probe\.json") as error:
        ScopeProbe.load(path)
    assert reason in str(error.value)


def test_without_a_probe_file_there_is_no_probe_unless_the_settings_name_one(tmp_path):
    assert load_probe(None) is None
    assert load_probe(tmp_path / "absent.json") is None
    with pytest.raises(UnreadableFileError, match=r"absent\.json:0: no scope probe"):
        load_probe(tmp_path / "absent.json", required=True)


def test_the_bundled_probe_loads_and_says_how_it_was_fit():
    probe = ScopeProbe.load(bundled_dir("data") / PROBE_FILE)
    assert probe.weights.shape == (384,)  # multilingual-e5-small's dimension
    assert probe.ngrams is not None and len(probe.ngrams.vocabulary) > 1000
    assert probe.coverage_weights is not None and probe.coverage_weights.shape == (3,)
    assert 0.5 <= probe.threshold < 1.0
    assert 0.0 < probe.threshold_for(rare_words=True) <= probe.threshold
    assert probe.provenance["fit_on"].startswith("tune half")


@pytest.mark.slow
@pytest.mark.parametrize(
    "question",
    [
        "Should patients on lanreotide avoid alcohol?",
        "Can pembrolizumab be given to a patient with a liver transplant?",
        "兰瑞肽注射部位疼痛怎么办？",
        "宫颈神经内分泌癌怎么治疗？",
    ],
)
def test_a_question_on_what_the_review_never_discusses_abstains_in_both_modes(
    service, llm_service, scripted_llm, question
):
    scripted_llm.set_rules([{"when": "", "reply": "Yes, it is safe [7]."}])
    asked_before = len(scripted_llm.requests())
    extractive = service.answerers["extractive"].answer(Question(question))
    generated = llm_service.answerers["llm"].answer(Question(question))
    assert extractive.abstained and generated.abstained
    assert extractive.citations == () and generated.citations == ()
    assert len(scripted_llm.requests()) == asked_before  # the model was never asked


@pytest.mark.slow
def test_what_the_review_covers_is_still_answered_and_so_is_its_follow_up(service):
    answerer = service.answerers["extractive"]
    first = answerer.answer(Question("What did SPINET show for lanreotide in lung carcinoids?"))
    assert not first.abstained and 7 in {c.ref for c in first.citations}
    history = (Turn("user", "What did SPINET show for lanreotide?"), Turn("assistant", "…"))
    follow_up = answerer.answer(Question("And in atypical carcinoids?", history))
    assert not follow_up.abstained and follow_up.citations


@pytest.mark.slow
def test_a_question_about_side_effect_care_abstains_though_one_part_names_a_covered_drug(service):
    # 尿素霜 is unknown and sits in a part of its own; the part naming sunitinib asks how to
    # manage hand-foot syndrome, which the review never discusses: nothing is answered in part.
    question = Question("舒尼替尼引起手足综合征怎么处理，要不要用尿素霜？")
    answer = service.answerers["extractive"].answer(question)
    assert answer.abstained and answer.citations == ()
    assert answer.text.startswith("综述没有讨论尿素霜。")
