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
from collections.abc import Iterable
from pathlib import Path

from nenqa.glossary import normalize_text
from retriever.generation import Generation, fingerprint_of
from retriever.snapshot import generation_folder, save_folder

FORMAT = 1

log = logging.getLogger("nenqa.scope")


class CorpusText:
    """The normalised corpus and glossary text, in memory or memory-mapped from its file;
    ``word in text`` is a substring search."""

    def __init__(self, text: str | bytes | mmap.mmap, folder: Path | None = None) -> None:
        self._text = text
        self._folder = folder

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
        """Every match of ``pattern`` in the text, lower-cased (a match never spans lines)."""
        if isinstance(self._text, str):
            return {m.group().lower() for m in pattern.finditer(self._text)}
        key = hashlib.sha256(pattern.pattern.encode("utf-8")).hexdigest()[:12]
        listed = self._folder / f"words-{key}.txt" if self._folder else None
        if listed is not None and listed.is_file():
            return set(listed.read_text(encoding="utf-8").split("\n")) - {""}
        found = {
            m.group().lower()
            for line in _mapped_lines(self._text)
            for m in pattern.finditer(line.decode("utf-8"))
        }
        if listed is not None:
            _write_atomically(listed, "\n".join(sorted(found)))
        return found


def open_corpus_text(
    chunks: Iterable,
    glossary_forms: Iterable[str],
    *,
    index_dir: Path | None,
    generation: Generation,
) -> CorpusText:
    """The corpus text of ``generation`` (whose chunks are ``chunks``) with ``glossary_forms``:
    opened from its saved file, or written there first (chunks read one at a time). In memory
    when there is nowhere to save it (no ``index_dir``, an index published before generations,
    chunks that are not the generation's, a folder that cannot be written)."""
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
    written = _save(root, chunks, forms, generation, meta, replace=refused)
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
    return CorpusText(text, folder)


def _save(
    root: Path, chunks: Iterable, forms: list[str], generation: Generation, meta: dict, *, replace
) -> Path | None:
    def write(work: Path) -> bool:
        ids: list[str] = []

        def texts():
            for chunk in chunks:
                ids.append(chunk.chunk_id)
                yield chunk.text

        size = 0
        with (work / "text.txt").open("wb") as handle:
            for number, line in enumerate(_lines(texts(), forms)):
                data = ("\n" if number else "").encode("utf-8") + line.encode("utf-8")
                handle.write(data)
                size += len(data)
        if fingerprint_of(ids) != generation.fingerprint:
            # A change landed while the chunks were read: not this generation's text.
            log.warning(
                "the chunks read are not generation %d's; its corpus text is kept in this process",
                generation.number,
            )
            return False
        (work / "meta.json").write_text(json.dumps({**meta, "bytes": size}), "utf-8")
        return True

    return save_folder(root, generation, write, "the corpus text", replace=replace)


def _lines(texts: Iterable[str], glossary_forms: Iterable[str]) -> Iterable[str]:
    yield from (normalize_text(text) for text in texts)
    yield from (normalize_text(form) for form in glossary_forms)


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
