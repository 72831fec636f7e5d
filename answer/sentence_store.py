"""The quotable sentences of a generation, embedded once and opened by every process.

``SentenceBank`` splits every chunk into quotable sentences and embeds each one: seconds for
the default corpus, hours per process at 100k chunks. So the first process that needs a
generation's bank saves it beside the index
(``<index_dir>/sentences/<model hash>/<number>-<fingerprint>/``), and every later process,
worker and reload opens it with nothing of it read into its own memory: the sentences and
their token sets are JSON records in one file each (``sentences.bin``, ``tokens.bin``, with
their offsets), decoded when read; the chunk lookup and the sentences' IDF (counted once, when
saved) are sorted, memory-mapped tables (``lookup/``, ``idf/``); the vectors are
``vectors.npy``; all opened read-only and memory-mapped, so every worker shares their pages.
Only the reference renderings (one per reference entry) are read as JSON. Keyed by the
generation and the embedding model, so another model never reuses vectors. A new generation
reuses the vectors of the bank this process held, or else of the newest saved one, so only new
sentences are embedded.

Written under a temporary name and renamed into place, as the search tables are
(``retriever.snapshot``); the two newest generations per model are kept. A folder that does not
match (another format, generation or model) or cannot be read is rebuilt with a warning; an
index folder that cannot be written leaves the bank in this process's memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Generic, TypeVar, overload

import numpy as np

from answer.sentences import EvidenceSentence, SentenceBank
from nenqa.types import Chunk
from retriever.generation import Generation, fingerprint_of
from retriever.lexical import SortedVocabulary
from retriever.snapshot import generation_folder, one_builder, save_folder

FORMAT = 2  # 1: sentences, token sets and chunk lookup as JSON read into every process

log = logging.getLogger("nenqa.sentences")

_DECODED = 4096  # records a saved sequence keeps decoded: a question reads a few hundred
Record = TypeVar("Record")


def sentences_root(index_dir: Path, model_id: str) -> Path:
    """Where the saved banks of one embedding model live (a hash: model IDs hold slashes)."""
    return index_dir / "sentences" / hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:16]


def open_bank(
    embedder: object,
    chunks: Sequence[Chunk],
    *,
    index_dir: Path | None,
    generation: Generation,
    reuse: SentenceBank | None = None,
) -> SentenceBank:
    """The sentence bank of ``generation`` (whose chunks are ``chunks``): opened from its saved
    folder, or built (vectors of ``reuse`` or of the newest saved bank reused) and saved by one
    process while another that needs it waits for it.
    Kept in memory only when there is nowhere to save it (no ``index_dir``, an embedder without
    ``model_id``, an index published before generations, chunks that are not the generation's,
    a folder that cannot be written)."""
    model_id = getattr(embedder, "model_id", None)
    if index_dir is None or not isinstance(model_id, str) or not generation.fingerprint:
        return SentenceBank(embedder, chunks, reuse=reuse)
    root = sentences_root(index_dir, model_id)
    folder = generation_folder(root, generation)
    refused = folder.is_dir()
    if refused and (saved := load_bank(folder, embedder, generation, model_id)):
        return saved
    # One process builds it (minutes at 100k chunks); another waits and opens what it saved.
    with one_builder(root, generation):
        if not refused and folder.is_dir():
            if saved := load_bank(folder, embedder, generation, model_id):
                return saved
            refused = True
        reuse = reuse or _newest_saved(root, embedder, model_id)
        bank = SentenceBank(embedder, chunks, reuse=reuse)
        if fingerprint_of(c.chunk_id for c in chunks) != generation.fingerprint:
            # A change landed while the searcher read the chunks, or twins without their parent.
            log.warning(
                "the chunks read are not generation %d's; its sentences are kept in this process",
                generation.number,
            )
            return bank
        written = save_bank(root, bank, generation, model_id, replace=refused)
    return (written and load_bank(written, embedder, generation, model_id)) or bank


def load_bank(
    folder: Path, embedder: object, generation: Generation, model_id: str
) -> SentenceBank | None:
    """The bank saved in ``folder``, memory-mapped; ``None`` (build it) when it is another
    generation's or model's, of another format, or cannot be read."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        expected = {"format": FORMAT, "model_id": model_id, **generation.as_json()}
        if {key: meta.get(key) for key in expected} != expected:
            log.warning("the saved sentences in %s are not this generation's; rebuilding", folder)
            return None
        sentences = SavedRecords(folder, "sentences", _sentence)
        tokens = SavedRecords(folder, "tokens", frozenset)
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        if not len(sentences) == len(tokens) == meta["sentences"] == (vectors.shape[0] or 0):
            raise ValueError(f"{len(sentences)} sentences, meta.json says {meta['sentences']}")
        by_chunk = SavedLookup(folder / "lookup")
        idf = SavedIdf(folder / "idf")
        references = json.loads((folder / "references.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        log.warning("the saved sentences in %s cannot be read (%s); rebuilding", folder, error)
        return None
    return SentenceBank.of_parts(
        embedder, sentences, vectors, tokens, by_chunk, references, idf=(idf, meta["max_idf"])
    )


def save_bank(
    root: Path, bank: SentenceBank, generation: Generation, model_id: str, *, replace=False
) -> Path | None:
    """Write ``bank`` as ``generation``'s and rename it into place (``replace``: a folder
    ``load_bank`` refused is replaced); returns the folder, ``None`` when it cannot be written."""

    def write(work: Path) -> bool:
        lookup, (idf, max_idf) = bank.chunk_lookup(), bank.idf_table()
        if not isinstance(lookup, dict) or not isinstance(idf, dict):
            raise TypeError("only a bank built in this process is saved, not an opened one")
        _write_records(work, "sentences", (_record(s) for s in bank.sentences))
        _write_records(work, "tokens", (sorted(t) for t in bank.tokens))
        SavedLookup.save(work / "lookup", lookup)
        SavedIdf.save(work / "idf", idf)
        references = json.dumps(bank.reference_renderings(), ensure_ascii=False)
        (work / "references.json").write_text(references, "utf-8")
        np.save(work / "vectors.npy", np.asarray(bank.vectors, dtype=np.float32))
        meta = {"format": FORMAT, "model_id": model_id, **generation.as_json()}
        meta |= {"sentences": len(bank), "max_idf": max_idf}
        (work / "meta.json").write_text(json.dumps(meta), "utf-8")
        return True

    return save_folder(root, generation, write, "the quotable sentences", replace=replace)


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
        folder.mkdir()
        SortedVocabulary.save(folder, {chunk_id: key for key, chunk_id in enumerate(lookup)})
        runs = list(lookup.values())
        np.save(folder / "ends.npy", np.cumsum([len(run) for run in runs], dtype=np.int64))
        flat = [index for run in runs for index in run]
        np.save(folder / "indices.npy", np.array(flat, dtype=np.int32))


class SavedIdf:
    """Token -> inverse sentence frequency, counted when the bank was saved: a sorted token
    table and one float64 array (the same numbers ``SentenceBank`` counts in memory)."""

    def __init__(self, folder: Path) -> None:
        self._tokens = SortedVocabulary(folder)
        self._values = np.asarray(np.load(folder / "idf.npy", mmap_mode="r"))

    def get(self, token: str, default: float) -> float:
        column = self._tokens.get(token)
        return default if column is None else float(self._values[column])

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self._tokens.get(token) is not None

    @staticmethod
    def save(folder: Path, idf: dict[str, float]) -> None:
        folder.mkdir()
        SortedVocabulary.save(folder, {token: column for column, token in enumerate(idf)})
        np.save(folder / "idf.npy", np.fromiter(idf.values(), dtype=np.float64, count=len(idf)))


def _newest_saved(root: Path, embedder: object, model_id: str) -> SentenceBank | None:
    """The newest bank saved for this model (a previous generation), to reuse its vectors."""
    if not root.is_dir():
        return None
    for folder in sorted((p for p in root.iterdir() if not p.name.startswith(".")), reverse=True):
        number, _, fingerprint = folder.name.partition("-")
        if number.isdigit():
            previous = Generation(int(number), fingerprint)
            if bank := load_bank(folder, embedder, previous, model_id):
                return bank
    return None


def _write_records(folder: Path, name: str, records: Iterable[object]) -> None:
    ends, written = [], 0
    with (folder / f"{name}.bin").open("wb") as handle:
        for record in records:
            data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            handle.write(data)
            written += len(data)
            ends.append(written)
    np.save(folder / f"{name}.offsets.npy", np.array(ends, dtype=np.int64))


def _record(sentence: EvidenceSentence) -> list:
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


def _sentence(record: list) -> EvidenceSentence:
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
