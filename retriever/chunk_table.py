"""A generation's chunk table on disk, read on demand and shared by every process through the
page cache.

Unpickling 100k ``Chunk`` objects into every worker cost each one hundreds of MiB, and the
searcher's per-chunk dicts (chunk ID to position, twins, citing passages) as much again. So a
saved generation keeps its chunks as compact JSON records in one file (``records.bin``, with
``offsets.npy``), each decoded when it is read (``ChunkTable``, a sequence of chunks), and
what the searcher looks up per position in memory-mapped arrays (``ChunkLayout``): sorted
chunk IDs, the parent position each position ranks for, each twin's language, the passages
that cite a reference or name a trial.
"""

from __future__ import annotations

import json
import mmap
import operator
import os
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import overload

import numpy as np

from nenqa.glossary import normalize_text
from nenqa.types import Chunk, Span

LANGUAGES = ("zh", "en")  # a position's language code is its index here
KINDS = ("passage", "trial", "reference")  # and its kind's
_DECODED = 2048  # chunks a table keeps decoded: a question reads a few hundred


def encode_chunk(chunk: Chunk) -> bytes:
    """One chunk as a compact JSON record (``decode_chunk`` reads it back)."""
    record = [
        chunk.chunk_id,
        chunk.doc_id,
        chunk.kind,
        chunk.text,
        chunk.section,
        chunk.refs,
        chunk.trials,
        [bound for span in chunk.spans for bound in (span.start, span.end)],
        chunk.metadata,
        chunk.sentence_offsets,
        chunk.language,
    ]
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_chunk(record: bytes) -> Chunk:
    chunk_id, doc_id, kind, text, section, refs, trials, spans, meta, offsets, language = (
        json.loads(record)
    )
    return Chunk(
        chunk_id=chunk_id,
        doc_id=doc_id,
        kind=kind,
        text=text,
        section=section,
        refs=tuple(refs),
        trials=tuple(trials),
        spans=tuple(Span(spans[i], spans[i + 1]) for i in range(0, len(spans), 2)),
        metadata=meta,
        sentence_offsets=None if offsets is None else tuple((a, b) for a, b in offsets),
        language=language,
    )


class RecordWriter:
    """Appends chunk records to ``records.bin``; ``finish`` writes ``offsets.npy``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle = (folder / "records.bin").open("wb")
        self._offsets = array("q", [0])

    def add(self, chunk: Chunk) -> int:
        """Write one chunk; returns its record number."""
        record = encode_chunk(chunk)
        self._handle.write(record)
        self._offsets.append(self._offsets[-1] + len(record))
        return len(self._offsets) - 2

    def finish(self) -> None:
        self._handle.close()
        np.save(self.folder / "offsets.npy", np.frombuffer(self._offsets, dtype=np.int64))


class ChunkTable(Sequence[Chunk]):
    """The chunks of a generation in table order, each decoded from its record when read.

    ``order`` maps a position to its record (records are written in the order the store
    returns them). A slice is a view over the same records; iterating decodes every chunk once
    (callers that walk all of them at 1M pay that time, not memory).
    """

    def __init__(self, records: bytes | mmap.mmap, offsets: np.ndarray, order: np.ndarray) -> None:
        self._records, self._offsets, self._order = records, offsets, order
        self._decoded = lru_cache(maxsize=_DECODED)(self._decode)
        # A whole saved table's per-position arrays (``snapshot`` sets them): a bank or scope
        # text of the next generation reads its chunk IDs there, decoding no chunk.
        self.layout: ChunkLayout | None = None

    @classmethod
    def open(cls, folder: Path) -> ChunkTable:
        """The table saved in ``folder``, its files memory-mapped read-only."""
        offsets = np.load(folder / "offsets.npy", mmap_mode="r")
        order = np.load(folder / "order.npy", mmap_mode="r")
        with (folder / "records.bin").open("rb") as handle:
            size = handle.seek(0, 2)
            records = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        if int(offsets[-1]) != len(records) or (order.size and int(order.max()) >= offsets.size):
            raise ValueError(f"the chunk records in {folder} do not match their offsets")
        return cls(records, offsets, order)

    def read(self, position: int) -> Chunk:
        """The chunk at a position, decoded now and not kept (a walk over the table)."""
        return self._decode(position)

    def _decode(self, position: int) -> Chunk:
        record = int(self._order[position])
        start, stop = int(self._offsets[record]), int(self._offsets[record + 1])
        return decode_chunk(self._records[start:stop])

    def __len__(self) -> int:
        return self._order.size

    @overload
    def __getitem__(self, index: int) -> Chunk: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Chunk]: ...
    def __getitem__(self, index: int | slice) -> Chunk | Sequence[Chunk]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            view = ChunkTable(self._records, self._offsets, self._order[start:stop])
            view._decoded = lambda position: self._decoded(position + start)  # one cache
            return view
        position = operator.index(index)
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(f"chunk position {index} out of range ({len(self)} chunks)")
        return self._decoded(position)

    def __iter__(self) -> Iterator[Chunk]:
        # Not through the cache: a walk over every chunk would only evict what searches reuse.
        return (self._decode(position) for position in range(len(self)))


class Postings:
    """Positions under string keys (a reference's citing passages, a trial's naming ones):
    one int32 array, each key's positions a contiguous run of it."""

    def __init__(self, runs: dict[str, tuple[int, int]], positions: np.ndarray) -> None:
        self._runs, self._positions = runs, positions

    @classmethod
    def of(cls, lists: dict[str, array]) -> Postings:
        runs, start, parts = {}, 0, []
        for key, positions in lists.items():
            runs[key] = (start, start + len(positions))
            start += len(positions)
            parts.append(np.frombuffer(positions, dtype=np.int32))
        joined = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return cls(runs, joined)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """Each key with its positions, in the order the keys were first added."""
        for key, (start, stop) in self._runs.items():
            yield key, self._positions[start:stop]

    def get(self, key: str) -> list[int]:
        run = self._runs.get(key)
        return self._positions[run[0] : run[1]].tolist() if run else []

    def save(self, folder: Path, name: str) -> None:
        np.save(folder / f"{name}.npy", self._positions)
        (folder / f"{name}.json").write_text(json.dumps(self._runs, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path, name: str) -> Postings:
        runs = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        positions = np.load(folder / f"{name}.npy", mmap_mode="r")
        return cls({key: (a, b) for key, (a, b) in runs.items()}, positions)


def citing_key(document: str, ref: int) -> str:
    return f"{document}\t{ref}"


def cited_document(chunk: Chunk) -> str:
    """The document whose reference list the chunk's numbers belong to ([7] of which review)."""
    return str(chunk.metadata.get("cites") or chunk.doc_id)


def trial_keys(chunk: Chunk) -> list[str]:
    """The chunk's trial names as the searcher looks them up (folded)."""
    return [normalize_text(trial) for trial in chunk.trials]


@dataclass(frozen=True)
class ChunkLayout:
    """What the searcher looks up per position, as arrays rather than dicts of every chunk.

    ``folded[i]`` is the parent position position ``i`` ranks for (a parent's own);
    ``languages[i]`` the index of its language in ``LANGUAGES``, ``kinds[i]`` of its kind in
    ``KINDS`` (a service finds the trial chunks without reading every chunk); ``twins`` the twin
    positions sorted by parent (``twin_parents`` their parents); ``citing`` the passages
    under ``citing_key(document, ref)``, ``naming`` those under a trial's folded name.
    """

    sorted_ids: np.ndarray
    sorted_positions: np.ndarray
    folded: np.ndarray
    languages: np.ndarray
    kinds: np.ndarray
    twins: np.ndarray
    twin_parents: np.ndarray
    citing: Postings
    naming: Postings

    _ARRAYS = (
        "sorted_ids",
        "sorted_positions",
        "folded",
        "languages",
        "kinds",
        "twins",
        "twin_parents",
    )

    def position(self, chunk_id: str) -> int | None:
        """The position of a chunk ID, ``None`` when the table has no such chunk."""
        key = chunk_id.encode("utf-8")
        # Plain views of the mapped pages: a memmap's own indexing costs tens of microseconds.
        ids = self.sorted_ids.view(np.ndarray)
        found = int(np.searchsorted(ids, key))
        if found < ids.size and ids[found] == key:
            return int(self.sorted_positions.view(np.ndarray)[found])
        return None

    def positions_of_kind(self, kind: str) -> list[int]:
        """The positions of every chunk of ``kind`` (passage, trial, reference), in order."""
        if kind not in KINDS:
            return []
        return np.flatnonzero(self.kinds == KINDS.index(kind)).tolist()

    def rendering(self, parent: int, language: str) -> int | None:
        """The position of the parent's twin in ``language`` (the last, as a dict would keep)."""
        if language not in LANGUAGES:
            return None
        parents = self.twin_parents
        lo, hi = np.searchsorted(parents, parent), np.searchsorted(parents, parent, "right")
        code = LANGUAGES.index(language)
        found = [int(t) for t in self.twins[lo:hi] if self.languages[t] == code]
        return found[-1] if found else None

    @classmethod
    def of_arrays(
        cls,
        ids: np.ndarray,
        folded: np.ndarray,
        languages: np.ndarray,
        kinds: np.ndarray,
        parent_count: int,
        *,
        citing: Postings,
        naming: Postings,
    ) -> ChunkLayout:
        """The layout of the chunks whose IDs (bytes), parent positions, language and kind
        codes are given per position (parents first); ``citing`` and ``naming`` as built."""
        order = np.argsort(ids, kind="stable").astype(np.int32)
        twins = np.arange(parent_count, folded.size, dtype=np.int32)
        twins = twins[np.argsort(folded[parent_count:], kind="stable")]
        return cls(
            sorted_ids=ids[order],
            sorted_positions=order,
            folded=folded,
            languages=languages,
            kinds=kinds,
            twins=twins,
            twin_parents=folded[twins],
            citing=citing,
            naming=naming,
        )

    def ids_by_position(self) -> np.ndarray:
        """Every position's chunk ID (bytes), in table order."""
        ids = np.empty_like(self.sorted_ids)
        ids[self.sorted_positions] = self.sorted_ids
        return ids

    def save(self, folder: Path) -> None:
        for name in self._ARRAYS:
            np.save(folder / f"{name}.npy", getattr(self, name))
        self.citing.save(folder, "citing")
        self.naming.save(folder, "naming")

    @classmethod
    def load(cls, folder: Path) -> ChunkLayout:
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in cls._ARRAYS}
        return cls(
            **arrays, citing=Postings.load(folder, "citing"), naming=Postings.load(folder, "naming")
        )


class LayoutBuilder:
    """Collects a ``ChunkLayout`` one position at a time (parents first, then twins)."""

    def __init__(self) -> None:
        self._ids: list[bytes] = []
        self._folded, self._languages, self._kinds = array("i"), array("b"), array("b")
        self._citing: dict[str, array] = defaultdict(lambda: array("i"))
        self._naming: dict[str, array] = defaultdict(lambda: array("i"))

    def add(self, chunk: Chunk, parent: int, *, cites: str, trial_keys: Iterable[str]) -> None:
        """The next position's chunk; ``parent`` its parent position (its own for a parent);
        ``cites`` the document its reference numbers belong to; ``trial_keys`` its folded
        trial names (citing and naming are kept for passages only)."""
        position = len(self._ids)
        self._ids.append(chunk.chunk_id.encode("utf-8"))
        self._folded.append(parent)
        self._languages.append(LANGUAGES.index(chunk.language))
        self._kinds.append(KINDS.index(chunk.kind))
        if chunk.kind == "passage" and parent == position:
            for ref in chunk.refs:
                self._citing[citing_key(cites, ref)].append(position)
            for key in trial_keys:
                self._naming[key].append(position)

    def finish(self, parent_count: int) -> ChunkLayout:
        ids = np.array(self._ids, dtype=np.bytes_) if self._ids else np.zeros(0, dtype="S1")
        return ChunkLayout.of_arrays(
            ids,
            np.frombuffer(self._folded, dtype=np.int32).copy(),
            np.frombuffer(self._languages, dtype=np.int8).copy(),
            np.frombuffer(self._kinds, dtype=np.int8).copy(),
            parent_count,
            citing=Postings.of(self._citing),
            naming=Postings.of(self._naming),
        )


def layout_of(chunks: Sequence[Chunk], parent_count: int) -> ChunkLayout:
    """The layout of an in-memory table (tests, tables built by hand)."""
    builder = LayoutBuilder()
    index = {c.chunk_id: i for i, c in enumerate(chunks[:parent_count])}
    for position, chunk in enumerate(chunks):
        parent = index.get(chunk.rendering_of or "", position)
        builder.add(chunk, parent, cites=cited_document(chunk), trial_keys=trial_keys(chunk))
    return builder.finish(parent_count)


def write_merged(
    target: Path,
    source: Path,
    lengths: np.ndarray,
    sources: np.ndarray,
    fresh,
    *,
    offset: int = 0,
    header: bytes = b"",
) -> np.ndarray:
    """Write ``target`` as a merge of ``source``'s records (``lengths`` bytes each, back to
    back from byte ``offset``) and new ones, after ``header``: record ``i`` is ``source``'s
    record ``sources[i]``, or ``fresh[i]`` (bytes) where ``sources[i]`` is -1. Runs of
    consecutive old records are copied in the kernel, not through Python. Returns the new
    records' lengths."""
    starts = offset + np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    new_lengths = np.zeros(sources.size, dtype=np.int64)
    old = sources >= 0
    new_lengths[old] = lengths[sources[old]]
    # A run continues while each record is the one after the record before it.
    follows = np.r_[False, (sources[1:] == sources[:-1] + 1) & old[:-1]]
    breaks = np.flatnonzero(~old | ~follows)
    with source.open("rb") as reading, target.open("wb", buffering=0) as writing:
        writing.write(header)
        for run, start in enumerate(breaks.tolist()):
            stop = int(breaks[run + 1]) if run + 1 < breaks.size else int(sources.size)
            if sources[start] < 0:
                record = fresh[start]
                writing.write(record)
                new_lengths[start] = len(record)
                continue
            begin, end = int(starts[sources[start]]), int(starts[sources[stop - 1] + 1])
            while begin < end:
                copied = os.copy_file_range(reading.fileno(), writing.fileno(), end - begin, begin)
                if copied <= 0:
                    raise OSError(f"could not copy the records of {source} ({end - begin} left)")
                begin += copied
    return new_lengths
