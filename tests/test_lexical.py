"""The lexical tokenizer and BM25 ranking over Chinese and Latin text."""

from nenqa.glossary import normalize_text
from retriever.lexical import LexicalIndex, register_terms, tokenize


def test_tokens_keep_trial_names_numbers_and_drug_words():
    register_terms(["兰瑞肽"])
    tokens = tokenize("SPINET研究中兰瑞肽组的TTF为13.3个月, NCT02215447, 5-FU, Ki-67")
    for expected in ("spinet", "兰瑞肽", "ttf", "13.3", "nct02215447", "5-fu", "ki-67", "ki67"):
        assert expected in tokens


def test_chinese_bigrams_survive_different_word_cuts():
    # jieba may cut a name differently in a question and a passage; bigrams still overlap.
    assert {"仑伐", "伐替", "替尼"} <= set(tokenize("仑伐替尼"))


def test_full_width_forms_fold_to_half_width():
    assert normalize_text("ＣＡＳＰＩＡＮ（１３）") == "caspian(13)"
    assert "caspian" in tokenize("ＣＡＳＰＩＡＮ")


def test_bm25_ranks_the_passage_with_the_rare_terms_first():
    texts = [
        "兰瑞肽组的治疗失败时间为13.3个月, 安慰剂组为9.8个月",
        "仑伐替尼在胰腺组获得较高的客观缓解率",
        "帕博利珠单抗对PD-L1阳性实体瘤的疗效",
    ]
    index = LexicalIndex(texts)
    ranking = index.rank("仑伐替尼的客观缓解率是多少", limit=3)
    assert ranking[0][0] == 1
    assert index.rank("SPINET 13.3", limit=3)[0][0] == 0


def test_unknown_words_score_nothing():
    index = LexicalIndex(["兰瑞肽", "奥曲肽"])
    assert index.rank("metformin diabetes", limit=2) == []


def test_rank_returns_the_same_top_as_a_full_sort():
    import numpy as np

    rng = np.random.default_rng(0)
    words = ["兰瑞肽", "奥曲肽", "依维莫司", "SPINET", "TTF", "13.3", "9.8", "mPFS", "ORR"]
    texts = [" ".join(rng.choice(words, size=6)) for _ in range(500)]
    index = LexicalIndex(texts)
    query = "兰瑞肽 SPINET TTF 13.3"
    scores = index.scores(tokenize(query))
    expected = sorted(range(len(texts)), key=lambda i: (-scores[i], i))[:20]
    assert [i for i, _ in index.rank(query, 20)] == expected
