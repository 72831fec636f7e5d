"""Translation at ingest: shipped renderings first, then the cache, then the model, every
rendering checked; an unreachable model leaves the originals and a count, a later run fills in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import default_sources, parse_sources, sync_index
from ingest.translation import ChatTranslator, Renderer, RenderingCache
from nenqa.glossary import Glossary, load_glossary_table
from nenqa.settings import PROJECT_ROOT
from nenqa.types import Chunk
from tests.scripted_llm import ScriptedLLM

DATA = PROJECT_ROOT / "data"
GLOSSARY = Glossary(load_glossary_table(DATA / "glossary.tsv"))
FIRST = "兰瑞肽组的中位无进展生存期为13.3个月。"
SECOND = "安慰剂组为9.8个月。"
FAITHFUL = [
    {"when": FIRST, "reply": "The mPFS in the lanreotide group was 13.3 months."},
    {"when": SECOND, "reply": "The placebo group had 9.8 months."},
]
# The second rendering changes a number: the check refuses it.
ONE_UNFAITHFUL = [FAITHFUL[0], {"when": SECOND, "reply": "The placebo group had 9.9 months."}]


class MemoryIndex:
    """A chunk index in a dict: what the pipeline writes and deletes, without Chroma."""

    def __init__(self) -> None:
        self.chunks: dict[str, Chunk] = {}

    def ids(self, where: dict | None = None) -> set[str]:
        return set(self.chunks)

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray) -> None:
        self.chunks.update((c.chunk_id, c) for c in chunks)

    def delete(self, ids: Sequence[str]) -> None:
        for chunk_id in ids:
            self.chunks.pop(chunk_id)


class ZeroEmbedder:
    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 2), dtype=np.float32)


@pytest.fixture
def notes(tmp_path) -> Path:
    path = tmp_path / "new-notes.md"
    path.write_text(f"# 新药试验笔记\n\n## 1 生物治疗\n\n{FIRST}{SECOND}\n", encoding="utf-8")
    return path


@pytest.fixture
def llm(tmp_path):
    server = ScriptedLLM(ONE_UNFAITHFUL, tmp_path)
    yield server
    server.stop()


def render(notes: Path, cache: RenderingCache | None, base_url: str | None):
    corpus = parse_sources([notes])
    translator = (lambda: ChatTranslator(base_url, "scripted", timeout_s=5)) if base_url else None
    report = Renderer(GLOSSARY, cache=cache, translator=translator).render(corpus)
    twins = [c for c in corpus.chunks if c.rendering_of]
    return corpus, report, twins


def asked(llm: ScriptedLLM) -> list[str]:
    """The unit each request to the model asked for."""
    prompts = [r["messages"][-1]["content"] for r in llm.requests()]
    return [unit for p in prompts for unit in (FIRST, SECOND) if unit in p]


def test_a_unit_is_translated_once_and_then_comes_from_the_cache(notes, llm, tmp_path):
    cache = RenderingCache(tmp_path / "translations.jsonl")
    _, report, (twin,) = render(notes, cache, llm.base_url)
    assert (report.units, report.translated, report.failed_checks) == (2, 1, 1)
    assert asked(llm) == [FIRST, SECOND]
    # A new run (a new process: the cache read from its file) asks only for the refused unit.
    _, again, (same,) = render(notes, RenderingCache(cache.path), llm.base_url)
    assert (again.cached, again.translated, again.failed_checks) == (1, 0, 1)
    assert asked(llm) == [FIRST, SECOND, SECOND]
    assert same == twin


def test_a_rendering_that_fails_the_check_is_kept_out_and_counted(notes, llm):
    corpus, report, (twin,) = render(notes, None, llm.base_url)
    (parent,) = [c for c in corpus.chunks if not c.rendering_of]
    assert (
        report.failed_checks == 1
        and "numbers missing from the rendering: 9.8" in (report.problems[0])
    )
    assert twin.text == "The mPFS in the lanreotide group was 13.3 months."
    assert "9.9" not in twin.text
    # Aligned with the parent's sentences: the refused one is an empty span.
    assert twin.sentence_offsets == ((0, len(twin.text)), (len(twin.text), len(twin.text)))
    assert (twin.rendering_of, twin.language, parent.language) == (parent.chunk_id, "en", "zh")
    assert (twin.doc_id, twin.kind, twin.section) == (parent.doc_id, parent.kind, parent.section)


def test_an_unreachable_model_leaves_the_originals_and_says_how_many_lack_a_rendering(notes):
    corpus, report, twins = render(notes, None, "http://127.0.0.1:9/v1")
    assert twins == [] and len(corpus.chunks) == 1
    assert (report.units, report.missing, report.translated) == (2, 2, 0)
    assert "the translation endpoint failed" in (report.translator_error or "")


def test_a_later_run_fills_in_the_renderings_and_replaces_the_old_twin(notes, llm, tmp_path):
    index, cache = MemoryIndex(), RenderingCache(tmp_path / "translations.jsonl")
    corpus, report, _ = render(notes, cache, "http://127.0.0.1:9/v1")
    assert sync_index(corpus, index, ZeroEmbedder()) == (1, 0, 0) and report.missing == 2
    corpus, report, (twin,) = render(notes, cache, llm.base_url)
    assert sync_index(corpus, index, ZeroEmbedder()) == (1, 0, 1) and report.missing == 0
    assert twin.sentence_offsets[1] == (len(twin.text), len(twin.text))
    llm.set_rules(FAITHFUL)  # the model now renders the second sentence faithfully
    corpus, report, (filled,) = render(notes, cache, llm.base_url)
    assert (report.cached, report.translated) == (1, 1)
    assert sync_index(corpus, index, ZeroEmbedder()) == (1, 1, 1)  # new twin in, old one out
    assert filled.text.endswith("The placebo group had 9.8 months.")
    assert set(index.chunks) == {c.chunk_id for c in corpus.chunks}
    assert twin.chunk_id not in index.chunks


def test_the_default_corpus_gets_every_rendering_from_its_shipped_files():
    corpus = parse_sources(default_sources(DATA))
    parents = len(corpus.chunks)

    def no_model():
        raise AssertionError("the default corpus must not need the translator")

    report = Renderer(GLOSSARY, translator=no_model).render(corpus)
    assert (report.units, report.shipped, report.missing, report.failed_checks) == (101, 101, 0, 0)
    assert parents == 139 and len(corpus.chunks) == 139 + report.twins == 229
    twins = [c for c in corpus.chunks if c.rendering_of]
    by_id = {c.chunk_id: c for c in corpus.chunks}
    for twin in twins:
        parent = by_id[twin.rendering_of]
        assert len(twin.sentence_offsets) == len(parent.sentence_offsets or ())
        assert twin.language != parent.language
    spinet = next(t for t in twins if t.kind == "trial" and "Trial: SPINET" in t.text)
    assert "13.3 months" in spinet.text and "Review text:" in spinet.text


class FixedTranslator:
    """Replies with one text and keeps what it was asked."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.asked: list[str] = []

    def translate(self, text: str, target: str, terms: str) -> str:
        self.asked.append(text)
        return self.reply


@pytest.mark.parametrize(
    "reply",
    [
        "The mPFS in the lanreotide group was 13.3 months.",  # markers dropped
        "The mPFS in the lanreotide group was 13.3 months^[9].",  # markers renumbered
    ],
)
def test_citation_markers_are_kept_by_code_not_by_the_model(reply):
    unit = "兰瑞肽组的中位无进展生存期为13.3个月^[7-8]。"
    translator = FixedTranslator(reply)
    text, problems = Renderer(GLOSSARY).translate(translator, unit, "en")
    assert translator.asked == ["兰瑞肽组的中位无进展生存期为13.3个月。"]
    assert text == "The mPFS in the lanreotide group was 13.3 months^[7-8]."
    assert problems == []
