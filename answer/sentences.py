"""The quotable sentences of the indexed evidence, embedded once per generation.

An answer quotes whole sentences of the review, exactly as ingest split them: a chunk carries
their offsets (``Chunk.sentence_offsets``), so nothing here splits again. A passage chunk's are
the sentences it was built from; a trial chunk is a structured rendering of a record, so only its
``综述原文 Review text:`` line (the review's own sentences, with their citation markers) is
quotable, and a sentence the review also prints in a passage is the passage's sentence.
Reference entries are never quoted.

Rendering chunks (twins, ``Chunk.rendering_of``) hold no quotable sentence of their own: their
sentence offsets align one-to-one with their parent's, so each gives the parent's sentences
their ``renderings`` (language -> text, markers kept). A twin of a reference entry gives
``reference_rendering`` its entry.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ingest.trials import review_sentence_offsets, review_text_start
from nenqa.text import parse_citation_markers, sentence_spans, strip_citation_markers
from nenqa.types import Chunk, ChunkKind
from retriever.lexical import tokenize

_NOT_FOR_DEDUP = re.compile(r"[\s$]+")
_REFERENCE_NUMBER = re.compile(r"^\s*\[\d+\]\s*")


class ChunkLookup(Protocol):
    """Chunk ID -> indices of its quotable sentences: a dict, or a saved bank's table."""

    def get(self, chunk_id: str, default: list[int], /) -> list[int]: ...


class IdfTable(Protocol):
    """Token -> inverse sentence frequency: a dict, or a saved bank's table."""

    def get(self, token: str, default: float, /) -> float: ...

    def __contains__(self, token: object, /) -> bool: ...


@dataclass(frozen=True)
class EvidenceSentence:
    """One quotable sentence: its text as printed (markers kept), refs, and where it lives.

    ``chunk_ids`` lists every chunk the sentence appears in (overlapping windows, trial
    records); ``position`` orders sentences as the review prints them. ``language`` is the
    language of ``text``; ``renderings`` its renderings in other languages, from the twins.
    """

    text: str
    refs: tuple[int, ...]
    section: str
    kind: ChunkKind
    position: float
    chunk_ids: tuple[str, ...]
    language: str = "zh"
    renderings: Mapping[str, str] = field(default_factory=dict, compare=False)


def dedup_key(text: str) -> str:
    """Two printings of one sentence share this key (width, spaces and ``$`` folded away)."""
    return _NOT_FOR_DEDUP.sub("", unicodedata.normalize("NFKC", text))


class SentenceBank:
    """Every quotable sentence of a chunk list, with embeddings and token statistics.

    Built once per generation and saved (``answer.sentence_store.open_bank``: later processes
    open it memory-mapped: ``sentences`` and ``tokens`` are then sequences decoded on demand,
    the lookup and IDF tables read from disk); ``rebuild`` rebuilds it in place;
    ``sentences_of(chunk_id)`` is the lookup answers use.
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
        self._vector_cache: dict[str, np.ndarray] = reuse.vector_cache() if reuse else {}
        self.sentences: Sequence[EvidenceSentence] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.tokens: Sequence[frozenset[str]] = []
        self._by_chunk: ChunkLookup = {}
        self._idf: IdfTable = {}
        self._max_idf = 1.0
        self._reference_renderings: dict[str, dict[str, str]] = {}
        self._citing: dict[int, list[int]] | None = None
        self.rebuild(chunks)

    def __len__(self) -> int:
        return len(self.sentences)

    def rebuild(self, chunks: Sequence[Chunk]) -> None:
        """Split, deduplicate and embed the sentences of ``chunks`` (cached vectors reused)."""
        parents = [c for c in chunks if c.rendering_of is None]
        sentences, by_chunk = _collect_sentences(parents, _rendered_sentences(chunks))
        reference_renderings = _rendered_references(chunks)
        self._vector_cache = self.vector_cache()  # an opened bank's vectors are not cached yet
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
        self._install(sentences, matrix, tokens, by_chunk, reference_renderings)

    @classmethod
    def of_parts(
        cls,
        embedder: object,
        sentences: Sequence[EvidenceSentence],
        vectors: np.ndarray,
        tokens: Sequence[frozenset[str]],
        by_chunk: ChunkLookup,
        reference_renderings: dict[str, dict[str, str]],
        *,
        idf: tuple[IdfTable, float] | None = None,
    ) -> SentenceBank:
        """A bank from what an earlier one built (``answer.sentence_store`` saves it);
        ``idf``: the IDF table and its maximum as counted then (else counted from ``tokens``)."""
        bank = cls(embedder)
        bank._install(sentences, vectors, tokens, by_chunk, reference_renderings, idf)
        return bank

    def _install(
        self,
        sentences: Sequence[EvidenceSentence],
        vectors: np.ndarray,
        tokens: Sequence[frozenset[str]],
        by_chunk: ChunkLookup,
        reference_renderings: dict[str, dict[str, str]],
        idf: tuple[IdfTable, float] | None = None,
    ) -> None:
        if idf is None:
            document_frequency = Counter(t for toks in tokens for t in toks)
            total = max(1, len(sentences))
            counted = {t: math.log(1 + total / df) for t, df in document_frequency.items()}
            idf = counted, math.log(1 + total)
        with self._lock:
            self.sentences, self.vectors, self.tokens = sentences, vectors, tokens
            self._by_chunk = by_chunk
            self._idf, self._max_idf = idf
            self._reference_renderings = reference_renderings
            self._citing = None

    def vector_cache(self) -> dict[str, np.ndarray]:
        """Sentence text -> vector, of every sentence this bank embedded or holds (a bank over
        a new generation reuses them)."""
        with self._lock:
            held = dict(zip((s.text for s in self.sentences), self.vectors, strict=False))
            return {**self._vector_cache, **held}

    def chunk_lookup(self) -> ChunkLookup:
        """Chunk ID -> indices of its quotable sentences (what ``sentences_of`` reads)."""
        return self._by_chunk

    def idf_table(self) -> tuple[IdfTable, float]:
        """Token -> inverse sentence frequency, and the IDF of a token no sentence has."""
        return self._idf, self._max_idf

    def reference_renderings(self) -> dict[str, dict[str, str]]:
        """Dedup key of a reference entry -> language -> rendering."""
        return self._reference_renderings

    def reference_rendering(self, entry: str, language: str) -> str | None:
        """A reference entry (as printed) rendered in ``language``, if a twin renders it."""
        return self._reference_renderings.get(dedup_key(entry), {}).get(language)

    def entries_in(self, language: str) -> Callable[[str], str | None]:
        """``reference_rendering`` for one language, as ``collect_citations`` takes it."""
        return lambda entry: self.reference_rendering(entry, language)

    def sentences_of(self, chunk_id: str) -> list[int]:
        """Indices of the quotable sentences of one chunk, in reading order."""
        return self._by_chunk.get(chunk_id, [])

    def citing(self, number: int) -> list[int]:
        """Indices of the review passages' sentences that cite reference ``number``, in reading
        order. Listed for every reference in one walk over the sentences, the first time one is
        asked for (a saved bank decodes each sentence to read it: 1.1 s at 100k chunks, once
        instead of once per reference)."""
        with self._lock:
            if self._citing is None:
                citing: dict[int, list[int]] = {}
                for index, sentence in enumerate(self.sentences):
                    if sentence.kind == "passage":
                        for ref in dict.fromkeys(sentence.refs):
                            citing.setdefault(ref, []).append(index)
                self._citing = citing
            return self._citing.get(number, [])

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


def _rendered_sentences(chunks: Sequence[Chunk]) -> dict[str, dict[str, str]]:
    """Dedup key of a parent's sentence -> language -> its rendering, from the twins."""
    parents = {c.chunk_id: c for c in chunks if c.rendering_of is None}
    renderings: dict[str, dict[str, str]] = {}
    for twin in chunks:
        parent = parents.get(twin.rendering_of or "")
        if parent is None or twin.sentence_offsets is None:
            continue
        for (lo, hi), (tlo, thi) in zip(
            quotable_sentence_offsets(parent), twin.sentence_offsets, strict=False
        ):
            rendering = twin.text[tlo:thi].strip()
            if rendering:
                key = dedup_key(parent.text[lo:hi])
                renderings.setdefault(key, {}).setdefault(twin.language, rendering)
    return renderings


def _rendered_references(chunks: Sequence[Chunk]) -> dict[str, dict[str, str]]:
    """Dedup key of a reference entry -> language -> its rendering (``[n]`` and the printed
    alternate form left out)."""
    parents = {c.chunk_id: c for c in chunks if c.kind == "reference" and c.rendering_of is None}
    renderings: dict[str, dict[str, str]] = {}
    for twin in chunks:
        parent = parents.get(twin.rendering_of or "")
        if parent is not None:
            entry = _REFERENCE_NUMBER.sub("", parent.text.split("\n")[0])
            rendering = _REFERENCE_NUMBER.sub("", twin.text).strip()
            renderings.setdefault(dedup_key(entry), {})[twin.language] = rendering
    return renderings


def _collect_sentences(
    chunks: Iterable[Chunk], renderings: Mapping[str, Mapping[str, str]]
) -> tuple[list[EvidenceSentence], dict[str, list[int]]]:
    ordered = sorted(
        (c for c in chunks if c.kind != "reference"),
        # Passages first so a sentence a trial record repeats is the passage's sentence.
        key=lambda c: (c.kind != "passage", _chunk_start(c), c.chunk_id),
    )
    found: dict[str, dict] = {}
    by_chunk: dict[str, list[str]] = {}
    for chunk in ordered:
        base = _chunk_start(chunk)
        if chunk.kind != "passage":  # a trial's positions count from its review text
            base -= review_text_start(chunk.text) or 0
        for lo, hi in quotable_sentence_offsets(chunk):
            sentence = chunk.text[lo:hi]
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
                    "language": chunk.language,
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
            language=found[k]["language"],
            renderings=dict(renderings.get(k, {})),
        )
        for k in keys
    ]
    lookup = {cid: list(dict.fromkeys(index[k] for k in ks)) for cid, ks in by_chunk.items()}
    return sentences, lookup


def quotable_sentence_offsets(chunk: Chunk) -> tuple[tuple[int, int], ...]:
    """Half-open ranges in ``chunk.text`` of the sentences an answer may quote."""
    if chunk.sentence_offsets is not None:
        return chunk.sentence_offsets
    # A chunk ingest did not write (an index from before chunks carried their offsets, eval's
    # tutorial recipe, a test's chunk): the splitter ingest uses gives the same sentences.
    if chunk.kind == "passage":
        return tuple(sentence_spans(chunk.text))
    return review_sentence_offsets(chunk.text)


def _chunk_start(chunk: Chunk) -> float:
    """Where the chunk starts in its source; chunks without spans sort after the review."""
    if chunk.spans:
        return float(chunk.spans[0].start)
    start = chunk.metadata.get("start")
    return float(start) if isinstance(start, int | float) else 1e12
