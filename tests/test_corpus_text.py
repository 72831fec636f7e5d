"""The scope check's corpus text, written once per generation and memory-mapped by every later
process: it finds exactly the words the text in memory finds, and the check decides the same."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from answer.corpus_text import CorpusText, open_corpus_text
from answer.scope import ScopeCheck
from ingest.pipeline import default_sources, parse_sources
from nenqa.glossary import load_glossary_table
from nenqa.settings import Settings
from retriever.generation import Generation, fingerprint_of

QUESTIONS = Path(__file__).parent.parent / "eval" / "scope_questions.jsonl"


class CountedChunks(list):
    """The generation's chunks, counting how often they are read."""

    walks = 0

    def __iter__(self):
        self.walks += 1
        return super().__iter__()


@pytest.fixture(scope="module")
def chunks():
    return CountedChunks(parse_sources(default_sources(Settings().data_dir)).chunks)


@pytest.fixture(scope="module")
def terms():
    return load_glossary_table(Settings().data_dir / "glossary.tsv")


def generation_of(chunks, number: int = 1) -> Generation:
    return Generation(number, fingerprint_of(c.chunk_id for c in chunks))


def test_a_saved_text_finds_what_the_text_in_memory_finds(tmp_path, chunks, terms):
    forms = [f for t in terms for f in t.forms]
    generation = generation_of(chunks)
    open_corpus_text(chunks, forms, index_dir=tmp_path, generation=generation)
    walks = chunks.walks
    saved = open_corpus_text(chunks, forms, index_dir=tmp_path, generation=generation)
    assert chunks.walks == walks  # a later process reads the saved file, not the chunks
    in_memory = CorpusText.of([c.text for c in chunks], forms)
    probes = ["依维莫司", "spinet", "netter-1", "特罗司他", "telotristat", "癌\n", "", "ÿ"]
    probes += [c.text[i : i + n].lower() for c in chunks[::7] for i, n in ((3, 4), (40, 9))]
    assert [p in saved for p in probes] == [p in in_memory for p in probes]
    assert "依维莫司" in saved and "特罗司他" not in saved
    pattern = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
    assert saved.words(pattern) == in_memory.words(pattern)
    listed = open_corpus_text(chunks, forms, index_dir=tmp_path, generation=generation)
    assert listed.words(pattern) == in_memory.words(pattern)  # read from the listed words


def test_the_scope_check_decides_the_same_over_the_saved_text(tmp_path, chunks, terms):
    forms = [f for t in terms for f in t.forms]
    saved = open_corpus_text(chunks, forms, index_dir=tmp_path, generation=generation_of(chunks))
    over_saved = ScopeCheck(saved, forms)
    in_memory = ScopeCheck([c.text for c in chunks], forms)
    for check in (over_saved, in_memory):
        check.learn_glossary(terms)
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()]
    assert [over_saved.unknown_entities(q) for q in questions] == [
        in_memory.unknown_entities(q) for q in questions
    ]
    assert over_saved.unknown_entities("Is telotristat effective for carcinoid syndrome?")


def test_other_glossary_forms_or_a_damaged_file_are_written_again(tmp_path, chunks, caplog):
    generation = generation_of(chunks)
    open_corpus_text(chunks, ["依维莫司"], index_dir=tmp_path, generation=generation)
    with caplog.at_level(logging.WARNING, logger="nenqa.scope"):
        changed = open_corpus_text(chunks, ["特罗司他"], index_dir=tmp_path, generation=generation)
    assert "not this generation's" in caplog.text and "特罗司他" in changed
    folder = next(p for p in (tmp_path / "scope").iterdir() if not p.name.startswith("."))
    (folder / "text.txt").write_bytes(b"cut short")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nenqa.scope"):
        again = open_corpus_text(chunks, ["特罗司他"], index_dir=tmp_path, generation=generation)
    assert "cannot be read" in caplog.text and "依维莫司" in again


def test_chunks_that_are_not_the_generations_are_kept_in_memory(tmp_path, chunks, caplog):
    stale = generation_of(chunks[:-1])
    with caplog.at_level(logging.WARNING, logger="nenqa.scope"):
        text = open_corpus_text(chunks, [], index_dir=tmp_path, generation=stale)
    assert "kept in this process" in caplog.text and "依维莫司" in text
    assert not [p for p in (tmp_path / "scope").iterdir() if not p.name.startswith(".")]


def test_an_updated_text_is_the_full_build_of_its_chunks(tmp_path, terms):
    """The next generation's text from the newest saved one and the change: the same bytes,
    line index and word counts as written from every chunk, with no chunk decoded but the
    added ones."""
    from retriever.snapshot import generation_folder
    from tests.conftest import rendered_default_corpus
    from tests.test_sentence_update import _table
    from tests.test_table_update import _change

    every = sorted(rendered_default_corpus(Settings().data_dir).chunks, key=lambda c: c.chunk_id)
    added, removed = _change(every)
    before = [c for c in every if c.chunk_id not in {c.chunk_id for c in added}]
    after = [c for c in every if c.chunk_id not in {c.chunk_id for c in removed}]
    forms = [f for t in terms for f in t.forms]
    first, table_before = _table(tmp_path / "tables", 1, before)
    second, table_after = _table(tmp_path / "tables", 2, after)
    pattern = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
    earlier = open_corpus_text(table_before, forms, index_dir=tmp_path / "a", generation=first)
    earlier.words(pattern)  # listed, as the first worker's scope check lists them
    updated = open_corpus_text(table_after, forms[1:], index_dir=tmp_path / "a", generation=second)
    full = open_corpus_text(table_after, forms[1:], index_dir=tmp_path / "b", generation=second)
    folders = [generation_folder(tmp_path / root / "scope", second) for root in ("a", "b")]
    for name in ("text.txt", "meta.json", "ids.npy", "lengths.npy"):
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name
    (listed,) = folders[0].glob("words-*.json")  # written with the update, from the counts
    assert (
        updated.words(pattern)
        == full.words(pattern)
        == CorpusText.of([c.text for c in after], forms[1:]).words(pattern)
    )
    assert listed.read_bytes() == (folders[1] / listed.name).read_bytes()


def test_a_damaged_word_list_of_the_previous_text_means_a_full_write(tmp_path, caplog):
    from retriever.snapshot import generation_folder
    from tests.conftest import rendered_default_corpus
    from tests.test_sentence_update import _table

    every = sorted(rendered_default_corpus(Settings().data_dir).chunks, key=lambda c: c.chunk_id)
    first, table_before = _table(tmp_path / "tables", 1, every[:-3])
    second, table_after = _table(tmp_path / "tables", 2, every)
    pattern = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
    open_corpus_text(table_before, [], index_dir=tmp_path, generation=first).words(pattern)
    (listed,) = generation_folder(tmp_path / "scope", first).glob("words-*.json")
    listed.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="nenqa.scope"):
        text = open_corpus_text(table_after, [], index_dir=tmp_path, generation=second)
    assert "could not update the corpus text" in caplog.text
    assert text.words(pattern) == CorpusText.of([c.text for c in table_after]).words(pattern)
