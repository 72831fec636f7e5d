"""The corpus text the scope check looks a question's words up in, saved once per generation.

``ScopeCheck`` asks whether a word appears anywhere in the indexed corpus or the glossary: one
joined text of every chunk and glossary form, normalised (``nenqa.glossary.normalize_text``). At
100k chunks that is a string of tens of MiB in every worker, and building it decodes every
chunk of the table. So the first process that needs a generation's text writes it beside the
index (``<index_dir>/scope/<number>-<fingerprint>/text.txt``, UTF-8, with the digest of the
glossary forms it holds), and every later process, worker and reload maps it read-only: a word
is found by searching for its UTF-8 bytes, which finds exactly what searching the text would
(UTF-8 is self-synchronising). The words a pattern finds in it (the check's Latin words) are
listed beside it the first time they are asked for. Written under a temporary name and renamed
into place, as the search tables are (``retriever.snapshot``); a folder of other forms, another
format or one that cannot be read is replaced; nowhere to write keeps the text in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from nenqa.glossary import Glossary, normalize_text
from retriever.chunk_table import ChunkTable, write_merged
from retriever.generation import Generation, fingerprint_of
from retriever.snapshot import generation_folder, newest_saved, save_folder

# 2: each chunk's line ends with its newline, the chunk IDs by line, words counted per chunk
FORMAT = 2

log = logging.getLogger("nenqa.scope")


class CorpusText:
    """The normalised corpus and glossary text, in memory or memory-mapped from its file;
    ``word in text`` is a substring search."""

    def __init__(
        self, text: str | bytes | mmap.mmap, folder: Path | None = None, chunk_bytes: int = 0
    ) -> None:
        self._text = text
        self._folder = folder
        self._chunk_bytes = chunk_bytes  # the chunks' lines come first, the glossary's after

    @classmethod
    def of(cls, texts: Iterable[str], glossary_forms: Iterable[str] = ()) -> CorpusText:
        """The text in memory: every text and glossary form normalised, one per line."""
        return cls("\n".join(_lines(texts, glossary_forms)))

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        if isinstance(self._text, str):
            return word in self._text
        return self._text.find(word.encode("utf-8")) != -1

    def words(self, pattern: re.Pattern[str]) -> set[str]:
        """Every match of ``pattern`` in the text, lower-cased (a match never spans lines).
        A saved text lists them beside it the first time, counted per chunk line, so the next
        generation's text counts only its change's lines."""
        if isinstance(self._text, str):
            return {m.group().lower() for m in pattern.finditer(self._text)}
        listed = self._folder / _words_name(pattern) if self._folder else None
        if listed is not None and listed.is_file():
            saved = json.loads(listed.read_text(encoding="utf-8"))
            return set(saved["counts"]) | set(saved["forms"])
        counts = _counted(pattern, _mapped_lines(self._text[: self._chunk_bytes]))
        forms = _counted(pattern, _mapped_lines(self._text[self._chunk_bytes :]))
        if listed is not None:
            _write_words(listed, pattern, counts, set(forms))
        return set(counts) | set(forms)


def glossary_forms(glossary: Glossary) -> list[str]:
    """Every form of every glossary term, as the scope check looks words up in them."""
    return [form for term in glossary.terms for form in term.forms]


def open_corpus_text(
    chunks: Sequence,
    glossary_forms: Iterable[str],
    *,
    index_dir: Path | None,
    generation: Generation,
) -> CorpusText:
    """The corpus text of ``generation`` (whose chunks are ``chunks``) with ``glossary_forms``:
    opened from its saved file, or written there first: from the newest saved text and the
    change since where ``chunks`` are saved tables (``retriever.chunk_table``), else with every
    chunk read one at a time. In memory when there is nowhere to save it (no ``index_dir``, an
    index published before generations, chunks that are not the generation's, a folder that
    cannot be written)."""
    forms = list(glossary_forms)
    if index_dir is None or not generation.fingerprint:
        return CorpusText.of((c.text for c in chunks), forms)
    root = index_dir / "scope"
    folder = generation_folder(root, generation)
    digest = hashlib.sha256("\n".join(forms).encode("utf-8")).hexdigest()[:16]
    meta = {"format": FORMAT, **generation.as_json(), "glossary_forms": digest}
    refused = folder.is_dir()
    if refused and (saved := _open(folder, meta)):
        return saved
    written = _update(root, chunks, forms, generation, meta) or _save(
        root, chunks, forms, generation, meta, replace=refused
    )
    return (written and _open(written, meta)) or CorpusText.of((c.text for c in chunks), forms)


def _open(folder: Path, meta: dict) -> CorpusText | None:
    try:
        saved = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if {key: saved.get(key) for key in meta} != meta:
            log.warning("the saved corpus text in %s is not this generation's; rewriting", folder)
            return None
        with (folder / "text.txt").open("rb") as handle:
            size = handle.seek(0, 2)
            if size != saved["bytes"]:
                raise ValueError(f"text.txt holds {size} bytes, meta.json says {saved['bytes']}")
            text = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("the saved corpus text in %s cannot be read (%s); rewriting", folder, error)
        return None
    return CorpusText(text, folder, saved["chunk_bytes"])


def _save(
    root: Path, chunks: Iterable, forms: list[str], generation: Generation, meta: dict, *, replace
) -> Path | None:
    def write(work: Path) -> bool:
        ids: list[bytes] = []
        lengths: list[int] = []
        with (work / "text.txt").open("wb") as handle:
            for chunk in chunks:
                ids.append(chunk.chunk_id.encode("utf-8"))
                lengths.append(handle.write(_chunk_line(chunk.text)))
            forms_bytes = handle.write(_forms_text(forms))
        if fingerprint_of(i.decode("utf-8") for i in ids) != generation.fingerprint:
            # A change landed while the chunks were read: not this generation's text.
            log.warning(
                "the chunks read are not generation %d's; its corpus text is kept in this process",
                generation.number,
            )
            return False
        _finish(
            work, meta, np.array(ids, dtype=np.bytes_), np.array(lengths, np.int64), forms_bytes
        )
        return True

    return save_folder(root, generation, write, "the corpus text", replace=replace)


def _update(
    root: Path, chunks: Sequence, forms: list[str], generation: Generation, meta: dict
) -> Path | None:
    """The text written from the newest saved one: the kept chunks' lines copied, the added
    ones normalised now, the glossary's lines again; the words listed for it counted again
    from the lines that came and went. ``None`` where there is none to start from."""
    layout = chunks.layout if isinstance(chunks, ChunkTable) else None
    found = newest_saved(
        root,
        generation,
        lambda folder, meta: meta.get("format") == FORMAT and (folder / "ids.npy").is_file(),
    )
    if layout is None or found is None:
        return None
    previous = found[0]
    ids = layout.ids_by_position()
    if fingerprint_of(i.decode("utf-8") for i in ids.tolist()) != generation.fingerprint:
        return None

    def write(work: Path) -> bool:
        try:
            return _write_update(work)
        except (ValueError, KeyError, TypeError, IndexError, re.error) as error:
            log.warning(
                "could not update the corpus text of %s (%s); writing it in full", previous, error
            )
            return False

    def _write_update(work: Path) -> bool:
        old_ids = np.load(previous / "ids.npy")
        old_lengths = np.load(previous / "lengths.npy")
        by_id = np.argsort(old_ids, kind="stable")
        found = np.minimum(np.searchsorted(old_ids[by_id], ids), max(0, old_ids.size - 1))
        sources = (
            np.where(old_ids[by_id][found] == ids, by_id[found], -1)
            if old_ids.size
            else (np.full(ids.size, -1))
        )
        fresh = {int(p): _chunk_line(chunks[int(p)].text) for p in np.flatnonzero(sources < 0)}
        lengths = write_merged(
            work / "chunks.part", previous / "text.txt", old_lengths, sources, fresh
        )
        forms_text = _forms_text(forms)
        with (work / "chunks.part").open("ab") as handle:
            forms_bytes = handle.write(forms_text)
        (work / "chunks.part").rename(work / "text.txt")
        _finish(work, meta, ids, lengths, forms_bytes)
        gone = np.setdiff1d(np.arange(old_ids.size), sources[sources >= 0])
        _update_words(previous, work, old_lengths, gone, list(fresh.values()), forms_text)
        return True

    return save_folder(root, generation, write, "the corpus text", replace=True)


def _finish(work: Path, meta: dict, ids: np.ndarray, lengths: np.ndarray, forms_bytes: int):
    np.save(work / "ids.npy", ids)
    np.save(work / "lengths.npy", lengths)
    chunk_bytes = int(lengths.sum())
    sizes = {"bytes": chunk_bytes + forms_bytes, "chunk_bytes": chunk_bytes}
    (work / "meta.json").write_text(json.dumps({**meta, **sizes}), "utf-8")


def _update_words(previous, work, old_lengths, gone, added: list[bytes], forms_text: bytes):
    """Each word list of the previous text, its counts moved by the chunks' lines that went
    and came, its glossary words found again."""
    starts = np.concatenate([[0], np.cumsum(old_lengths)])
    with (previous / "text.txt").open("rb") as handle:
        old = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if starts[-1] else b""
        for listed in previous.glob("words-*.json"):
            saved = json.loads(listed.read_text(encoding="utf-8"))
            pattern = re.compile(saved["pattern"], saved["flags"])
            counts = Counter(saved["counts"])
            went = (old[int(starts[i]) : int(starts[i + 1])] for i in gone.tolist())
            counts.subtract(_counted(pattern, (ln for text in went for ln in _mapped_lines(text))))
            counts.update(_counted(pattern, (ln for text in added for ln in _mapped_lines(text))))
            forms = set(_counted(pattern, _mapped_lines(forms_text)))
            _write_words(work / listed.name, pattern, +counts, forms)


def _chunk_line(text: str) -> bytes:
    return normalize_text(text).encode("utf-8") + b"\n"


def _forms_text(forms: Iterable[str]) -> bytes:
    return "\n".join(normalize_text(form) for form in forms).encode("utf-8")


def _lines(texts: Iterable[str], glossary_forms: Iterable[str]) -> Iterable[str]:
    yield from (normalize_text(text) for text in texts)
    yield from (normalize_text(form) for form in glossary_forms)


def _counted(pattern: re.Pattern[str], lines: Iterable[bytes]) -> Counter[str]:
    return Counter(
        m.group().lower() for line in lines for m in pattern.finditer(line.decode("utf-8"))
    )


def _words_name(pattern: re.Pattern[str]) -> str:
    return f"words-{hashlib.sha256(pattern.pattern.encode('utf-8')).hexdigest()[:12]}.json"


def _write_words(path: Path, pattern: re.Pattern[str], counts: Counter[str], forms: set[str]):
    listing = {
        "pattern": pattern.pattern,
        "flags": pattern.flags,
        "counts": dict(sorted(counts.items())),
        "forms": sorted(forms),
    }
    _write_atomically(path, json.dumps(listing, ensure_ascii=False))


def _mapped_lines(data: bytes | mmap.mmap) -> Iterable[bytes]:
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", start)
        end = size if end == -1 else end
        yield data[start:end]
        start = end + 1


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (another process may write the same one)."""
    work = path.with_name(f".{path.name}-{os.getpid()}")
    try:
        work.write_text(text, encoding="utf-8")
        os.replace(work, path)
    except OSError as error:  # a read-only index folder: listed again by the next process
        work.unlink(missing_ok=True)
        log.warning("could not list the corpus words in %s: %s", path.parent, error)
