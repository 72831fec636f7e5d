"""The shipped renderings of the review: one per quotable unit, faithful by the translation check,
and a malformed renderings file refused with its file name and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from answer.sentences import SentenceBank
from ingest.pipeline import default_sources, expand_sources, parse_sources
from ingest.renderings import load_renderings, renderings_path
from ingest.sources import DEFAULT_REVIEW
from nenqa.errors import IngestError, MalformedRecordError
from nenqa.glossary import Glossary, load_glossary_table
from nenqa.settings import PROJECT_ROOT
from nenqa.text import detect_language, has_cjk, rendering_problems, unit_id

DATA = PROJECT_ROOT / "data"
REVIEW = DATA / DEFAULT_REVIEW


class _NoEmbedder:
    """The bank's sentences without the embedding model: every vector is zero."""

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 1), dtype=np.float32)


@pytest.fixture(scope="module")
def units() -> list[str]:
    """The review's quotable units: the sentences an answer quotes, then its Chinese entries."""
    corpus = parse_sources(default_sources(DATA))
    sentences = [s.text for s in SentenceBank(_NoEmbedder(), corpus.chunks).sentences]
    (review,) = [d for d in corpus.documents if d.path.endswith(DEFAULT_REVIEW)]
    return sentences + [r.text for r in review.references if has_cjk(r.text)]


@pytest.fixture(scope="module")
def glossary() -> Glossary:
    return Glossary(load_glossary_table(DATA / "glossary.tsv"))


def file_lines(language: str) -> list[dict]:
    path = renderings_path(REVIEW, language)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_quotable_unit_has_exactly_one_english_line_in_order(units):
    lines = file_lines("en")
    assert [line["zh"] for line in lines] == units  # none missing, extra, merged or reordered
    assert [line["id"] for line in lines] == [unit_id(u) for u in units]
    assert len({line["id"] for line in lines}) == len(lines)
    assert len(units) == 101  # 100 sentences and reference [21]


def test_every_english_unit_has_a_chinese_line_from_the_reviews_own_abstract(units):
    english = [u for u in units if detect_language(u) == "en"]
    assert [line["en"] for line in file_lines("zh")] == english
    assert len(english) == 4  # the review's English abstract


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_shipped_rendering_passes_the_translation_check(language, glossary):
    failures = {}
    for rendering in load_renderings(renderings_path(REVIEW, language), language).values():
        problems = rendering_problems(
            rendering.original, rendering.text, glossary, language, waive=rendering.waive
        )
        if problems:
            failures[rendering.original[:40]] = problems
    assert not failures


def test_each_waiver_is_reviewed_and_needed(glossary):
    waived = [r for r in load_renderings(renderings_path(REVIEW, "en"), "en").values() if r.waive]
    # The one reviewed exception: 一线 inside the idiom 一线曙光 ("a glimmer of hope").
    assert [(r.original, r.waive) for r in waived] == [
        ("靶向DLL3的ADC药物给NEC的治疗带来了一线曙光。", ("一线",))
    ]
    for rendering in waived:
        assert rendering.reason
        assert rendering_problems(rendering.original, rendering.text, glossary, "en")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"x\.en\.jsonl:2: not JSON"),
        ('["a list"]', r"x\.en\.jsonl:2: expected a JSON object"),
        (
            '{"id": "{id}", "zh": "兰瑞肽组13.3个月。"}',
            r":2: field 'en' must be a non-empty string",
        ),
        ('{"id": "u0", "zh": "兰瑞肽组13.3个月。", "en": "x"}', r":2: id u0 is not the unit ID"),
        ('{"id": "{id}", "zh": "兰瑞肽组13.3个月。", "en": "x", "note": 1}', r":2: unknown field"),
        ('{"id": "{id}", "zh": "兰瑞肽组13.3个月。", "en": "x"}', r":2: unit u\w+ is given twice"),
        (
            '{"id": "{id}", "zh": "兰瑞肽组13.3个月。", "en": "x", "waive": ["一线"]}',
            r":2: a waiver needs its 'reason'",
        ),
    ],
)
def test_a_malformed_renderings_line_is_refused_with_file_and_line(tmp_path, line, message):
    good = {"id": unit_id("兰瑞肽组13.3个月。"), "zh": "兰瑞肽组13.3个月。", "en": "13.3 months."}
    path = tmp_path / "x.en.jsonl"
    line = line.replace("{id}", good["id"])
    path.write_text(json.dumps(good, ensure_ascii=False) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=message):
        load_renderings(path, "en")


def test_a_renderings_file_is_never_read_as_a_source():
    assert renderings_path(REVIEW, "en") not in expand_sources([DATA])
    with pytest.raises(IngestError, match=r"\.en\.jsonl:0: a renderings file is read with"):
        expand_sources([renderings_path(REVIEW, "en")])
