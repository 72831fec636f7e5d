"""A generation's sentence bank written from the previous generation's and the change.

At 100k chunks building a bank splits every chunk, cuts every sentence with jieba and counts
every token again: over a minute, though a change of a few documents touches a few hundred
sentences. A sentence of the bank depends only on the chunks that print it (the first of them
in reading order gives its text, section and place; all of them are its ``chunk_ids``) and the
twins of those chunks (its renderings). So ``update_bank`` keeps every sentence whose chunks
the change left alone, with its record, token set and vector as saved; builds again, with the
same code as a full build (``answer.sentences``), the sentences of the chunks added and of the
chunks that printed a sentence the change touched; and writes the rest from those: the reading
order (old sentences keep theirs, new ones are merged in), the chunk lookup, and the IDF
(document frequencies saved per token, moved by the sentences out and in). The result is the
full build's: the same sentences in the same order, token sets, vectors, lookup and IDF.

Token sets are reused only when jieba cuts as it did for the previous bank (the same
``lexical.tokenizer_key``); otherwise, or when the previous bank predates what this reads, the
bank is built in full.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from answer.saved_bank import (
    SavedIdf,
    SavedLookup,
    SavedRecords,
    encode_record,
    sentence_of,
    sentence_record,
)
from answer.sentences import (
    _collect_sentences,
    _rendered_references,
    _rendered_sentences,
    dedup_key,
    quotable_sentence_offsets,
)
from nenqa.text import strip_citation_markers
from nenqa.types import Chunk
from retriever.chunk_table import ChunkLayout, ChunkTable, write_merged
from retriever.lexical import tokenize, tokenizer_key

log = logging.getLogger("nenqa.sentences")


ChunkIndex = tuple[np.ndarray, np.ndarray, np.ndarray]
MAX_UPDATE_SHARE = 0.25  # past this share of new chunks a bank is built in full


def chunk_index(chunks: Sequence[Chunk]) -> ChunkIndex:
    """The generation's chunk IDs (sorted, bytes) and its twins' IDs with their parents' (by
    twin ID): read from the saved tables' layout without decoding a chunk, else from the
    chunks (a table built in memory)."""
    layout = _layout(chunks)
    if layout is None:
        ids = np.array(sorted(c.chunk_id.encode("utf-8") for c in chunks), dtype=np.bytes_)
        twins = sorted(
            (c.chunk_id.encode("utf-8"), c.rendering_of.encode("utf-8"))
            for c in chunks
            if c.rendering_of
        )
        return (
            ids,
            np.array([t for t, _ in twins], dtype=np.bytes_),
            np.array([p for _, p in twins], dtype=np.bytes_),
        )
    ids = layout.ids_by_position()
    parent_count = int(np.sum(layout.folded == np.arange(layout.folded.size)))
    twins = np.arange(parent_count, ids.size)
    order = np.argsort(ids[twins], kind="stable")
    return layout.sorted_ids, ids[twins][order], ids[layout.folded[twins]][order]


def _layout(chunks: Sequence[Chunk]) -> ChunkLayout | None:
    return chunks.layout if isinstance(chunks, ChunkTable) else None


def key_hash(key: str) -> int:
    """A sentence's dedup key as a 63-bit number (the saved bank's key table holds these;
    a match is confirmed on the sentence itself)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def save_update_index(
    folder: Path, positions: np.ndarray, hashes: np.ndarray, index: ChunkIndex
) -> None:
    """What a later generation's update reads beside a saved bank: the generation's chunk IDs
    and twins, each sentence's place in reading order, its key's hash (``key_hash``) sorted."""
    ids, twin_ids, twin_parents = index
    np.save(folder / "chunk_ids.npy", ids)
    np.save(folder / "twin_ids.npy", twin_ids)
    np.save(folder / "twin_parents.npy", twin_parents)
    np.save(folder / "positions.npy", positions.astype(np.float64))
    order = np.argsort(hashes, kind="stable")
    np.save(folder / "key_hashes.npy", hashes[order])
    np.save(folder / "key_indices.npy", order.astype(np.int32))


def can_update(folder: Path, meta: dict) -> bool:
    """Whether the bank saved in ``folder`` keeps what an update reads, its token sets cut
    as this process cuts."""
    return meta.get("tokenizer") == tokenizer_key() and all(
        (folder / name).is_file()
        for name in (
            "chunk_ids.npy",
            "twin_ids.npy",
            "positions.npy",
            "key_hashes.npy",
            "idf/df.npy",
        )
    )


def update_bank(
    work: Path, previous: Path, chunks: Sequence[Chunk], embedder: object, index: ChunkIndex
) -> tuple[int, float] | None:
    """Write into ``work`` the bank of ``chunks`` (the new generation's table, ``index`` its
    chunk index) from the bank saved in ``previous`` and the change between them; returns the
    sentence count and the IDF of a token no sentence has, or ``None`` (build it in full)."""
    layout = _layout(chunks)
    old_ids = np.load(previous / "chunk_ids.npy")
    new_ids = index[0]
    added, removed = _missing(new_ids, old_ids), _missing(old_ids, new_ids)
    if layout is None or len(added) > MAX_UPDATE_SHARE * max(1, old_ids.size):
        return None
    old = _SavedBank(previous)
    if not len(old.sentences):
        return None

    def chunk(chunk_id: bytes) -> Chunk:
        position = layout.position(chunk_id.decode("utf-8"))
        if position is None:
            raise KeyError(f"chunk {chunk_id!r} is not in the table")
        return chunks[position]

    # The old sentences the change touches, and the parents whose sentences are built again.
    affected: set[int] = set()
    touched: set[bytes] = set()
    old_twins = dict(zip(old.twin_ids.tolist(), old.twin_parents.tolist(), strict=True))
    for chunk_id in removed:
        affected.update(old.lookup.get(chunk_id.decode("utf-8"), []))
        if (parent := old_twins.get(chunk_id)) is not None:
            affected.update(old.lookup.get(parent.decode("utf-8"), []))
    added_parents = []
    for chunk_id in added:
        new = chunk(chunk_id)
        if new.rendering_of is not None:
            affected.update(old.lookup.get(new.rendering_of, []))
            touched.add(new.rendering_of.encode("utf-8"))
            continue
        added_parents.append(new)
        touched.add(chunk_id)
        for lo, hi in quotable_sentence_offsets(new):
            if (found := old.index_of(dedup_key(new.text[lo:hi]))) is not None:
                affected.add(found)
    affected_keys = {dedup_key(old.sentences[i].text) for i in affected}
    for new in added_parents:
        affected_keys.update(
            dedup_key(new.text[lo:hi]) for lo, hi in quotable_sentence_offsets(new)
        )
    gone = set(removed)
    for i in affected:
        touched.update(c.encode("utf-8") for c in old.sentences[i].chunk_ids)
    touched -= gone
    touched = {c for c in touched if layout.position(c.decode("utf-8")) is not None}

    # Those parents' sentences, with every twin of theirs, as a full build makes them.
    positions = sorted(layout.position(c.decode("utf-8")) for c in touched)
    twins = np.flatnonzero(np.isin(layout.folded, positions))
    twins = twins[twins >= layout.folded.size - index[1].size]
    involved = [chunks[p] for p in [*positions, *twins.tolist()]]
    rebuilt, rebuilt_lookup = _collect_sentences(
        [c for c in involved if c.rendering_of is None], _rendered_sentences(involved)
    )
    fresh = [s for s in rebuilt if dedup_key(s.text) in affected_keys]
    fresh_keys = [dedup_key(s.text) for s in fresh]

    # The reading order: the old sentences left alone keep theirs; the fresh ones merge in.
    kept = np.ones(len(old.sentences), dtype=bool)
    kept[list(affected)] = False
    kept_old = np.flatnonzero(kept)
    places = old.positions[kept_old]
    slots = [
        old.slot(kept_old, places, s.position, k) for s, k in zip(fresh, fresh_keys, strict=True)
    ]
    sources = np.insert(kept_old, slots, -1)
    fresh_at = np.flatnonzero(sources < 0)  # slots ascend as the fresh ones do
    new_of_old = np.full(len(old.sentences), -1, dtype=np.int64)
    new_of_old[kept_old] = np.flatnonzero(sources >= 0)
    fresh_index = dict(zip(fresh_keys, fresh_at.tolist(), strict=True))
    for i in affected:
        new_of_old[i] = fresh_index.get(dedup_key(old.sentences[i].text), -1)

    texts = {old.sentences[i].text: i for i in affected}
    missing = [s.text for s in fresh if s.text not in texts]
    embedded = (
        dict(
            zip(
                missing, np.asarray(embedder.embed_passages(missing), dtype=np.float32), strict=True
            )
        )
        if missing
        else {}
    )  # type: ignore[attr-defined]
    rows = {}
    for at, sentence in zip(fresh_at.tolist(), fresh, strict=True):
        held = texts.get(sentence.text)
        vector = old.vectors[held] if held is not None else embedded[sentence.text]
        rows[at] = np.asarray(vector, dtype="<f4").tobytes()
    _write_vectors(work / "vectors.npy", previous / "vectors.npy", old.vectors, sources, rows)

    fresh_tokens = [frozenset(tokenize(strip_citation_markers(s.text))) for s in fresh]
    for name, records in (
        ("sentences", [sentence_record(s) for s in fresh]),
        ("tokens", [sorted(t) for t in fresh_tokens]),
    ):
        ends = np.load(previous / f"{name}.offsets.npy")
        lengths = write_merged(
            work / f"{name}.bin",
            previous / f"{name}.bin",
            np.diff(ends, prepend=0),
            sources,
            {at: encode_record(r) for at, r in zip(fresh_at.tolist(), records, strict=True)},
        )
        np.save(work / f"{name}.offsets.npy", np.cumsum(lengths).astype(np.int64))

    lookup = old.lookup_without(gone, new_of_old)
    rebuilt_keys = [dedup_key(s.text) for s in rebuilt]
    for new in added_parents:
        if new.chunk_id in rebuilt_lookup:
            lookup[new.chunk_id] = [
                fresh_index[rebuilt_keys[i]] for i in rebuilt_lookup[new.chunk_id]
            ]
    SavedLookup.save(work / "lookup", lookup)

    frequency = old.frequencies()
    for i in affected:
        for token in old.tokens[i]:
            frequency[token] -= 1
    for tokens in fresh_tokens:
        for token in tokens:
            frequency[token] = frequency.get(token, 0) + 1
    frequency = {t: n for t, n in frequency.items() if n > 0}
    total = max(1, int(sources.size))
    idf = {t: math.log(1 + total / n) for t, n in frequency.items()}
    SavedIdf.save(work / "idf", idf, frequency)
    references = json.dumps(_references(chunks, layout), ensure_ascii=False)
    (work / "references.json").write_text(references, "utf-8")

    positions_new = np.empty(sources.size, dtype=np.float64)
    positions_new[sources >= 0] = old.positions[kept_old]
    positions_new[fresh_at] = [s.position for s in fresh]
    hashes = np.empty(sources.size, dtype=np.int64)
    hashes[sources >= 0] = old.hashes_by_index()[kept_old]
    hashes[fresh_at] = [key_hash(k) for k in fresh_keys]
    save_update_index(work, positions_new, hashes, index)
    return int(sources.size), math.log(1 + total)


def _missing(ids: np.ndarray, other: np.ndarray) -> list[bytes]:
    """The IDs of sorted ``ids`` that sorted ``other`` lacks."""
    if not other.size:
        return ids.tolist()
    found = np.minimum(np.searchsorted(other, ids), other.size - 1)
    return ids[other[found] != ids].tolist()


def _write_vectors(target: Path, source: Path, old: np.ndarray, sources, rows) -> None:
    """``vectors.npy`` of the new order: the kept rows copied from the saved file in the
    kernel, the fresh ones (``rows``: float32 bytes by new index) in between."""
    header = io.BytesIO()
    shape = (int(sources.size), int(old.shape[1]))
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    lengths = np.full(old.shape[0], old.shape[1] * 4, dtype=np.int64)
    offset = getattr(old, "offset", 0)
    write_merged(target, source, lengths, sources, rows, offset=offset, header=header.getvalue())


def _references(chunks: Sequence[Chunk], layout: ChunkLayout) -> dict[str, dict[str, str]]:
    """The reference renderings, from the reference entries and their twins (few)."""
    entries = layout.positions_of_kind("reference")
    twins = np.flatnonzero(np.isin(layout.folded, entries))
    twins = [t for t in twins.tolist() if t not in set(entries)]
    return _rendered_references([chunks[p] for p in [*entries, *twins]])


class _SavedBank:
    """What an update reads of the previous generation's saved bank."""

    def __init__(self, folder: Path) -> None:
        self.sentences = SavedRecords(folder, "sentences", sentence_of)
        self.tokens = SavedRecords(folder, "tokens", frozenset)
        self.vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        self.lookup = SavedLookup(folder / "lookup")
        self.idf = SavedIdf(folder / "idf")
        self.positions = np.load(folder / "positions.npy")
        self.hashes = np.load(folder / "key_hashes.npy")
        self.key_indices = np.load(folder / "key_indices.npy")
        self.twin_ids = np.load(folder / "twin_ids.npy")
        self.twin_parents = np.load(folder / "twin_parents.npy")

    def index_of(self, key: str) -> int | None:
        """The index of the sentence with this dedup key, if the bank has one."""
        hashed = key_hash(key)
        lo = int(np.searchsorted(self.hashes, hashed, "left"))
        hi = int(np.searchsorted(self.hashes, hashed, "right"))
        for index in self.key_indices[lo:hi].tolist():
            if dedup_key(self.sentences[index].text) == key:
                return int(index)
        return None

    def hashes_by_index(self) -> np.ndarray:
        by_index = np.empty(self.hashes.size, dtype=np.int64)
        by_index[self.key_indices] = self.hashes
        return by_index

    def slot(self, kept: np.ndarray, places: np.ndarray, position: float, key: str) -> int:
        """Where a sentence at ``position`` with ``key`` goes among the ``kept`` ones (at
        ``places``; sorted by place, then key, as a full build orders them): a binary search
        by place, then by key among the same place's (many share one: chunks without spans)."""
        lo = int(np.searchsorted(places, position, "left"))
        hi = int(np.searchsorted(places, position, "right"))
        while lo < hi:
            middle = (lo + hi) // 2
            if dedup_key(self.sentences[int(kept[middle])].text) < key:
                lo = middle + 1
            else:
                hi = middle
        return lo

    def frequencies(self) -> dict[str, int]:
        found = self.idf.frequencies()
        if found is None:
            raise ValueError("the saved bank has no token frequencies")
        return found

    def lookup_without(self, gone: set[bytes], new_of_old: np.ndarray) -> dict[str, list[int]]:
        """The chunk lookup of the chunks the change kept, their sentences renumbered."""
        chunk_ids, ends, indices = self.lookup.runs()
        mapped = new_of_old[indices].tolist()
        lookup, start = {}, 0
        for chunk_id, end in zip(chunk_ids, ends.tolist(), strict=True):
            if chunk_id not in gone:
                lookup[chunk_id.decode("utf-8")] = mapped[start:end]
            start = end
        return lookup
