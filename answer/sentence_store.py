"""The quotable sentences of a generation, embedded once and opened by every process.

``SentenceBank`` splits every chunk into quotable sentences and embeds each one: seconds for
the default corpus, hours per process at 100k chunks. So the first process that needs a
generation's bank saves it beside the index
(``<index_dir>/sentences/<model hash>/<number>-<fingerprint>/``: the sentences with their
fields, their token sets, the chunk lookup and reference renderings as JSON, the vectors as
``vectors.npy``, ``meta.json``), and every later process, worker and reload opens it, the
vectors memory-mapped read-only. Keyed by the generation and the embedding model, so another
model never reuses vectors. A new generation reuses the vectors of the bank this process
held, or else of the newest saved one, so only new sentences are embedded.

Written under a temporary name and renamed into place, as the search tables are
(``retriever.snapshot``); the two newest generations per model are kept. A folder that does not
match (another format, generation or model) or cannot be read is rebuilt with a warning; an
index folder that cannot be written leaves the bank in this process's memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from answer.sentences import EvidenceSentence, SentenceBank
from nenqa.types import Chunk
from retriever.generation import Generation, fingerprint_of
from retriever.snapshot import generation_folder, publish_folder

FORMAT = 1

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
    folder, or built (vectors of ``reuse`` or of the newest saved bank reused) and saved.
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
    bank = SentenceBank(embedder, chunks, reuse=reuse or _newest_saved(root, embedder, model_id))
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
    """The bank saved in ``folder``; ``None`` (build it) when it is another generation's or
    model's, of another format, or cannot be read."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        expected = {"format": FORMAT, "model_id": model_id, **generation.as_json()}
        if {key: meta.get(key) for key in expected} != expected:
            log.warning("the saved sentences in %s are not this generation's; rebuilding", folder)
            return None
        records = _read_json(folder / "sentences.json")
        tokens = [frozenset(t) for t in _read_json(folder / "tokens.json")]
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        if not len(records) == len(tokens) == meta["sentences"] == (vectors.shape[0] or 0):
            raise ValueError(f"{len(records)} sentences, meta.json says {meta['sentences']}")
        sentences = [_sentence(record) for record in records]
        by_chunk = _read_json(folder / "by_chunk.json")
        references = _read_json(folder / "references.json")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        log.warning("the saved sentences in %s cannot be read (%s); rebuilding", folder, error)
        return None
    return SentenceBank.of_parts(embedder, sentences, vectors, tokens, by_chunk, references)


def save_bank(
    root: Path, bank: SentenceBank, generation: Generation, model_id: str, *, replace=False
) -> Path | None:
    """Write ``bank`` as ``generation``'s and rename it into place (``replace``: a folder
    ``load_bank`` refused is replaced); returns the folder, ``None`` when it cannot be written."""
    work: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        name = generation_folder(root, generation).name
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        _write_json(work / "sentences.json", [_record(s) for s in bank.sentences])
        _write_json(work / "tokens.json", [sorted(t) for t in bank.tokens])
        _write_json(work / "by_chunk.json", bank.chunk_lookup())
        _write_json(work / "references.json", bank.reference_renderings())
        np.save(work / "vectors.npy", np.asarray(bank.vectors, dtype=np.float32))
        meta = {"format": FORMAT, "model_id": model_id, **generation.as_json()}
        _write_json(work / "meta.json", {**meta, "sentences": len(bank)})
    except OSError as error:  # the index folder is read-only, the disk is full
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        log.warning("could not save the quotable sentences in %s: %s", root, error)
        return None
    return publish_folder(root, work, generation, replace=replace)


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


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), "utf-8")


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
