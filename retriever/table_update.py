"""A generation's search tables written from the previous generation's and the change.

At 100k chunks a full build (``table_build.write_tables``) spends a minute cutting every text
with jieba, so a change of a few documents waited that long before any worker could serve it.
Nearly everything it computes is per chunk: the chunk's record, its place in the layout, its
term counts, the definitions it spells out. ``update_tables`` keeps those of every chunk the
change leaves alone, reads the added chunks only, drops the removed ones, and writes what
depends on the whole corpus again from them: the table order, the BM25 scores (every idf and
the average length move with the corpus), the definitions in table order.

The result is the full build's, score for score: the same positions, records, layout arrays,
BM25 columns (tokens in byte order), rows, counts and float32 scores. Term counts are reused
only when jieba cuts as it did for the previous generation (``lexical.tokenizer_key``: the same
glossary words registered); a change that defines a new term moves every cut (jieba weighs a
word against the total frequency of its dictionary), and the build is then a full one. It is a
full one too when the previous tables cannot say what the update needs (an older format, twins
without their parent).
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nenqa.glossary import Term
from nenqa.types import Chunk
from retriever.chunk_table import (
    KINDS,
    LANGUAGES,
    ChunkLayout,
    ChunkTable,
    Postings,
    cited_document,
    citing_key,
    encode_chunk,
    trial_keys,
    write_merged,
)
from retriever.generation import fingerprint_of
from retriever.glossary import harvest_definitions
from retriever.lexical import SavedCounts, tokenize, tokenizer_key, write_counts
from retriever.lexical_update import update_index
from retriever.table_build import (
    BuiltTables,
    lexical_text,
    load_definitions,
    load_documents,
    save_definitions,
    save_documents,
    twins_with_new_words,
)

log = logging.getLogger("nenqa.snapshot")


@dataclass(frozen=True)
class TableChange:
    """What a change did to the chunks: the chunks added (read from the store) and the IDs
    removed, against the previous generation's tables."""

    added: Sequence[Chunk]
    removed: frozenset[str]


def can_update(previous: Path, meta: dict) -> bool:
    """Whether ``previous`` keeps what an update reads (a full build of this format wrote it,
    and every chunk it read has a position)."""
    return (
        meta.get("records") == meta.get("chunks")
        and bool(meta.get("tokenizer"))
        and (previous / "harvest.npy").is_file()
        and (previous / "document_of.npy").is_file()
        and all(
            SavedCounts.saved_in(previous / name)
            for name in ["lexical", *(f"rendering-{lang}" for lang in meta["rendering_languages"])]
        )
    )


def update_tables(
    folder: Path,
    previous: Path,
    meta: dict,
    change: TableChange,
    *,
    register: Callable[[list[Term]], object] | None = None,
) -> BuiltTables | None:
    """Write into ``folder`` the tables of the previous generation's chunks (saved in
    ``previous``, its ``meta``) with ``change``; ``None`` when they cannot be written so (see
    the module's text): build them in full. ``register`` as for ``write_tables``."""
    old = _Previous(previous, meta)
    added = sorted(change.added, key=lambda c: c.chunk_id)
    ids = old.ids
    removed = [chunk_id.encode("utf-8") for chunk_id in sorted(change.removed)]
    kept = ~np.isin(ids, np.array(removed)) if removed else np.ones(ids.size, dtype=bool)
    parents_added = [c for c in added if c.rendering_of is None]
    twins_added = [c for c in added if c.rendering_of is not None]
    # The new table order: parents by chunk ID, then the twins by chunk ID.
    old_parents = np.flatnonzero(kept[: old.parents])
    old_twins = old.parents + np.flatnonzero(kept[old.parents :])
    parent_ids = np.concatenate([ids[old_parents], _ids(parents_added)])
    parent_order = np.argsort(parent_ids, kind="stable")
    twin_ids = np.concatenate([ids[old_twins], _ids(twins_added)])
    twin_order = np.argsort(twin_ids, kind="stable")
    parent_count = parent_ids.size
    # source[new position]: the old position it comes from, or -1 - k for added[k] of its kind
    parent_source = np.concatenate([old_parents, -1 - np.arange(len(parents_added))])[parent_order]
    twin_source = np.concatenate([old_twins, -1 - np.arange(len(twins_added))])[twin_order]
    new_of_old = np.full(ids.size, -1, dtype=np.int64)
    new_of_old[parent_source[parent_source >= 0]] = np.flatnonzero(parent_source >= 0)
    new_of_old[twin_source[twin_source >= 0]] = parent_count + np.flatnonzero(twin_source >= 0)
    added_position = {}
    for position, source in enumerate(parent_source.tolist()):
        if source < 0:
            added_position[parents_added[-1 - source].chunk_id] = position
    for position, source in enumerate(twin_source.tolist()):
        if source < 0:
            added_position[twins_added[-1 - source].chunk_id] = parent_count + position
    all_ids = np.concatenate([parent_ids[parent_order], twin_ids[twin_order]])
    parent_position = _lookup(parent_ids[parent_order])
    folded = np.empty(all_ids.size, dtype=np.int32)
    folded[:parent_count] = np.arange(parent_count)
    for offset, source in enumerate(twin_source.tolist()):
        if source >= 0:
            parent = int(new_of_old[old.layout.folded[source]])
        else:
            parent = parent_position(twins_added[-1 - source].rendering_of or "")
        if parent < 0:  # a twin whose parent is gone keeps a record but no position
            return None
        folded[parent_count + offset] = parent

    by_position = {added_position[c.chunk_id]: c for c in added}
    definitions, harvest = _definitions(old, new_of_old, by_position)
    if register is not None:
        register(definitions)
    if tokenizer_key() != meta["tokenizer"]:
        log.info("the change registers other glossary words; every text is cut again")
        return None

    _write_records(folder, old, kept, added, all_ids, new_of_old, added_position)
    languages = _codes(old.layout.languages, new_of_old, by_position, LANGUAGES, "language")
    kinds = _codes(old.layout.kinds, new_of_old, by_position, KINDS, "kind")
    ChunkLayout.of_arrays(
        all_ids,
        folded,
        languages,
        kinds,
        parent_count,
        citing=_postings(old.layout.citing, new_of_old, by_position, parent_count, _citing),
        naming=_postings(old.layout.naming, new_of_old, by_position, parent_count, _naming),
    ).save(folder)
    save_definitions(folder, definitions, harvest)
    documents, document_of = _documents(old, new_of_old, by_position)
    save_documents(folder, documents, document_of.tolist())

    fresh = {p: _counted(c) for p, c in by_position.items() if p < parent_count}
    update_index(folder / "lexical", previous / "lexical", new_of_old, fresh, parent_count)
    members = _members(old, new_of_old, by_position, documents, document_of, parent_count, folder)
    rendering_languages = sorted({LANGUAGES[languages[t]] for t in members})
    if rendering_languages:  # a rendering index takes its parents' counts from the main one
        main = _Rows.of_index(previous / "lexical", new_of_old)
        main.add(fresh)
    for language in rendering_languages:
        code = LANGUAGES.index(language)
        twins = sorted(t for t in members if languages[t] == code)
        rows = np.concatenate(
            [np.flatnonzero(languages[:parent_count] == code), np.array(twins, dtype=np.int64)]
        )
        pool = main.restricted(rows[rows < parent_count])
        if language in old.rendering_languages:
            saved = previous / f"rendering-{language}"
            pool.join(_Rows.of_index(saved, new_of_old, twins_from=old.parents))
        missing = [t for t in twins if not pool.has(t)]
        if missing:
            table = ChunkTable.open(folder)
            pool.add({t: _counted(table.read(t)) for t in missing})
        pool.write(folder / f"rendering-{language}", rows)
        parents_of = np.where(rows < parent_count, -1, folded[rows]).astype(np.int32)
        np.save(folder / f"rendering-{language}.npy", parents_of)
        np.save(folder / f"rendering-{language}.rows.npy", rows.astype(np.int32))
    return BuiltTables(
        chunks=int(all_ids.size),
        parents=parent_count,
        rendering_languages=tuple(rendering_languages),
        fingerprint=fingerprint_of(i.decode("utf-8") for i in all_ids.tolist()),
        definitions=tuple(definitions),
        records=int(all_ids.size),
        tokenizer=meta["tokenizer"],
    )


class _Previous:
    """What the update reads of the previous generation's tables."""

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder = folder
        self.layout = ChunkLayout.load(folder)
        self.ids = self.layout.ids_by_position()
        self.parents = int(meta["parents"])
        self.rendering_languages = tuple(meta["rendering_languages"])
        self.definitions = load_definitions(folder)
        self.harvest = np.load(folder / "harvest.npy")
        self.documents, self.document_of = load_documents(folder)
        self.order = np.load(folder / "order.npy")
        self.offsets = np.load(folder / "offsets.npy")


def _ids(chunks: Sequence[Chunk]) -> np.ndarray:
    if not chunks:
        return np.zeros(0, dtype="S1")
    return np.array([c.chunk_id.encode("utf-8") for c in chunks], dtype=np.bytes_)


def _lookup(sorted_ids: np.ndarray) -> Callable[[str], int]:
    def position(chunk_id: str) -> int:
        key = chunk_id.encode("utf-8")
        found = int(np.searchsorted(sorted_ids, key))
        return found if found < sorted_ids.size and sorted_ids[found] == key else -1

    return position


def _write_records(folder, old, kept, added, all_ids, new_of_old, added_position) -> None:
    """The kept chunks' records copied as they are, in their order, the added ones after them;
    ``order.npy`` maps every new position to its record."""
    kept_records = np.zeros(old.offsets.size - 1, dtype=bool)
    kept_records[old.order[kept]] = True
    record_of = np.cumsum(kept_records) - 1  # old record -> new record, where kept
    sources = np.concatenate([np.flatnonzero(kept_records), np.full(len(added), -1)])
    first_added = int(kept_records.sum())
    fresh = {first_added + k: encode_chunk(chunk) for k, chunk in enumerate(added)}
    lengths = write_merged(
        folder / "records.bin", old.folder / "records.bin", np.diff(old.offsets), sources, fresh
    )
    np.save(folder / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    order = np.empty(all_ids.size, dtype=np.int32)
    moved = np.flatnonzero(new_of_old >= 0)
    order[new_of_old[moved]] = record_of[old.order[moved]]
    for k, chunk in enumerate(added):
        order[added_position[chunk.chunk_id]] = first_added + k
    np.save(folder / "order.npy", order)


def _codes(old_codes, new_of_old, by_position, names, field) -> np.ndarray:
    codes = np.empty(len(new_of_old[new_of_old >= 0]) + len(by_position), dtype=np.int8)
    moved = np.flatnonzero(new_of_old >= 0)
    codes[new_of_old[moved]] = np.asarray(old_codes)[moved]
    for position, chunk in by_position.items():
        codes[position] = names.index(getattr(chunk, field))
    return codes


def _citing(chunk: Chunk) -> list[str]:
    return [citing_key(cited_document(chunk), ref) for ref in chunk.refs]


def _naming(chunk: Chunk) -> list[str]:
    return trial_keys(chunk)


def _postings(old: Postings, new_of_old, by_position, parent_count, keys_of) -> Postings:
    """The old postings with positions moved and removed ones dropped, plus the added
    passages' (kept for parents only, as ``LayoutBuilder`` keeps them), keys in the order of
    their first position, as a full build adds them."""
    lists: dict[str, list[int]] = {}
    first: dict[str, tuple[int, int]] = {}
    for key, positions in old.items():
        moved = new_of_old[np.asarray(positions)]
        moved = moved[moved >= 0]
        if moved.size:
            lists[key] = moved.tolist()
    for position, chunk in sorted(by_position.items()):
        if chunk.kind == "passage" and position < parent_count:
            for rank, key in enumerate(keys_of(chunk)):
                lists.setdefault(key, []).append(position)
                first.setdefault(key, (position, rank))
    ordered = sorted(lists, key=lambda k: (min(lists[k]), first.get(k, (0, 0))[1]))
    return Postings.of({key: array("i", sorted(lists[key])) for key in ordered})


def _definitions(old, new_of_old, by_position) -> tuple[list[Term], list[tuple[int, int]]]:
    """Each definition once, in table order of the passages that spell it out (the kept
    ones' as harvested before, the added ones' harvested now), with who defines what."""
    terms = list(old.definitions)
    index = {term: i for i, term in enumerate(terms)}
    positions = new_of_old[old.harvest[:, 0]] if old.harvest.size else np.zeros(0, np.int64)
    which = old.harvest[:, 1].astype(np.int64) if old.harvest.size else np.zeros(0, np.int64)
    kept = positions >= 0
    added_positions, added_terms = [], []
    for position, chunk in sorted(by_position.items()):
        if chunk.kind == "passage" and chunk.rendering_of is None:
            for term in harvest_definitions(chunk.text):
                added_positions.append(position)
                added_terms.append(index.setdefault(term, len(terms)))
                if added_terms[-1] == len(terms):
                    terms.append(term)
    positions = np.concatenate([positions[kept], np.array(added_positions, dtype=np.int64)])
    which = np.concatenate([which[kept], np.array(added_terms, dtype=np.int64)])
    order = np.argsort(positions, kind="stable")  # a passage's terms keep their order
    positions, which = positions[order], which[order]
    _, first = np.unique(which, return_index=True)
    defined = which[np.sort(first)]  # each term once, where it is first defined
    renumber = np.full(len(terms), -1, dtype=np.int64)
    renumber[defined] = np.arange(defined.size)
    pairs = np.stack([positions, renumber[which]], axis=1).tolist()
    return [terms[i] for i in defined.tolist()], [(p, t) for p, t in pairs]


def _documents(old, new_of_old, by_position) -> tuple[list[tuple[str, str]], np.ndarray]:
    keys = list(old.documents)
    index = {key: i for i, key in enumerate(keys)}
    document_of = np.empty(len(new_of_old[new_of_old >= 0]) + len(by_position), dtype=np.int32)
    moved = np.flatnonzero(new_of_old >= 0)
    document_of[new_of_old[moved]] = old.document_of[moved]
    for position, chunk in by_position.items():
        key = (chunk.doc_id, chunk.language)
        document_of[position] = index.setdefault(key, len(keys))
        if document_of[position] == len(keys):
            keys.append(key)
    return keys, document_of


def _members(
    old, new_of_old, by_position, documents, document_of, parent_count, folder
) -> set[int]:
    """The new positions of the twins with words their document does not print: as before
    for a document the change left alone, looked at again for one it touched."""
    was = set()
    for language in old.rendering_languages:
        rows = np.load(old.folder / f"rendering-{language}.rows.npy")
        was.update(int(p) for p in new_of_old[rows[rows >= old.parents]] if p >= 0)
    touched = {int(document_of[p]) for p in by_position}
    removed = np.flatnonzero(new_of_old < 0)
    touched.update(int(d) for d in old.document_of[removed])
    twins = np.arange(parent_count, document_of.size)
    again = [int(t) for t in twins if int(document_of[t]) in touched]
    members = {t for t in was if int(document_of[t]) not in touched}
    if again:
        table = ChunkTable.open(folder)
        keys = {int(document_of[t]) for t in again}
        printing = (
            (int(document_of[p]), table.read(p).text)
            for p in np.flatnonzero(np.isin(document_of[:parent_count], list(keys))).tolist()
        )
        rendering = ((int(document_of[t]), table.read(t)) for t in again)
        members.update(
            t
            for t, new in zip(again, twins_with_new_words(printing, rendering), strict=True)
            if new
        )
    return members


def _counted(chunk: Chunk) -> dict[bytes, int]:
    counts: dict[bytes, int] = {}
    for token in tokenize(lexical_text(chunk)) or ["<empty>"]:
        key = token.encode("utf-8")
        counts[key] = counts.get(key, 0) + 1
    return counts


class _Rows:
    """Term counts by new table position, gathered from saved indexes and fresh texts, as
    entries (token, position, count) over one token list."""

    def __init__(self, tokens: list[bytes], columns, positions, counts, lengths, ordered=0):
        self.tokens, self.columns, self.positions, self.counts = tokens, columns, positions, counts
        self.lengths: dict[int, int] = lengths
        self.ordered = int(ordered)  # the first entries are sorted by (token bytes, position)

    @classmethod
    def of_index(cls, folder: Path, new_of_old: np.ndarray, *, twins_from: int = -1) -> _Rows:
        """A saved index's rows that the change keeps, at their new positions. A rendering
        index's (``twins_from``: the first twin position) gives its twins' rows only: its
        parents' are the main index's, the same counts."""
        saved = SavedCounts(folder)
        if twins_from >= 0:
            row_positions = np.load(folder.parent / f"{folder.name}.rows.npy").astype(np.int64)
            target = np.where(row_positions >= twins_from, new_of_old[row_positions], -1)
        else:
            target = new_of_old[: saved.lengths.size]
        rows = np.asarray(saved.rows)
        keep = target[rows] >= 0
        lengths = {
            int(p): int(n)
            for p, n in zip(target.tolist(), saved.lengths.tolist(), strict=True)
            if p >= 0
        }
        counts = np.asarray(saved.counts)[keep]
        # Sorted by (token, new position): the saved order, both mapped in order.
        return cls(
            saved.tokens, saved.columns()[keep], target[rows[keep]], counts, lengths, keep.sum()
        )

    def has(self, position: int) -> bool:
        return position in self.lengths

    def add(self, fresh: dict[int, dict[bytes, int]]) -> None:
        """Rows counted now (the added texts)."""
        if not fresh:
            return
        known = {token: column for column, token in enumerate(self.tokens)}
        tokens = list(self.tokens)
        columns, positions, counts = [], [], []
        for position, counted in fresh.items():
            self.lengths[position] = sum(counted.values())
            for token, count in counted.items():
                columns.append(known.setdefault(token, len(known)))
                if columns[-1] == len(tokens):
                    tokens.append(token)
                positions.append(position)
                counts.append(count)
        self.tokens = tokens
        self.columns = np.concatenate([self.columns, np.array(columns, dtype=np.int64)])
        self.positions = np.concatenate([self.positions, np.array(positions, dtype=np.int64)])
        self.counts = np.concatenate([self.counts, np.array(counts, dtype=np.int32)])

    def join(self, other: _Rows) -> None:
        """Another index's rows (over its own tokens) into this one's."""
        known = {token: column for column, token in enumerate(self.tokens)}
        tokens = list(self.tokens)
        mapped = np.empty(len(other.tokens), dtype=np.int64)
        for column, token in enumerate(other.tokens):
            mapped[column] = known.setdefault(token, len(known))
            if mapped[column] == len(tokens):
                tokens.append(token)
        self.tokens = tokens
        self.columns = np.concatenate([self.columns, mapped[other.columns]])
        self.positions = np.concatenate([self.positions, other.positions])
        self.counts = np.concatenate([self.counts, other.counts])
        self.lengths.update(other.lengths)

    def restricted(self, positions: np.ndarray) -> _Rows:
        """These rows at ``positions`` only (a rendering index's parents)."""
        keep = np.isin(self.positions, positions)
        lengths = {int(p): self.lengths[int(p)] for p in positions.tolist()}
        ordered = int(keep[: self.ordered].sum())
        parts = self.columns[keep], self.positions[keep], self.counts[keep]
        return _Rows(self.tokens, *parts, lengths, ordered)

    def write(self, folder: Path, rows: np.ndarray) -> None:
        """The index whose row ``i`` is the text at position ``rows[i]`` (ascending); entries
        at other positions are left out."""
        size = int(max(rows.max(initial=-1), self.positions.max(initial=-1))) + 1
        row_of = np.full(size, -1, dtype=np.int64)
        row_of[rows] = np.arange(rows.size)
        row = row_of[self.positions]
        inside = row >= 0
        used = np.flatnonzero(np.bincount(self.columns[inside], minlength=len(self.tokens)))
        by_bytes = sorted(used.tolist(), key=self.tokens.__getitem__)
        column = np.full(len(self.tokens), -1, dtype=np.int64)
        column[by_bytes] = np.arange(len(by_bytes))
        key = column[self.columns] * max(1, rows.size) + row
        # The saved entries are in order already; the rest is sorted and merged in.
        head, tail = (
            np.flatnonzero(inside[: self.ordered]),
            self.ordered + np.flatnonzero(inside[self.ordered :]),
        )
        tail = tail[np.argsort(key[tail], kind="stable")]
        order = np.insert(head, np.searchsorted(key[head], key[tail]), tail)
        write_counts(
            folder,
            [self.tokens[c] for c in by_bytes],
            column[self.columns[order]],
            row[order],
            self.counts[order],
            np.array([self.lengths[int(p)] for p in rows.tolist()], dtype=np.int64),
        )
