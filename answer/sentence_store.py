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
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from answer.saved_bank import (
    SavedIdf,
    SavedLookup,
    SavedRecords,
    sentence_of,
    sentence_record,
    write_records,
)
from answer.sentence_update import (
    ChunkIndex,
    can_update,
    chunk_index,
    key_hash,
    save_update_index,
    update_bank,
)
from answer.sentences import SentenceBank, dedup_key
from nenqa.types import Chunk
from retriever.generation import Generation, fingerprint_of
from retriever.lexical import tokenizer_key
from retriever.snapshot import generation_folder, newest_saved, one_builder, save_folder

# 1: sentences, token sets and chunk lookup as JSON read into every process; 3: what the next
# generation's update reads (chunk IDs, twins, places, key hashes, token frequencies)
FORMAT = 3

log = logging.getLogger("nenqa.sentences")


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
        index = chunk_index(chunks)
        complete = fingerprint_of(i.decode("utf-8") for i in index[0].tolist()) == (
            generation.fingerprint
        )
        # From the newest saved bank and the change since, where it can (seconds, not minutes).
        written = complete and _update(root, generation, model_id, embedder, chunks, index)
        if written and (saved := load_bank(written, embedder, generation, model_id)):
            return saved
        reuse = reuse or _newest_saved(root, embedder, model_id)
        bank = SentenceBank(embedder, chunks, reuse=reuse)
        if not complete:
            # A change landed while the searcher read the chunks, or twins without their parent.
            log.warning(
                "the chunks read are not generation %d's; its sentences are kept in this process",
                generation.number,
            )
            return bank
        written = save_bank(root, bank, generation, model_id, replace=refused, index=index)
    return (written and load_bank(written, embedder, generation, model_id)) or bank


def _update(
    root: Path,
    generation: Generation,
    model_id: str,
    embedder: object,
    chunks: Sequence[Chunk],
    index: ChunkIndex,
) -> Path | None:
    """``generation``'s bank written from the newest saved one and the change since
    (``answer.sentence_update``); ``None`` (build it in full) where that cannot be done."""
    found = newest_saved(
        root,
        generation,
        lambda _, meta: meta.get("format") == FORMAT and meta.get("model_id") == model_id,
    )
    if found is None:
        return None
    previous, meta = found
    if not can_update(previous, meta):
        log.info("the saved sentences in %s cannot be updated; building them in full", previous)
        return None

    def write(work: Path) -> bool:
        try:
            written = update_bank(work, previous, chunks, embedder, index)
        except (ValueError, KeyError, IndexError, TypeError) as error:
            log.warning(
                "could not update the sentences of %s (%s); building them in full", previous, error
            )
            return False
        if written is None:
            return False
        count, max_idf = written
        meta = {"format": FORMAT, "model_id": model_id, **generation.as_json()}
        meta |= {"sentences": count, "max_idf": max_idf, "tokenizer": tokenizer_key()}
        (work / "meta.json").write_text(json.dumps(meta), "utf-8")
        return True

    return save_folder(root, generation, write, "the quotable sentences", replace=True)


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
        sentences = SavedRecords(folder, "sentences", sentence_of)
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
    root: Path,
    bank: SentenceBank,
    generation: Generation,
    model_id: str,
    *,
    replace=False,
    index: ChunkIndex | None = None,
) -> Path | None:
    """Write ``bank`` as ``generation``'s and rename it into place (``replace``: a folder
    ``load_bank`` refused is replaced); returns the folder, ``None`` when it cannot be written.
    With the generation's chunk ``index``, also what the next generation's update reads."""

    def write(work: Path) -> bool:
        lookup, (idf, max_idf) = bank.chunk_lookup(), bank.idf_table()
        if not isinstance(lookup, dict) or not isinstance(idf, dict):
            raise TypeError("only a bank built in this process is saved, not an opened one")
        write_records(work, "sentences", (sentence_record(s) for s in bank.sentences))
        write_records(work, "tokens", (sorted(t) for t in bank.tokens))
        SavedLookup.save(work / "lookup", lookup)
        frequency = Counter(token for tokens in bank.tokens for token in tokens)
        SavedIdf.save(work / "idf", idf, frequency)
        references = json.dumps(bank.reference_renderings(), ensure_ascii=False)
        (work / "references.json").write_text(references, "utf-8")
        np.save(work / "vectors.npy", np.asarray(bank.vectors, dtype=np.float32))
        meta = {"format": FORMAT, "model_id": model_id, **generation.as_json()}
        meta |= {"sentences": len(bank), "max_idf": max_idf, "tokenizer": tokenizer_key()}
        if index is not None:
            keys = [dedup_key(s.text) for s in bank.sentences]
            places = np.array([s.position for s in bank.sentences], dtype=np.float64)
            hashes = np.array([key_hash(k) for k in keys], dtype=np.int64)
            save_update_index(work, places, hashes, index)
        (work / "meta.json").write_text(json.dumps(meta), "utf-8")
        return True

    return save_folder(root, generation, write, "the quotable sentences", replace=replace)


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
