"""Lexical ranking: BM25 (bm25s) over jieba words plus Latin tokens.

Chinese runs are cut with jieba's search mode (so 兰瑞肽 and 瑞肽 both match) plus character
bigrams, which keep recall when jieba splits a drug name differently in query and passage.
Latin tokens keep trial names, drug names, NCT numbers and decimal numbers whole
(``clarinet``, ``5-fu``, ``nct02215447``, ``13.3``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import re
import threading
from array import array
from collections import Counter
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


_DOMAIN_FREQ = 2_000_000
_registered: Counter[str] = Counter()  # word -> how many terms named it in the last call
_dictionary_freq: dict[str, int] = {}  # jieba's own frequency of each word registered (0: none)
_dictionary_total: list[int] = []  # jieba's total before any registration
_registering = threading.Lock()


def register_terms(terms: Iterable[str]) -> None:
    """Teach jieba the domain's words (drug and trial names) so they stay whole.

    Each call replaces the words of the call before (a worker that reloads a new generation
    registers its glossary again): jieba then cuts exactly as a fresh process that registered
    only these terms would. Before, every call added each word's frequency to jieba's total
    once more, so a worker's cuts drifted from the index's with every reload, and no saved
    token list could be reused by a later build (``tokenizer_key``).
    """
    words = Counter(
        folded
        for term in terms
        if _CJK_RUN.match(folded := normalize_text(term)) and len(folded) >= 2
    )
    tokenizer = jieba.dt
    tokenizer.check_initialized()
    with _registering:
        if not _dictionary_total:
            _dictionary_total.append(tokenizer.total)
        for word in set(words) - set(_registered):
            _dictionary_freq[word] = tokenizer.FREQ.get(word) or 0
            tokenizer.add_word(word, freq=_DOMAIN_FREQ)
        for word in set(_registered) - set(words):
            # A word jieba never had keeps a zero entry, which cuts as an absent one.
            tokenizer.FREQ[word] = _dictionary_freq.pop(word)
        # jieba adds a word's frequency to its total on every add_word, repeats included.
        tokenizer.total = _dictionary_total[0] + _DOMAIN_FREQ * sum(words.values())
        _registered.clear()
        _registered.update(words)


def tokenizer_key() -> str:
    """What jieba's cuts depend on beyond its own dictionary: the words registered and how
    often. Token lists cut under one key are reused only by a build under the same key."""
    with _registering:
        lines = sorted(f"{word}\t{count}" for word, count in _registered.items())
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


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
        self._vocab: dict[str, int] | SortedVocabulary = getattr(self._bm25, "vocab_dict", {})

    def __len__(self) -> int:
        return self._size

    def save(self, folder: Path) -> None:
        """Write the index in bm25s's format plus its vocabulary sorted (``load`` memory-maps
        both back)."""
        self._bm25.save(str(folder), show_progress=False)
        SortedVocabulary.save(folder, self._bm25.vocab_dict)

    @classmethod
    def load(cls, folder: Path, *, size: int) -> LexicalIndex:
        """An index ``save`` or ``LexicalIndexWriter`` wrote, its arrays and vocabulary
        memory-mapped read-only (shared between the processes that open it; bm25s's own
        vocabulary, a dict of every token, is not read)."""
        index = cls.__new__(cls)
        index._size = size
        index._bm25 = bm25s.BM25.load(str(folder), mmap=True, load_vocab=False)
        index._vocab = SortedVocabulary(folder)
        return index

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every indexed text for the query tokens (unknown tokens score 0)."""
        if not self._size or not query_tokens:
            return np.zeros(self._size, dtype=np.float32)
        # Column IDs in query order, as bm25s maps tokens itself (so the sums are the same).
        known = [i for t in query_tokens if (i := self._vocab.get(t)) is not None]
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


class LexicalIndexWriter:
    """Builds a ``LexicalIndex`` one text at a time, with memory bounded by the vocabulary.

    ``LexicalIndex(texts)`` holds every text's token list at once (bm25s indexes a list of
    lists): at 1M chunks that alone outgrew the machine. This writer keeps each text's distinct
    token IDs and counts in a spill file, then writes the score matrix column by column into
    memory-mapped ``.npy`` files in bm25s's format, so ``LexicalIndex.load`` opens it. Scores are
    bm25s's (lucene, float32) to the bit: the same idf, the same term-frequency arithmetic.
    Columns are the tokens in byte order, and each entry's count is saved beside its score
    (``SavedCounts``), so a later generation's index is written from these counts plus its new
    texts' (``write_counts``) with nothing tokenized again.
    """

    _SPILL = 1 << 20  # (token, count) pairs buffered before they go to the spill file

    def __init__(self, folder: Path, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.folder = folder
        self._params = bm25s.BM25(k1=k1, b=b, method="lucene")
        folder.mkdir(parents=True, exist_ok=True)
        self._vocab: dict[str, int] = {}
        self._lengths = array("q")  # tokens per text, repeats included
        self._distinct = array("q")  # distinct tokens per text
        self._terms, self._counts = array("i"), array("i")
        self._doc_freq = np.zeros(0, dtype=np.int64)
        self._spill = (folder / "terms.spill").open("wb"), (folder / "counts.spill").open("wb")

    def add(self, tokens: Sequence[str]) -> None:
        """The next text's tokens (its position is the number added before it)."""
        tokens = tokens or ["<empty>"]
        vocab = self._vocab
        counts = Counter(vocab.setdefault(t, len(vocab)) for t in tokens)
        self._terms.extend(counts.keys())
        self._counts.extend(counts.values())
        self._lengths.append(len(tokens))
        self._distinct.append(len(counts))
        if len(self._terms) >= self._SPILL:
            self._flush()

    def _flush(self) -> None:
        terms = np.frombuffer(self._terms, dtype=np.int32)
        found = np.bincount(terms, minlength=len(self._vocab))
        self._doc_freq = np.pad(self._doc_freq, (0, found.size - self._doc_freq.size)) + found
        self._terms.tofile(self._spill[0])
        self._counts.tofile(self._spill[1])
        self._terms, self._counts = array("i"), array("i")

    def finish(self) -> int:
        """Write the index; returns how many texts it holds."""
        self._flush()
        for handle in self._spill:
            handle.close()
        tokens = [token.encode("utf-8") for token in self._vocab]
        by_bytes = sorted(range(len(tokens)), key=tokens.__getitem__)
        column = np.empty(len(tokens), dtype=np.int32)  # first-seen ID -> column (byte order)
        column[by_bytes] = np.arange(len(tokens), dtype=np.int32)
        doc_freq = self._doc_freq[by_bytes] if tokens else self._doc_freq
        lengths = np.frombuffer(self._lengths, dtype=np.int64)
        idf = idf_of(doc_freq, lengths.size)
        indptr = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(doc_freq, out=indptr[1:])
        entries = int(indptr[-1])
        if entries:
            data = _npy(self.folder / "data.csc.index.npy", np.float32, entries)
            rows = _npy(self.folder / "indices.csc.index.npy", np.int32, entries)
            counts = _npy(self.folder / COUNTS_FILE, np.int32, entries)
            self._fill(data, rows, counts, idf, indptr, column)
            for array_ in (data, rows, counts):
                array_.flush()
            del data, rows, counts
        else:  # no text: empty arrays (a memory map cannot be empty)
            for name, dtype in (
                ("data.csc.index.npy", np.float32),
                ("indices.csc.index.npy", np.int32),
                (COUNTS_FILE, np.int32),
            ):
                np.save(self.folder / name, np.zeros(0, dtype=dtype))
        np.save(self.folder / "indptr.csc.index.npy", indptr)
        np.save(self.folder / LENGTHS_FILE, lengths)
        (self.folder / "terms.spill").unlink()
        (self.folder / "counts.spill").unlink()
        save_vocabulary(self.folder, [tokens[i] for i in by_bytes], self._params, lengths.size)
        self._vocab = {}
        return int(lengths.size)

    def _fill(self, data, rows, counts, idf, indptr, column) -> None:
        """Each text's scores into its tokens' columns, texts in order (so each column's rows
        ascend, as bm25s sorts them), a spill-sized slice of the spill files at a time."""
        k1, b = self._params.k1, self._params.b
        lengths = np.frombuffer(self._lengths, dtype=np.int64)
        norm = length_norm(lengths, lengths.mean(), k1, b)  # bm25s: float64 mean of the lengths
        distinct = np.frombuffer(self._distinct, dtype=np.int64)
        ends = np.cumsum(distinct)
        terms_all = np.memmap(self.folder / "terms.spill", dtype=np.int32, mode="r")
        counts_all = np.memmap(self.folder / "counts.spill", dtype=np.int32, mode="r")
        filled = indptr[:-1].copy()
        first = 0
        while first < lengths.size:
            start = int(ends[first - 1]) if first else 0
            last = int(np.searchsorted(ends, start + self._SPILL, side="right"))
            last = max(last, first + 1)
            stop = int(ends[last - 1])
            terms = column[np.asarray(terms_all[start:stop])]
            tf = np.asarray(counts_all[start:stop])
            doc = np.repeat(np.arange(first, last, dtype=np.int32), distinct[first:last])
            scores = bm25_scores(idf[terms], tf, norm[doc])
            order = np.argsort(terms, kind="stable")
            terms, doc, scores, tf = terms[order], doc[order], scores[order], tf[order]
            starts = np.flatnonzero(np.r_[True, terms[1:] != terms[:-1]])
            run = np.arange(terms.size) - np.repeat(starts, np.diff(np.r_[starts, terms.size]))
            slots = filled[terms] + run
            data[slots] = scores
            rows[slots] = doc
            counts[slots] = tf
            filled[terms[starts]] += np.diff(np.r_[starts, terms.size])
            first = last
        del terms_all, counts_all


COUNTS_FILE = "counts.csc.npy"  # each entry's term frequency, beside bm25s's score
LENGTHS_FILE = "lengths.npy"  # tokens per text, repeats included


def idf_of(doc_freq: np.ndarray, texts: int) -> np.ndarray:
    """bm25s's lucene idf: ``math.log`` per token, stored as float32 (computed once per
    distinct document frequency: most tokens share a handful)."""
    if not doc_freq.size:
        return np.zeros(0, dtype=np.float32)
    distinct, index = np.unique(doc_freq, return_inverse=True)
    idf = [math.log(1 + (texts - df + 0.5) / (df + 0.5)) for df in distinct.tolist()]
    return np.array(idf, dtype=np.float32)[index.reshape(-1)]


def length_norm(lengths: np.ndarray, average: float, k1: float, b: float) -> np.ndarray:
    """Each text's part of bm25s's term-frequency denominator, ``k1 * (1 - b + b * l_d /
    avgdl)``, in float64 and in its order of operations (so a score is bm25s's to the bit)."""
    return k1 * ((1 - b) + b * lengths / average)


def bm25_scores(idf: np.ndarray, tf: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """bm25s's _score_tfc_robertson per entry (its token's ``idf``, term frequency ``tf``, its
    text's ``length_norm``), in float64 as its scalar form is, stored as float32."""
    tf = tf.astype(np.float32)
    tfc = tf / (norm + tf)
    return (idf * tfc).astype(np.float32)


def save_vocabulary(folder: Path, tokens: list[bytes], params: bm25s.BM25, texts: int) -> None:
    """The vocabulary (tokens in byte order, each its own column) as ``SortedVocabulary``
    reads it, and bm25s's parameters (bm25s's own vocabulary file is not written: nothing
    reads it, and at 100k chunks it cost a second per generation)."""
    (folder / "vocab.text").write_bytes(b"".join(tokens))
    np.save(folder / "vocab.ends.npy", np.cumsum([len(t) for t in tokens], dtype=np.int64))
    np.save(folder / "vocab.ids.npy", np.arange(len(tokens), dtype=np.int32))
    save_params(folder, params, texts)


def save_params(folder: Path, params: bm25s.BM25, texts: int) -> None:
    bm25 = params
    settings = {
        "k1": bm25.k1,
        "b": bm25.b,
        "delta": bm25.delta,
        "method": bm25.method,
        "idf_method": bm25.idf_method,
        "dtype": bm25.dtype,
        "int_dtype": bm25.int_dtype,
        "num_docs": texts,
        "version": bm25s.__version__,
        "backend": bm25.backend,
    }
    (folder / "params.index.json").write_text(json.dumps(settings, indent=4))


class SavedCounts:
    """A saved index's term counts, as ``write_counts`` takes them back: the tokens in byte
    order, each column's rows and counts (CSC) and each text's length."""

    def __init__(self, folder: Path) -> None:
        text = (folder / "vocab.text").read_bytes()
        ends = np.load(folder / "vocab.ends.npy").tolist()
        self.tokens = [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        self.indptr = np.load(folder / "indptr.csc.index.npy")
        self.rows = np.load(folder / "indices.csc.index.npy", mmap_mode="r")
        self.counts = np.load(folder / COUNTS_FILE, mmap_mode="r")
        self.lengths = np.load(folder / LENGTHS_FILE)
        if not (self.rows.size == self.counts.size == int(self.indptr[-1])):
            raise ValueError(f"the term counts in {folder} do not match its index")

    @staticmethod
    def saved_in(folder: Path) -> bool:
        return (folder / COUNTS_FILE).is_file() and (folder / LENGTHS_FILE).is_file()

    def columns(self) -> np.ndarray:
        """Each entry's column."""
        return np.repeat(np.arange(len(self.tokens), dtype=np.int64), np.diff(self.indptr))


def write_counts(
    folder: Path,
    tokens: list[bytes],
    columns: np.ndarray,
    rows: np.ndarray,
    counts: np.ndarray,
    lengths: np.ndarray,
    *,
    k1: float = 1.2,
    b: float = 0.75,
) -> None:
    """Write an index from its entries (token column, text row, term frequency; sorted by
    column then row, every column used) and each text's length: what ``LexicalIndexWriter``
    writes for the same texts, score for score."""
    folder.mkdir(parents=True, exist_ok=True)
    params = bm25s.BM25(k1=k1, b=b, method="lucene")
    doc_freq = np.bincount(columns, minlength=len(tokens)).astype(np.int64)
    indptr = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(doc_freq, out=indptr[1:])
    idf = idf_of(doc_freq, lengths.size)
    norm = length_norm(lengths, lengths.mean(), k1, b) if lengths.size else lengths
    scores = bm25_scores(idf[columns], counts, norm[rows])
    np.save(folder / "data.csc.index.npy", scores)
    np.save(folder / "indices.csc.index.npy", rows.astype(np.int32))
    np.save(folder / COUNTS_FILE, counts.astype(np.int32))
    np.save(folder / "indptr.csc.index.npy", indptr)
    np.save(folder / LENGTHS_FILE, lengths.astype(np.int64))
    save_vocabulary(folder, tokens, params, int(lengths.size))


class SortedVocabulary:
    """A saved index's tokens in byte order with their column IDs, found by binary search in
    memory-mapped arrays: bm25s's vocabulary is a dict of every token in each process (at 1M
    chunks millions of tokens, hundreds of MiB per worker)."""

    def __init__(self, folder: Path) -> None:
        with (folder / "vocab.text").open("rb") as handle:
            size = handle.seek(0, 2)
            self._text = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        # Plain arrays over the mapped pages: a memmap's own indexing costs microseconds.
        self._ends = np.asarray(np.load(folder / "vocab.ends.npy", mmap_mode="r"))
        self._ids = np.asarray(np.load(folder / "vocab.ids.npy", mmap_mode="r"))

    def tokens(self) -> list[bytes]:
        """Every token, in byte order."""
        text, ends = bytes(self._text[:]), self._ends.tolist()
        return [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]

    def _token(self, rank: int) -> bytes:
        start = int(self._ends[rank - 1]) if rank else 0
        return self._text[start : int(self._ends[rank])]

    def get(self, token: str) -> int | None:
        """The column of ``token``; ``None`` when no indexed text has it."""
        return self.column(token.encode("utf-8"))

    def column(self, key: bytes) -> int | None:
        """The column of a token given as UTF-8 bytes; ``None`` when no indexed text has it."""
        low = self.rank(key)
        if low < self._ends.size and self._token(low) == key:
            return int(self._ids[low])
        return None

    def rank(self, key: bytes) -> int:
        """How many tokens sort before ``key`` (byte order)."""
        low, high = 0, self._ends.size
        while low < high:
            middle = (low + high) // 2
            if self._token(middle) < key:
                low = middle + 1
            else:
                high = middle
        return low

    def __len__(self) -> int:
        return int(self._ends.size)

    @staticmethod
    def save(folder: Path, vocab: dict[str, int]) -> None:
        # bm25s's empty token has no column (it scores texts without tokens, which we avoid).
        pairs = sorted((token.encode("utf-8"), column) for token, column in vocab.items() if token)
        (folder / "vocab.text").write_bytes(b"".join(token for token, _ in pairs))
        ends = np.cumsum([len(token) for token, _ in pairs], dtype=np.int64)
        np.save(folder / "vocab.ends.npy", ends)
        np.save(folder / "vocab.ids.npy", np.array([c for _, c in pairs], dtype=np.int32))


def _npy(path: Path, dtype: type, size: int) -> np.ndarray:
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(size,))
