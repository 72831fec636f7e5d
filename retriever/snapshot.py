"""What a searcher builds from a generation of the index, saved once and opened by every process.

A searcher needs the chunk table and the BM25 indexes of one generation (``SearchTables``).
Building them means reading every chunk from Chroma and tokenizing every text with jieba: at
100k chunks that took minutes per process. So the first process to build a generation's tables
saves them beside the index (``<index_dir>/generations/<number>-<fingerprint>/``: the chunk
table, each BM25 index in bm25s's own format, ``meta.json``), and every later process, every
worker and every reload opens them instead, the BM25 arrays memory-mapped read-only (the pages
are shared between workers through the page cache).

A folder is written under a temporary name and renamed into place when complete, so a crash
leaves the previous generation's folder as it was and never a half-written one; the two
newest generations are kept. A folder whose ``meta.json`` does not match the generation it is
opened for (another format, another corpus) or that cannot be read is rebuilt, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nenqa.types import Chunk
from retriever.generation import Generation
from retriever.lexical import LexicalIndex

FORMAT = 1
KEEP_GENERATIONS = 2

log = logging.getLogger("nenqa.snapshot")


@dataclass(frozen=True)
class SearchTables:
    """One generation's chunk table and lexical indexes.

    ``chunks`` are the parents (``chunks[:parent_count]``), then the twins whose parent is
    indexed; ``lexical`` ranks the parents; ``rendering_lexical[language]`` ranks every text in
    that language with, per position, the parent position a rendering stands for (``None`` for
    an original). ``complete``: the chunks are exactly the generation's (only then saved).
    """

    generation: Generation
    chunks: list[Chunk]
    parent_count: int
    lexical: LexicalIndex
    rendering_lexical: dict[str, tuple[LexicalIndex, list[int | None]]]
    complete: bool = True


def snapshots_dir(index_dir: Path) -> Path:
    return index_dir / "generations"


def _folder(root: Path, generation: Generation) -> Path:
    return root / f"{generation.number:06d}-{generation.fingerprint}"


def load_tables(root: Path, generation: Generation) -> SearchTables | None:
    """The saved tables of ``generation``; ``None`` (build them) when there are none or they
    belong to something else."""
    if not generation.fingerprint:  # an index published before generations
        return None
    folder = _folder(root, generation)
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        expected = {"format": FORMAT, **generation.as_json()}
        if {key: meta.get(key) for key in expected} != expected:
            log.warning("the saved tables in %s are not this generation's; rebuilding", folder)
            return None
        with (folder / "chunks.pickle").open("rb") as handle:
            chunks: list[Chunk] = pickle.load(handle)
        if len(chunks) != meta["chunks"]:
            raise ValueError(f"{len(chunks)} chunks, meta.json says {meta['chunks']}")
        rendering_lexical = {
            language: (
                LexicalIndex.load(folder / f"rendering-{language}", size=len(parents)),
                parents,
            )
            for language, parents in meta["rendering_parents"].items()
        }
        return SearchTables(
            generation=generation,
            chunks=chunks,
            parent_count=meta["parents"],
            lexical=LexicalIndex.load(folder / "lexical", size=meta["parents"]),
            rendering_lexical=rendering_lexical,
        )
    except (OSError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as error:
        log.warning("the saved tables in %s cannot be read (%s); rebuilding", folder, error)
        return None


def save_tables(root: Path, tables: SearchTables) -> Path | None:
    """Save complete tables for the next process; returns the folder (``None`` when not saved:
    incomplete tables, a pre-generation index, or a folder that cannot be written, which only
    costs the next process a rebuild)."""
    generation = tables.generation
    if not (tables.complete and generation.fingerprint):
        return None
    folder = _folder(root, generation)
    if folder.is_dir():
        return folder  # another process saved it first
    work: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
        with (work / "chunks.pickle").open("wb") as handle:
            pickle.dump(tables.chunks, handle, protocol=pickle.HIGHEST_PROTOCOL)
        tables.lexical.save(work / "lexical")
        for language, (index, _) in tables.rendering_lexical.items():
            index.save(work / f"rendering-{language}")
        meta = {
            "format": FORMAT,
            **generation.as_json(),
            "chunks": len(tables.chunks),
            "parents": tables.parent_count,
            "rendering_parents": {
                language: parents for language, (_, parents) in tables.rendering_lexical.items()
            },
        }
        (work / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        os.rename(work, folder)
    except OSError as error:  # another process renamed first, or the disk is full
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        if folder.is_dir():
            return folder
        log.warning("could not save the search tables in %s: %s", root, error)
        return None
    _forget_old(root)
    return folder


def _forget_old(root: Path) -> None:
    """Keep the newest ``KEEP_GENERATIONS`` folders (a process may still be opening the one
    before) and remove temporary folders older than an hour (a crashed writer's)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    stale = folders[:-KEEP_GENERATIONS]
    stale += [p for p in root.iterdir() if p.name.startswith(".") and _age_s(p) > 3600]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0
