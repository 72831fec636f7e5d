"""A saved sentence bank's files: JSON records read on demand, sorted lookup tables.

``answer.sentence_store`` writes a generation's bank with these and opens it with them;
``answer.sentence_update`` writes the next generation's from them.
"""

from __future__ import annotations

import json
import mmap
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Generic, TypeVar, overload

import numpy as np

from answer.sentences import EvidenceSentence
from retriever.lexical import SortedVocabulary

_DECODED = 4096  # records a saved sequence keeps decoded: a question reads a few hundred
Record = TypeVar("Record")


class SavedRecords(Sequence[Record], Generic[Record]):
    """The JSON records of ``<name>.bin`` (ends in ``<name>.offsets.npy``), memory-mapped and
    each decoded when read; equal to any sequence holding the same items."""

    def __init__(self, folder: Path, name: str, decode: Callable[[list], Record]) -> None:
        self._ends = np.asarray(np.load(folder / f"{name}.offsets.npy", mmap_mode="r"))
        with (folder / f"{name}.bin").open("rb") as handle:
            size = handle.seek(0, 2)
            self._data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        if (int(self._ends[-1]) if self._ends.size else 0) != len(self._data):
            raise ValueError(f"{name}.bin does not match its offsets")
        self._decode = decode
        self._decoded = lru_cache(maxsize=_DECODED)(self._read)

    def _read(self, index: int) -> Record:
        start = int(self._ends[index - 1]) if index else 0
        return self._decode(json.loads(self._data[start : int(self._ends[index])]))

    def __len__(self) -> int:
        return int(self._ends.size)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = operator.index(index)
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(f"record {index} out of range ({len(self)} records)")
        return self._decoded(position)

    def __iter__(self) -> Iterator[Record]:
        # Not through the cache: a walk over every record would only evict what answers reuse.
        return (self._read(index) for index in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]


class SavedLookup:
    """Chunk ID -> indices of its quotable sentences, as the saved bank's ``sentences_of``
    reads it: the chunk IDs in a sorted table, each one's indices a run of one array."""

    def __init__(self, folder: Path) -> None:
        self._keys = SortedVocabulary(folder)
        self._ends = np.asarray(np.load(folder / "ends.npy", mmap_mode="r"))
        self._indices = np.asarray(np.load(folder / "indices.npy", mmap_mode="r"))

    def get(self, chunk_id: str, default: list[int]) -> list[int]:
        key = self._keys.get(chunk_id)
        if key is None:
            return default
        start = int(self._ends[key - 1]) if key else 0
        return self._indices[start : int(self._ends[key])].tolist()

    @staticmethod
    def save(folder: Path, lookup: dict[str, list[int]]) -> None:
        """Chunk IDs in byte order, each one's run of indices in that order."""
        folder.mkdir()
        chunk_ids = sorted(lookup, key=lambda chunk_id: chunk_id.encode("utf-8"))
        SortedVocabulary.save(folder, {chunk_id: key for key, chunk_id in enumerate(chunk_ids)})
        runs = [lookup[chunk_id] for chunk_id in chunk_ids]
        np.save(folder / "ends.npy", np.cumsum([len(run) for run in runs], dtype=np.int64))
        flat = [index for run in runs for index in run]
        np.save(folder / "indices.npy", np.array(flat, dtype=np.int32))

    def runs(self) -> tuple[list[bytes], np.ndarray, np.ndarray]:
        """(chunk IDs in byte order, each one's end in ``indices``, the indices)."""
        return self._keys.tokens(), self._ends, self._indices


class SavedIdf:
    """Token -> inverse sentence frequency, counted when the bank was saved: a sorted token
    table and one float64 array (the same numbers ``SentenceBank`` counts in memory)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._tokens = SortedVocabulary(folder)
        self._values = np.asarray(np.load(folder / "idf.npy", mmap_mode="r"))

    def get(self, token: str, default: float) -> float:
        column = self._tokens.get(token)
        return default if column is None else float(self._values[column])

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self._tokens.get(token) is not None

    @staticmethod
    def save(folder: Path, idf: dict[str, float], frequency: dict[str, int]) -> None:
        """Tokens in byte order with their IDF and (``frequency``) how many sentences hold
        each, which the next generation's bank moves instead of counting every sentence."""
        folder.mkdir()
        tokens = sorted(idf, key=lambda token: token.encode("utf-8"))
        SortedVocabulary.save(folder, {token: column for column, token in enumerate(tokens)})
        np.save(folder / "idf.npy", np.array([idf[t] for t in tokens], dtype=np.float64))
        np.save(folder / "df.npy", np.array([frequency[t] for t in tokens], dtype=np.int64))

    def frequencies(self) -> dict[str, int] | None:
        """Token -> sentences holding it, as saved (``None`` for a bank saved without)."""
        path = self._folder / "df.npy"
        if not path.is_file():
            return None
        tokens = [token.decode("utf-8") for token in self._tokens.tokens()]
        return dict(zip(tokens, np.load(path).tolist(), strict=True))


def write_records(folder: Path, name: str, records: Iterable[object]) -> None:
    ends, written = [], 0
    with (folder / f"{name}.bin").open("wb") as handle:
        for record in records:
            data = encode_record(record)
            handle.write(data)
            written += len(data)
            ends.append(written)
    np.save(folder / f"{name}.offsets.npy", np.array(ends, dtype=np.int64))


def encode_record(record: object) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sentence_record(sentence: EvidenceSentence) -> list:
    return [
        sentence.text,
        sentence.refs,
        sentence.section,
        sentence.kind,
        sentence.position,
        sentence.chunk_ids,
        sentence.language,
        dict(sentence.renderings),
    ]


def sentence_of(record: list) -> EvidenceSentence:
    text, refs, section, kind, position, chunk_ids, language, renderings = record
    return EvidenceSentence(
        text=text,
        refs=tuple(refs),
        section=section,
        kind=kind,
        position=position,
        chunk_ids=tuple(chunk_ids),
        language=language,
        renderings=renderings,
    )
