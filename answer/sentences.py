"""The quotable sentences of the indexed evidence, embedded once per process.

An answer quotes whole sentences of the review. Passage chunks are split back into the
sentences they were built from; a trial chunk is a structured rendering of a record, so only its
``综述原文 Review text:`` line (the review's own sentences, with their citation markers) is
quotable, and a sentence the review also prints in a passage is the passage's sentence.
Reference entries are never quoted.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ingest.review import CITATION_MARKER, parse_citation_markers
from nenqa.types import Chunk, ChunkKind
from retriever.lexical import tokenize

TRIAL_REVIEW_TEXT = "综述原文 Review text:"
CLOSERS = "”’」』）)》】]"
_ZH_END = re.compile(r"[。！？；!?]")
_EN_END = re.compile(r"[.!?](?=[\"'”’)\]]*\s+[\"'“‘(\[]?[A-Z0-9\u3400-\u9fff])")
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
_EN_ABBREVIATIONS = frozenset("al vs e.g i.e etc fig no dr approx ref vol".split())
_NOT_FOR_DEDUP = re.compile(r"[\s$]+")


@dataclass(frozen=True)
class EvidenceSentence:
    """One quotable sentence: its text as printed (markers kept), refs, and where it lives.

    ``chunk_ids`` lists every chunk the sentence appears in (overlapping windows, trial
    records); ``position`` orders sentences as the review prints them.
    """

    text: str
    refs: tuple[int, ...]
    section: str
    kind: ChunkKind
    position: float
    chunk_ids: tuple[str, ...]


def detect_language(text: str) -> str:
    """``"zh"`` when Chinese characters carry the text, else ``"en"``."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    return "zh" if cjk and cjk * 4 >= latin else "en"


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Half-open ranges of the sentences of ``text`` (Chinese or English punctuation).

    Citation markers and closing brackets after a terminator stay with its sentence, as in the
    ingest, so ``…的疗效。^[4]`` is one sentence.
    """
    pattern = _ZH_END if detect_language(text) == "zh" else _EN_END
    boundaries: list[int] = []
    for match in pattern.finditer(text):
        if match.group() == "." and _is_abbreviation(text, match.start()):
            continue
        end = match.end()
        while True:
            marker = CITATION_MARKER.match(text, end)
            if marker:
                end = marker.end()
            elif end < len(text) and text[end] in CLOSERS:
                end += 1
            else:
                break
        boundaries.append(end)
    ranges: list[tuple[int, int]] = []
    start = 0
    for end in [*boundaries, len(text)]:
        lo, hi = start, end
        while lo < hi and text[lo].isspace():
            lo += 1
        while hi > lo and text[hi - 1].isspace():
            hi -= 1
        if lo < hi:
            ranges.append((lo, hi))
        start = max(start, end)
    return ranges


def strip_citation_markers(text: str) -> str:
    """``text`` without its ``^[n]`` markers (what a reader or a model sees as the claim)."""
    return CITATION_MARKER.sub("", text)


def dedup_key(text: str) -> str:
    """Two printings of one sentence share this key (width, spaces and ``$`` folded away)."""
    return _NOT_FOR_DEDUP.sub("", unicodedata.normalize("NFKC", text))


def trial_review_text(chunk: Chunk) -> str:
    """The review's own sentences inside a trial record's rendering ('' if it has none)."""
    _, found, rest = chunk.text.partition(TRIAL_REVIEW_TEXT)
    return rest.strip() if found else ""


class SentenceBank:
    """Every quotable sentence of a chunk list, with embeddings and token statistics.

    Built once at start-up (embedding a few hundred sentences takes seconds on a CPU) and
    rebuilt with ``rebuild`` after the index changes; ``sentences_of(chunk_id)`` is the lookup
    answers use.
    """

    def __init__(
        self,
        embedder: object,
        chunks: Sequence[Chunk] = (),
        *,
        reuse: SentenceBank | None = None,
    ) -> None:
        self.embedder = embedder
        self._lock = threading.Lock()
        # Vectors of an earlier bank (same model): after a re-ingest only new sentences embed.
        self._vector_cache: dict[str, np.ndarray] = dict(reuse._vector_cache) if reuse else {}
        self.sentences: list[EvidenceSentence] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.tokens: list[frozenset[str]] = []
        self._by_chunk: dict[str, list[int]] = {}
        self._idf: dict[str, float] = {}
        self._max_idf = 1.0
        self.rebuild(chunks)

    def __len__(self) -> int:
        return len(self.sentences)

    def rebuild(self, chunks: Sequence[Chunk]) -> None:
        """Split, deduplicate and embed the sentences of ``chunks`` (cached vectors reused)."""
        sentences, by_chunk = _collect_sentences(chunks)
        missing = [s.text for s in sentences if s.text not in self._vector_cache]
        if missing:
            vectors = np.asarray(self.embedder.embed_passages(missing), dtype=np.float32)  # type: ignore[attr-defined]
            self._vector_cache.update(zip(missing, vectors, strict=True))
        matrix = (
            np.stack([self._vector_cache[s.text] for s in sentences])
            if sentences
            else np.zeros((0, 0), dtype=np.float32)
        )
        tokens = [frozenset(tokenize(strip_citation_markers(s.text))) for s in sentences]
        document_frequency = Counter(t for toks in tokens for t in toks)
        total = max(1, len(sentences))
        idf = {t: math.log(1 + total / df) for t, df in document_frequency.items()}
        with self._lock:
            self.sentences, self.vectors, self.tokens = sentences, matrix, tokens
            self._by_chunk = by_chunk
            self._idf, self._max_idf = idf, math.log(1 + total)

    def sentences_of(self, chunk_id: str) -> list[int]:
        """Indices of the quotable sentences of one chunk, in reading order."""
        return self._by_chunk.get(chunk_id, [])

    def quote_chunk(self, index: int, retrieved: Chunk) -> str:
        """The chunk to quote a sentence from: its passage, even when a trial record led to it."""
        sentence = self.sentences[index]
        if retrieved.kind == "passage" or sentence.kind != "passage":
            return retrieved.chunk_id
        return sentence.chunk_ids[0]

    def idf(self, token: str) -> float:
        """Inverse sentence frequency; a token no sentence contains gets the maximum."""
        return self._idf.get(token, self._max_idf)

    def known(self, token: str) -> bool:
        return token in self._idf


def _collect_sentences(
    chunks: Iterable[Chunk],
) -> tuple[list[EvidenceSentence], dict[str, list[int]]]:
    ordered = sorted(
        (c for c in chunks if c.kind != "reference"),
        # Passages first so a sentence a trial record repeats is the passage's sentence.
        key=lambda c: (c.kind != "passage", _chunk_start(c), c.chunk_id),
    )
    found: dict[str, dict] = {}
    by_chunk: dict[str, list[str]] = {}
    for chunk in ordered:
        text = chunk.text if chunk.kind == "passage" else trial_review_text(chunk)
        base = _chunk_start(chunk)
        for lo, hi in split_sentences(text):
            sentence = text[lo:hi]
            key = dedup_key(sentence)
            if not strip_citation_markers(sentence).strip():
                continue
            entry = found.setdefault(
                key,
                {
                    "text": sentence,
                    "refs": parse_citation_markers(sentence),
                    "section": chunk.section,
                    "kind": chunk.kind,
                    "position": base + lo,
                    "chunk_ids": [],
                },
            )
            if chunk.chunk_id not in entry["chunk_ids"]:
                entry["chunk_ids"].append(chunk.chunk_id)
            by_chunk.setdefault(chunk.chunk_id, []).append(key)
    keys = sorted(found, key=lambda k: (found[k]["position"], k))
    index = {key: i for i, key in enumerate(keys)}
    sentences = [
        EvidenceSentence(
            text=found[k]["text"],
            refs=found[k]["refs"],
            section=found[k]["section"],
            kind=found[k]["kind"],
            position=found[k]["position"],
            chunk_ids=tuple(found[k]["chunk_ids"]),
        )
        for k in keys
    ]
    lookup = {cid: list(dict.fromkeys(index[k] for k in ks)) for cid, ks in by_chunk.items()}
    return sentences, lookup


def _chunk_start(chunk: Chunk) -> float:
    """Where the chunk starts in its source; chunks without spans sort after the review."""
    if chunk.spans:
        return float(chunk.spans[0].start)
    start = chunk.metadata.get("start")
    return float(start) if isinstance(start, int | float) else 1e12


def _is_abbreviation(text: str, dot: int) -> bool:
    word = re.search(r"([A-Za-z][A-Za-z.]*)$", text[:dot])
    if not word:
        return False
    token = word.group(1)
    return token.lower() in _EN_ABBREVIATIONS or (len(token) == 1 and token.isupper())
