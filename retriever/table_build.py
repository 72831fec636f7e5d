"""Building a generation's search tables into a folder, with memory bounded at any corpus size.

The chunks stream in from the store a page at a time and are written as records as they come
(``chunk_table.RecordWriter``); only their IDs and a few numbers per chunk stay in memory. The
table is then ordered (parents by chunk ID, then the twins whose parent is indexed), and each
chunk is read back, tokenized once and handed to streaming BM25 writers
(``lexical.LexicalIndexWriter``) and to the layout's arrays. At 1M chunks the former build held
every ``Chunk`` and every token list in one process and outgrew a 24 GiB machine.

Per language, BM25 covers every text in it, originals and renderings, so a rendering ranks
against all its language's text (not inflated in a small index of renderings alone); only the
renderings' places are kept, each standing for its parent. A rendering whose every sentence its
document already prints in that language (the review's abstract in both) adds no words of its
own: it would only count twice.
"""

from __future__ import annotations

import json
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nenqa.glossary import Term
from nenqa.types import Chunk
from retriever.chunk_table import (
    ChunkTable,
    LayoutBuilder,
    RecordWriter,
    cited_document,
    trial_keys,
)
from retriever.generation import fingerprint_of
from retriever.glossary import harvest_definitions
from retriever.lexical import LexicalIndexWriter, tokenize, tokenizer_key


def lexical_text(chunk: Chunk) -> str:
    """What BM25 sees: the text plus trial names (trial chunks already name themselves)."""
    return " ".join([chunk.text, *chunk.trials])


def _unspaced(text: str) -> str:
    return "".join(text.split())


@dataclass(frozen=True)
class BuiltTables:
    """What ``write_tables`` wrote: the counts ``meta.json`` records and the fingerprint of the
    chunk IDs it read (the tables are the generation's only when it matches)."""

    chunks: int
    parents: int
    rendering_languages: tuple[str, ...]
    fingerprint: str
    definitions: tuple[Term, ...]
    records: int = 0  # chunks read, twins without their parent included
    tokenizer: str = ""  # ``lexical.tokenizer_key()`` the texts were cut under


def write_tables(
    folder: Path,
    stored: Iterable[Chunk],
    *,
    register: Callable[[list[Term]], object] | None = None,
) -> BuiltTables:
    """Write the chunk table, its layout and the BM25 indexes of ``stored`` into ``folder``.

    ``register`` receives the definitions the passages spell out before any text is
    tokenized (the glossary teaches the tokenizer its words).
    """
    records = RecordWriter(folder)
    ids: list[str] = []
    twin_of: dict[int, str] = {}  # record -> the parent chunk ID it renders
    documents: dict[tuple[str, str], int] = {}
    document = array("i")  # record -> its (document, language)
    harvested: dict[int, list[Term]] = {}
    for chunk in stored:
        record = records.add(chunk)
        ids.append(chunk.chunk_id)
        document.append(documents.setdefault((chunk.doc_id, chunk.language), len(documents)))
        if chunk.rendering_of:
            twin_of[record] = chunk.rendering_of
        elif chunk.kind == "passage" and (terms := harvest_definitions(chunk.text)):
            harvested[record] = terms
    records.finish()

    parents = sorted((r for r in range(len(ids)) if r not in twin_of), key=ids.__getitem__)
    parent_position = {ids[record]: position for position, record in enumerate(parents)}
    twins = sorted((r for r, p in twin_of.items() if p in parent_position), key=ids.__getitem__)
    np.save(folder / "order.npy", np.array([*parents, *twins], dtype=np.int32))
    table = ChunkTable.open(folder)
    # Each definition once, in table order: a corpus repeats its definitions (the glossary
    # would hold every copy, tens of thousands at 100k chunks).
    definitions = list(dict.fromkeys(t for record in parents for t in harvested.get(record, ())))
    if register is not None:
        register(definitions)
    term_index = {term: i for i, term in enumerate(definitions)}
    harvest = [
        (position, term_index[term])
        for position, record in enumerate(parents)
        for term in harvested.get(record, ())
    ]
    keys = list(documents)
    save_documents(folder, keys, [document[r] for r in [*parents, *twins]])

    new_words = _renderings_with_new_words(table, parents, twins, document)
    languages = sorted({table.read(len(parents) + j).language for j in new_words})
    lexical = LexicalIndexWriter(folder / "lexical")
    rendering = {lang: LexicalIndexWriter(folder / f"rendering-{lang}") for lang in languages}
    rendering_parents = {language: array("i") for language in languages}
    rendering_rows = {language: array("i") for language in languages}
    layout = LayoutBuilder()
    for position in range(len(parents)):
        chunk = table.read(position)
        tokens = tokenize(lexical_text(chunk))
        lexical.add(tokens)
        if chunk.language in rendering:
            rendering[chunk.language].add(tokens)
            rendering_parents[chunk.language].append(-1)
            rendering_rows[chunk.language].append(position)
        layout.add(chunk, position, cites=cited_document(chunk), trial_keys=trial_keys(chunk))
    for j in range(len(twins)):
        chunk = table.read(len(parents) + j)
        parent = parent_position[chunk.rendering_of or ""]
        layout.add(chunk, parent, cites=cited_document(chunk), trial_keys=())
        if j in new_words:
            rendering[chunk.language].add(tokenize(lexical_text(chunk)))
            rendering_parents[chunk.language].append(parent)
            rendering_rows[chunk.language].append(len(parents) + j)
    lexical.finish()
    for language in languages:
        rendering[language].finish()
        parents_of = np.frombuffer(rendering_parents[language], dtype=np.int32)
        np.save(folder / f"rendering-{language}.npy", parents_of)
        rows = np.frombuffer(rendering_rows[language], dtype=np.int32)
        np.save(folder / f"rendering-{language}.rows.npy", rows)
    layout.finish(len(parents)).save(folder)
    save_definitions(folder, definitions, harvest)
    return BuiltTables(
        chunks=len(parents) + len(twins),
        parents=len(parents),
        rendering_languages=tuple(languages),
        fingerprint=fingerprint_of(ids),
        definitions=tuple(definitions),
        records=len(ids),
        tokenizer=tokenizer_key(),
    )


def _renderings_with_new_words(
    table: ChunkTable, parents: list[int], twins: list[int], document: array
) -> set[int]:
    """The twins (by their index among the twins) with a sentence their document does not
    already print in their language; only the documents with renderings are joined, once."""
    rendered = {document[record] for record in twins}
    printing = (
        (document[record], table.read(position).text)
        for position, record in enumerate(parents)
        if document[record] in rendered
    )
    rendering = ((document[r], table.read(len(parents) + j)) for j, r in enumerate(twins))
    return {j for j, new in enumerate(twins_with_new_words(printing, rendering)) if new}


def twins_with_new_words(
    parents: Iterable[tuple[object, str]], twins: Iterable[tuple[object, Chunk]]
) -> list[bool]:
    """For each (document, twin) of ``twins``: whether it has a sentence its document does not
    already print in its language. ``parents``: (document, text) of those documents' parents,
    in table order (a document is a doc ID and a language)."""
    pieces: dict[object, list[str]] = defaultdict(list)
    for key, text in parents:
        pieces[key].append(_unspaced(text))
    printed = {key: "".join(texts) for key, texts in pieces.items()}
    found = []
    for key, chunk in twins:
        text = printed.get(key, "")
        spans = chunk.sentence_offsets or ((0, len(chunk.text)),)
        found.append(not all(_unspaced(chunk.text[a:b]) in text for a, b in spans))
    return found


def save_definitions(
    folder: Path, definitions: Iterable[Term], harvest: Iterable[tuple[int, int]] = ()
) -> None:
    """The glossary terms the passages define, and (``harvest``) which parent position
    defines which of them, in table order (a later generation's build keeps them)."""
    rows = [[t.zh, t.en, t.abbr, t.type] for t in definitions]
    (folder / "definitions.json").write_text(json.dumps(rows, ensure_ascii=False), "utf-8")
    pairs = np.array(list(harvest), dtype=np.int32).reshape(-1, 2)
    np.save(folder / "harvest.npy", pairs)


def save_documents(folder: Path, keys: list[tuple[str, str]], of_position: list[int]) -> None:
    """Each position's document (doc ID and language), as an index into ``keys``."""
    (folder / "documents.json").write_text(json.dumps(keys, ensure_ascii=False), "utf-8")
    np.save(folder / "document_of.npy", np.array(of_position, dtype=np.int32))


def load_documents(folder: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    keys = json.loads((folder / "documents.json").read_text(encoding="utf-8"))
    return [(doc, language) for doc, language in keys], np.load(folder / "document_of.npy")


def load_definitions(folder: Path) -> tuple[Term, ...]:
    rows = json.loads((folder / "definitions.json").read_text(encoding="utf-8"))
    return tuple(Term(tuple(zh), tuple(en), tuple(abbr), kind) for zh, en, abbr, kind in rows)
