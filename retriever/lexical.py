"""Lexical ranking: BM25 (bm25s) over jieba words plus Latin tokens.

Chinese runs are cut with jieba's search mode (so 兰瑞肽 and 瑞肽 both match) plus character
bigrams, which keep recall when jieba splits a drug name differently in query and passage.
Latin tokens keep trial names, drug names, NCT numbers and decimal numbers whole
(``clarinet``, ``5-fu``, ``nct02215447``, ``13.3``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import bm25s
import jieba
import numpy as np

from nenqa.glossary import normalize_text
from nenqa.text import CJK_RANGE as _CJK

jieba.setLogLevel(logging.WARNING)

_TOKEN = re.compile(rf"[{_CJK}]+|[A-Za-z0-9αβγ]+(?:[.\-/][A-Za-z0-9αβγ]+)*")
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")

# Words too common in this corpus to carry meaning on their own.
STOPWORDS = frozenset(
    "的 了 和 与 及 或 在 是 为 对 中 其 等 例 组 个 月 患者 研究 结果 显示 治疗 提示 "
    "the a an of in and or for with to on at by vs is are was were what which how did does "
    "do show shows showed trial study patients".split()
)


def register_terms(terms: Iterable[str]) -> None:
    """Teach jieba the domain's words (drug and trial names) so they stay whole."""
    for term in terms:
        folded = normalize_text(term)
        if _CJK_RUN.match(folded) and len(folded) >= 2:
            jieba.add_word(folded, freq=2_000_000)


def tokenize(text: str) -> list[str]:
    """Tokens for BM25: jieba search-mode words and bigrams for Chinese, whole Latin tokens."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(normalize_text(text)):
        token = match.group(0)
        if _CJK_RUN.match(token):
            tokens.extend(w for w in jieba.cut_for_search(token) if w not in STOPWORDS)
            tokens.extend(token[i : i + 2] for i in range(len(token) - 1))
        else:
            token = token.strip(".-/")
            if token and token not in STOPWORDS:
                tokens.append(token)
                # "ki-67" should also match "ki67" and "5-fu" match "fu" in "5-FU-based"
                if "-" in token:
                    tokens.append(token.replace("-", ""))
    return tokens


class LexicalIndex:
    """A BM25 index over a fixed list of texts; ``rank`` returns (position, score) pairs."""

    def __init__(self, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self._size = len(texts)
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        corpus_tokens = [tokenize(t) or ["<empty>"] for t in texts]
        if corpus_tokens:
            self._bm25.index(corpus_tokens, show_progress=False)

    def __len__(self) -> int:
        return self._size

    def save(self, folder: Path) -> None:
        """Write the index in bm25s's format (``load`` memory-maps it back)."""
        self._bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, *, size: int) -> LexicalIndex:
        """An index ``save`` wrote, its arrays memory-mapped read-only (shared between the
        processes that open it)."""
        index = cls.__new__(cls)
        index._size = size
        index._bm25 = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        return index

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every indexed text for the query tokens (unknown tokens score 0)."""
        if not self._size or not query_tokens:
            return np.zeros(self._size, dtype=np.float32)
        known = [t for t in query_tokens if t in self._bm25.vocab_dict]
        if not known:
            return np.zeros(self._size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)

    def rank(
        self, query: str, limit: int, *, extra_tokens: Sequence[str] = ()
    ) -> list[tuple[int, float]]:
        """The best ``limit`` positions for ``query`` (plus expansion tokens), best first."""
        scores = self.scores([*tokenize(query), *extra_tokens])
        if not scores.size or limit <= 0:
            return []
        if limit < scores.size:
            # Select before sorting: at 100k+ chunks a full argsort dominates the query.
            top = np.argpartition(-scores, limit - 1)[:limit]
            order = top[np.lexsort((top, -scores[top]))]
        else:
            order = np.lexsort((np.arange(scores.size), -scores))
        return [(int(i), float(scores[i])) for i in order if scores[i] > 0]
