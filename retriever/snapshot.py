"""What a searcher builds from a generation of the index, saved once and opened by every process.

A searcher needs the chunk table and the BM25 indexes of one generation (``SearchTables``).
Building them means reading every chunk from Chroma and tokenizing every text with jieba: at
100k chunks that took minutes per process. So the first process to build a generation's tables
saves them beside the index (``<index_dir>/generations/<number>-<fingerprint>/``: the chunk
table as records read on demand and its layout arrays (``chunk_table``), each BM25 index in
bm25s's own format, the harvested glossary definitions, ``meta.json``), and every later
process, every worker and every reload opens them instead, every array and the records
memory-mapped read-only (the pages are shared between workers through the page cache). The
build streams the chunks and writes as it goes (``table_build``), so its memory does not grow
with the corpus's token lists.

A folder is written under a temporary name and renamed into place when complete, so a crash
leaves the previous generation's folder as it was and never a half-written one; the two
newest generations are kept. A folder whose ``meta.json`` does not match the generation it is
opened for (another format, another corpus) or that cannot be read is rebuilt, with a warning.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from nenqa.glossary import Term
from nenqa.types import Chunk
from retriever.chunk_table import ChunkLayout, ChunkTable, RecordWriter, layout_of
from retriever.generation import Generation
from retriever.lexical import LexicalIndex
from retriever.table_build import BuiltTables, load_definitions, save_definitions, write_tables
from retriever.table_update import TableChange, can_update, update_tables

# 2: chunk records read on demand and layout arrays, no pickle; 3: sorted vocabulary; 4: each
# position's kind, definitions harvested without the numbers before them; 5: term counts,
# who defines what, each position's document and the tokenizer's key, for the next generation
FORMAT = 5
KEEP_GENERATIONS = 2

log = logging.getLogger("nenqa.snapshot")


@dataclass(frozen=True)
class SearchTables:
    """One generation's chunk table and lexical indexes.

    ``chunks`` are the parents (``chunks[:parent_count]``), then the twins whose parent is
    indexed (a ``ChunkTable`` read on demand when opened from disk); ``lexical`` ranks the
    parents; ``rendering_lexical[language]`` ranks every text in that language with, per
    position, the parent position a rendering stands for (``None`` or -1 for an original).
    ``complete``: the chunks are exactly the generation's (only then saved). ``layout``: the
    per-position lookups (computed from ``chunks`` when not given); ``definitions``: the
    glossary terms the passages define.
    """

    generation: Generation
    chunks: Sequence[Chunk]
    parent_count: int
    lexical: LexicalIndex
    rendering_lexical: dict[str, tuple[LexicalIndex, Sequence[int | None]]]
    complete: bool = True
    layout: ChunkLayout | None = None
    definitions: tuple[Term, ...] = ()

    def chunk_layout(self) -> ChunkLayout:
        return self.layout or layout_of(self.chunks, self.parent_count)


def snapshots_dir(index_dir: Path) -> Path:
    return index_dir / "generations"


def generation_folder(root: Path, generation: Generation) -> Path:
    return root / f"{generation.number:06d}-{generation.fingerprint}"


def load_tables(root: Path, generation: Generation) -> SearchTables | None:
    """The saved tables of ``generation``; ``None`` (build them) when there are none or they
    belong to something else."""
    if not generation.fingerprint:  # an index published before generations
        return None
    folder = generation_folder(root, generation)
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        expected = {"format": FORMAT, **generation.as_json()}
        if {key: meta.get(key) for key in expected} != expected:
            log.warning("the saved tables in %s are not this generation's; rebuilding", folder)
            return None
        return _open(folder, generation, meta)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        log.warning("the saved tables in %s cannot be read (%s); rebuilding", folder, error)
        return None


def _open(folder: Path, generation: Generation, meta: dict, *, complete=True) -> SearchTables:
    chunks = ChunkTable.open(folder)
    if len(chunks) != meta["chunks"]:
        raise ValueError(f"{len(chunks)} chunks, meta.json says {meta['chunks']}")
    rendering_lexical: dict[str, tuple[LexicalIndex, Sequence[int | None]]] = {}
    for language in meta["rendering_languages"]:
        parents = np.load(folder / f"rendering-{language}.npy", mmap_mode="r")
        index = LexicalIndex.load(folder / f"rendering-{language}", size=len(parents))
        rendering_lexical[language] = (index, parents)
    chunks.layout = ChunkLayout.load(folder)
    return SearchTables(
        generation=generation,
        chunks=chunks,
        parent_count=meta["parents"],
        lexical=LexicalIndex.load(folder / "lexical", size=meta["parents"]),
        rendering_lexical=rendering_lexical,
        complete=complete,
        layout=chunks.layout,
        definitions=load_definitions(folder),
    )


def _meta(
    generation: Generation,
    chunks: int,
    parents: int,
    languages: Iterable[str],
    built: BuiltTables | None = None,
) -> dict:
    meta = {
        "format": FORMAT,
        **generation.as_json(),
        "chunks": chunks,
        "parents": parents,
        "rendering_languages": sorted(languages),
    }
    if built is not None:  # what a later generation's update needs to know
        meta |= {"records": built.records, "tokenizer": built.tokenizer}
    return meta


class ChunkSource(Protocol):
    """The store as an update reads it: the IDs indexed now and the chunks of some of them."""

    def ids(self) -> set[str]: ...

    def get_chunks(self, ids: Iterable[str]) -> list[Chunk]: ...


# An update reads the added chunks into memory; past this share of the previous generation a
# change is built in full, streamed.
MAX_UPDATE_SHARE = 0.25


def build_saved(
    root: Path | None,
    generation: Generation,
    stored: Iterable[Chunk],
    *,
    register: Callable[[list[Term]], object] | None = None,
    source: ChunkSource | None = None,
) -> SearchTables:
    """Build ``generation``'s tables from the chunks streamed from the store, in a temporary
    folder under ``root``, renamed into place when they are complete (the chunks read are the
    generation's), so the next process opens them. Incomplete ones, or ``root`` ``None``
    (a system temporary folder), are opened and their folder removed (the open memory maps
    keep the files until the tables are dropped). ``register`` as for ``write_tables``.
    With the store as ``source``, the newest saved generation's tables and the change since
    are read instead where they can be (``table_update``; ``stored`` is then never read)."""
    work: Path | None = None
    # A folder already there was refused by ``load_tables`` (foreign or unreadable): replace it.
    stale = root is not None and generation_folder(root, generation).is_dir()
    try:
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        prefix = f".{generation.number:06d}-{generation.fingerprint}-"
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        built = None
        if root is not None and source is not None:
            built = _update(root, generation, work, source, register)
        if built is None:
            shutil.rmtree(work)
            work.mkdir()
            built = write_tables(work, stored, register=register)
        complete = built.fingerprint == generation.fingerprint
        meta = _meta(generation, built.chunks, built.parents, built.rendering_languages, built)
        (work / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        tables = _open(work, generation, meta, complete=complete)
        if not (root is not None and complete and generation.fingerprint):
            shutil.rmtree(work, ignore_errors=True)
            return tables
    except BaseException:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise
    publish_folder(root, work, generation, replace=stale)
    return tables


def _update(
    root: Path,
    generation: Generation,
    work: Path,
    source: ChunkSource,
    register: Callable[[list[Term]], object] | None,
) -> BuiltTables | None:
    """The tables written from the newest saved generation's and the change since, or
    ``None`` (build them in full) with the reason logged."""
    previous = newest_saved(root, generation, lambda _, meta: meta.get("format") == FORMAT)
    if previous is None:
        return None
    folder, meta = previous
    if not can_update(folder, meta):
        log.info(
            "the saved tables in %s cannot be updated (an older format, or twins without their "
            "parent); building them in full",
            folder,
        )
        return None
    try:
        old = ChunkLayout.load(folder).ids_by_position()
        before = {chunk_id.decode("utf-8") for chunk_id in old.tolist()}
        now = source.ids()
        added, removed = now - before, before - now
        if len(added) > MAX_UPDATE_SHARE * max(1, len(before)):
            log.info("%d chunks added since %s; building the tables in full", len(added), folder)
            return None
        change = TableChange(source.get_chunks(added), frozenset(removed))
        return update_tables(work, folder, meta, change, register=register)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        log.warning("could not update the tables of %s (%s); building them in full", folder, error)
        return None


def newest_saved(
    root: Path, generation: Generation, accepts: Callable[[Path, dict], bool]
) -> tuple[Path, dict] | None:
    """The newest folder saved under ``root`` other than ``generation``'s whose ``meta.json``
    ``accepts`` takes (the base a generation's tables, sentences or scope text are updated
    from), with that meta."""
    if not root.is_dir():
        return None
    own = generation_folder(root, generation).name
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
        if folder.name.startswith(".") or folder.name == own:
            continue
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if accepts(folder, meta):
            return folder, meta
    return None


def save_tables(root: Path, tables: SearchTables) -> Path | None:
    """Save complete tables built in memory for the next process; returns the folder (``None``
    when not saved: incomplete tables, a pre-generation index, or a folder that cannot be
    written, which only costs the next process a rebuild)."""
    generation = tables.generation
    if not (tables.complete and generation.fingerprint):
        return None
    folder = generation_folder(root, generation)
    if folder.is_dir():
        return folder  # another process saved it first

    def write(work: Path) -> bool:
        records = RecordWriter(work)
        for chunk in tables.chunks:
            records.add(chunk)
        records.finish()
        np.save(work / "order.npy", np.arange(len(tables.chunks), dtype=np.int32))
        tables.chunk_layout().save(work)
        tables.lexical.save(work / "lexical")
        for language, (index, parents) in tables.rendering_lexical.items():
            index.save(work / f"rendering-{language}")
            parent_positions = [-1 if p is None else p for p in parents]
            np.save(work / f"rendering-{language}.npy", np.array(parent_positions, np.int32))
        save_definitions(work, tables.definitions)
        meta = _meta(generation, len(tables.chunks), tables.parent_count, tables.rendering_lexical)
        (work / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        return True

    return save_folder(root, generation, write, "the search tables")


def save_folder(
    root: Path,
    generation: Generation,
    write: Callable[[Path], bool],
    what: str,
    *,
    replace: bool = False,
) -> Path | None:
    """Write ``generation``'s folder under ``root``: ``write(work)`` fills a temporary folder,
    which is then renamed into place (``publish_folder``). ``None``, and nothing left behind,
    when ``write`` returns False (what it read was not the generation's) or the folder cannot be
    written (a read-only index, a full disk: logged naming ``what``; it only costs the next
    process a rebuild). Shared by the search tables, the sentence bank and the scope text."""
    work: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        name = generation_folder(root, generation).name
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        written = write(work)
    except OSError as error:  # the index folder is read-only, the disk is full
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        log.warning("could not save %s in %s: %s", what, root, error)
        return None
    except BaseException:  # an interrupted write leaves no temporary folder behind either
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        raise
    if not written:
        shutil.rmtree(work, ignore_errors=True)
        return None
    return publish_folder(root, work, generation, replace=replace)


def publish_folder(root: Path, work: Path, generation: Generation, *, replace=False) -> Path | None:
    """Rename a written folder into place (atomic: a reader sees all of it or none);
    ``replace``: a folder already there is moved aside and removed first."""
    folder = generation_folder(root, generation)
    try:
        if replace and folder.is_dir():
            aside = Path(tempfile.mkdtemp(prefix=f".stale-{folder.name}-", dir=root))
            os.rename(folder, aside / folder.name)
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(work, folder)
    except OSError as error:  # another process renamed first, or the disk is full
        shutil.rmtree(work, ignore_errors=True)
        if folder.is_dir():
            return folder
        log.warning("could not save %s in %s: %s", work.name, root, error)
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
        if folder.is_file():  # an old generation's build lock
            folder.unlink(missing_ok=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def one_builder(root: Path | None, generation: Generation) -> Iterator[None]:
    """Held while a process builds ``generation``'s tables under ``root``: another process
    that needs them (a worker noticing the new generation while ``nenqa docs add`` builds
    them) waits here, still serving the previous one, and then opens what the builder saved,
    instead of building them too (at 100k chunks a minute or more and 0.9 GiB each). Nothing
    is held without a folder to lock in; a crashed builder's lock is released with it."""
    handle = None
    if root is not None and generation.fingerprint:
        try:
            root.mkdir(parents=True, exist_ok=True)
            handle = (root / f".{generation_folder(root, generation).name}.lock").open("a")
        except OSError:  # a read-only index folder: each process builds its own, as before
            handle = None
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0
