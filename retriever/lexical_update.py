"""A saved BM25 index written again for the next generation from its term counts.

Every score of a BM25 index moves when texts come or go (each token's idf counts the texts,
each text's weight the average length), but no text's term counts do. So the next generation's
index is the saved one's counts with the removed texts' entries dropped, the kept ones
renumbered to their new rows, and the added texts' entries merged into their tokens' columns,
all as whole-array operations; then every score is computed again from them, as
``LexicalIndexWriter`` computes it (the same arrays, score for score). Nothing is tokenized but
the added texts (their counts come in ``fresh``).
"""

from __future__ import annotations

import os
from pathlib import Path

import bm25s
import numpy as np

from retriever.lexical import (
    COUNTS_FILE,
    LENGTHS_FILE,
    SortedVocabulary,
    bm25_scores,
    idf_of,
    length_norm,
    save_params,
    save_vocabulary,
)

_VOCABULARY = ("vocab.text", "vocab.ends.npy", "vocab.ids.npy")


def update_index(
    folder: Path,
    previous: Path,
    new_row: np.ndarray,
    fresh: dict[int, dict[bytes, int]],
    texts: int,
    *,
    k1: float = 1.2,
    b: float = 0.75,
) -> None:
    """Write into ``folder`` the index of ``texts`` texts: the saved index in ``previous``
    whose row ``r`` is now row ``new_row[r]`` (-1: removed), plus the rows of ``fresh`` (row ->
    token bytes -> count)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = SortedVocabulary(previous)
    indptr = np.load(previous / "indptr.csc.index.npy")
    rows = np.load(previous / "indices.csc.index.npy", mmap_mode="r")
    counts = np.load(previous / COUNTS_FILE, mmap_mode="r")
    old_lengths = np.load(previous / LENGTHS_FILE)
    mapping = np.asarray(new_row[: old_lengths.size], dtype=np.int32)
    moved = mapping[rows]
    if (mapping < 0).any():
        keep = moved >= 0
        moved, counts = moved[keep], np.asarray(counts)[keep]
        starts = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])[indptr]
    else:
        starts = indptr
    kept_df = np.diff(starts)

    # Columns: the old tokens still used, and the added texts' new tokens, in byte order.
    tokens = sorted({token for counted in fresh.values() for token in counted})
    found = {token: vocabulary.column(token) for token in tokens}
    new_tokens = [token for token in tokens if found[token] is None]
    used = kept_df > 0
    used[np.array([c for c in found.values() if c is not None], dtype=np.int64)] = True
    ranks = np.array([vocabulary.rank(token) for token in new_tokens], dtype=np.int64)
    used_before = np.concatenate([[0], np.cumsum(used)])  # used old columns before each
    inserted = np.cumsum(np.bincount(ranks, minlength=used.size + 1))[: used.size]
    column_of_old = used_before[:-1] + inserted  # an old column's new column (where used)
    column_of_new = {
        token: int(used_before[rank]) + i
        for i, (token, rank) in enumerate(zip(new_tokens, ranks.tolist(), strict=True))
    }
    columns = int(used.sum()) + len(new_tokens)

    # The added entries, merged where their (column, row) order puts them.
    entries = sorted(
        (
            int(column_of_old[found[token]]) if found[token] is not None else column_of_new[token],
            row,
            count,
            found[token],
            token,
        )
        for row, counted in fresh.items()
        for token, count in counted.items()
    )
    at = []
    for _, row, _, old_column, token in entries:
        if old_column is None:  # a new token's column sits before the next old token's
            at.append(int(starts[vocabulary.rank(token)]))
        else:
            start, stop = int(starts[old_column]), int(starts[old_column + 1])
            at.append(start + int(np.searchsorted(moved[start:stop], row)))
    rows_new = _inserted(moved, at, [e[1] for e in entries])
    counts_new = _inserted(counts, at, [e[2] for e in entries])
    doc_freq = np.zeros(columns, dtype=np.int64)
    doc_freq[column_of_old[used]] = kept_df[used]
    np.add.at(doc_freq, np.array([e[0] for e in entries], dtype=np.int64), 1)

    lengths = np.zeros(texts, dtype=np.int64)
    kept_rows = np.flatnonzero(mapping >= 0)
    lengths[mapping[kept_rows]] = old_lengths[kept_rows]
    for row, counted in fresh.items():
        lengths[row] = sum(counted.values())
    idf = idf_of(doc_freq, texts)
    norm = length_norm(lengths, lengths.mean(), k1, b)  # as bm25s: float64 mean of the lengths
    data = bm25_scores(np.repeat(idf, doc_freq), counts_new, norm[rows_new])

    np.save(folder / "data.csc.index.npy", data)
    np.save(folder / "indices.csc.index.npy", rows_new)
    np.save(folder / COUNTS_FILE, counts_new)
    np.save(folder / "indptr.csc.index.npy", np.concatenate([[0], np.cumsum(doc_freq)]))
    np.save(folder / LENGTHS_FILE, lengths)
    params = bm25s.BM25(k1=k1, b=b, method="lucene")
    if not new_tokens and used.all() and _linked(previous, folder):
        save_params(folder, params, texts)  # the same tokens: their files as they were
    else:
        old_tokens = vocabulary.tokens()
        kept = [old_tokens[c] for c in np.flatnonzero(used).tolist()]
        save_vocabulary(folder, sorted([*kept, *new_tokens]), params, texts)


def _inserted(values: np.ndarray, at: list[int], new: list[int]) -> np.ndarray:
    """``values`` with ``new[i]`` before index ``at[i]`` (``at`` ascending), copied a run at a
    time (``np.insert`` with many places builds index arrays as long as ``values``)."""
    out = np.empty(len(values) + len(new), dtype=np.int32)
    done = 0
    for i, (place, value) in enumerate(zip(at, new, strict=True)):
        out[done + i : place + i] = values[done:place]
        out[place + i] = value
        done = place
    out[done + len(new) :] = values[done:]
    return out


def _linked(previous: Path, folder: Path) -> bool:
    """The vocabulary files of ``previous`` linked into ``folder`` (a saved generation's files
    never change); False where the file system cannot link them."""
    try:
        for name in _VOCABULARY:
            os.link(previous / name, folder / name)
    except OSError:
        for name in _VOCABULARY:
            (folder / name).unlink(missing_ok=True)
        return False
    return True
