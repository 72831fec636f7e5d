"""Chunks stay inside one paragraph, point back at the source, and keep stable IDs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.chunking import (
    chunk_document,
    find_trial_mentions,
    reference_chunks,
    sentence_windows,
)
from ingest.review import parse_review
from nenqa.types import Chunk, Document, Sentence, Span
from retriever.store import chunk_from_record, chunk_metadata

REVIEW = Path(__file__).resolve().parent.parent / "data" / "nen-drug-trials-review-2022.md"
MAX_CHARS = 320


@pytest.fixture(scope="module")
def review() -> Document:
    return parse_review(REVIEW)


@pytest.fixture(scope="module")
def passages(review: Document) -> list[Chunk]:
    return chunk_document(review, max_chars=MAX_CHARS)


def without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def chunks_mentioning(chunks: list[Chunk], needle: str) -> list[Chunk]:
    return [chunk for chunk in chunks if needle in chunk.text]


# --- passages ----------------------------------------------------------------------------


def test_every_chunk_text_is_found_through_its_spans(
    review: Document, passages: list[Chunk]
) -> None:
    for chunk in passages:
        pieces = "".join(review.source_text[s.start : s.end] for s in chunk.spans)
        assert without_whitespace(pieces) == without_whitespace(chunk.text), chunk.chunk_id


def test_chunks_carry_the_offsets_of_their_sentences(
    review: Document, passages: list[Chunk]
) -> None:
    printed = {s.text for sec in review.sections for p in sec.paragraphs for s in p.sentences}
    for chunk in passages:
        offsets = chunk.sentence_offsets
        assert offsets is not None and len(offsets) == chunk.metadata["sentences"]
        sentences = [chunk.text[lo:hi] for lo, hi in offsets]
        assert set(sentences) <= printed, chunk.chunk_id
        separator = " " if chunk.metadata["language"] == "en" else ""
        assert separator.join(sentences) == chunk.text
    assert all(c.sentence_offsets == () for c in reference_chunks(review))


def test_sentence_offsets_survive_the_index_and_an_older_index_still_loads(
    passages: list[Chunk],
) -> None:
    chunk = passages[0]
    stored = chunk_metadata(chunk)
    assert all(isinstance(v, str | int | float | bool) for v in stored.values())
    loaded = chunk_from_record(chunk.chunk_id, chunk.text, stored)
    assert loaded.sentence_offsets == chunk.sentence_offsets and loaded.spans == chunk.spans
    del stored["sentence_offsets"]  # what an index written before the field holds
    assert chunk_from_record(chunk.chunk_id, chunk.text, stored).sentence_offsets is None


def test_no_chunk_crosses_a_paragraph_or_section(review: Document, passages: list[Chunk]) -> None:
    paragraphs = [
        (section.path, paragraph.sentences[0].start, paragraph.sentences[-1].end)
        for section in review.sections
        for paragraph in section.paragraphs
    ]
    for chunk in passages:
        owners = [
            path
            for path, start, end in paragraphs
            if start <= chunk.spans[0].start and chunk.spans[-1].end <= end
        ]
        assert owners == [chunk.section], chunk.text[:40]


def test_chunks_cover_every_sentence_and_stay_near_the_size_limit(
    review: Document, passages: list[Chunk]
) -> None:
    texts = [chunk.text for chunk in passages]
    for section in review.sections:
        for paragraph in section.paragraphs:
            for sentence in paragraph.sentences:
                assert any(sentence.text in text for text in texts), sentence.text[:40]
    for chunk in passages:
        assert len(chunk.text) <= MAX_CHARS or chunk.metadata["sentences"] == 1


def test_sections_reach_the_chunks(passages: list[Chunk]) -> None:
    sections = {chunk.section for chunk in passages}
    assert {"1 生物治疗", "2 靶向治疗", "3 化疗", "4 免疫治疗", "5 新药研究", "6 总结"} <= sections
    assert {"摘要", "Abstract", "引言"} <= sections


def test_chunk_refs_are_the_union_of_its_sentences(passages: list[Chunk]) -> None:
    spinet = chunks_mentioning(passages, "SPINET")
    assert spinet and all(7 in chunk.refs for chunk in spinet)
    for chunk in passages:
        markers = re.findall(r"\^\[[^\]]+\]", chunk.text)
        assert bool(markers) == bool(chunk.refs)
        assert chunk.metadata["refs"] == (
            f",{','.join(map(str, chunk.refs))}," if chunk.refs else ""
        )


def test_trials_discussed_without_a_marker_carry_no_reference(passages: list[Chunk]) -> None:
    for trial in ("SEQTOR", "ET-NEC", "ECOG-ACRIN E2211"):
        chunks = [chunk for chunk in passages if trial in chunk.trials]
        assert chunks, trial
        assert all(chunk.refs == () for chunk in chunks), trial


def test_reference_filter_string_does_not_confuse_7_with_17_or_27(passages: list[Chunk]) -> None:
    with_seven = [chunk for chunk in passages if ",7," in str(chunk.metadata["refs"])]
    assert with_seven and all(7 in chunk.refs for chunk in with_seven)
    assert all(",7," not in str(c.metadata["refs"]) for c in passages if 7 not in c.refs)


def test_metadata_is_flat_scalars(review: Document, passages: list[Chunk]) -> None:
    for chunk in [*passages, *reference_chunks(review)]:
        for key, value in chunk.metadata.items():
            assert isinstance(value, str | int | float | bool), key
        assert chunk.metadata["doc_id"] == review.doc_id
        assert chunk.metadata["section"] == chunk.section


def test_every_trial_the_review_names_is_detected(passages: list[Chunk]) -> None:
    found = {trial for chunk in passages for trial in chunk.trials}
    assert {
        "PROMID",
        "CLARINET",
        "SPINET",
        "CLARINET FORTE",
        "REMINET",
        "GETNE-TRASGU",
        "LUNA",
        "TALENT",
        "AXINET",
        "ECOG-ACRIN E2211",
        "SEQTOR",
        "ET-NEC",
        "Keynote-028",
        "Keynote-158",
        "DART SWOG S1609",
        "GCO-001 NIPINEC",
        "DUNE",
        "IMpower133",
        "CASPIAN",
        "NICE-NEC",
        "NCT02215447",
        "NCT04325425",
    } <= found


# --- windows -----------------------------------------------------------------------------


def sentences_of_lengths(*lengths: int) -> list[Sentence]:
    return [Sentence(text="字" * n, refs=(), spans=(Span(0, n),)) for n in lengths]


@pytest.mark.parametrize(
    ("lengths", "expected"),
    [
        ((100, 100, 100, 100), [(0, 3), (2, 4)]),
        ((200, 200, 200), [(0, 1), (1, 2), (2, 3)]),
        ((500, 50, 50), [(0, 1), (1, 3)]),
        ((50, 50, 500), [(0, 2), (2, 3)]),
        ((80,), [(0, 1)]),
    ],
)
def test_windows_overlap_by_one_sentence_where_it_fits(
    lengths: tuple[int, ...], expected: list[tuple[int, int]]
) -> None:
    assert sentence_windows(sentences_of_lengths(*lengths), 320, 1) == expected


def test_without_overlap_windows_tile_the_paragraph() -> None:
    windows = sentence_windows(sentences_of_lengths(100, 100, 100, 100, 100), 250, 0)
    assert windows == [(0, 2), (2, 4), (4, 5)]


def test_a_fact_over_two_sentences_stays_together(passages: list[Chunk]) -> None:
    # 结果显示 ... opens the sentence after LUNA's design; the numbers need the trial's name.
    luna = [c for c in passages if "16.53个月" in c.text]
    assert any("LUNA" in chunk.trials for chunk in luna)


# --- stable IDs ---------------------------------------------------------------------------


def test_rechunking_gives_identical_ids(review: Document, passages: list[Chunk]) -> None:
    again = chunk_document(parse_review(REVIEW), max_chars=MAX_CHARS)
    assert [c.chunk_id for c in again] == [c.chunk_id for c in passages]
    assert len({c.chunk_id for c in passages}) == len(passages)
    assert all(re.fullmatch(r"p-[0-9a-f]{16}", c.chunk_id) for c in passages)


def test_editing_one_paragraph_changes_only_its_chunk_ids(
    tmp_path: Path, passages: list[Chunk]
) -> None:
    text = REVIEW.read_text(encoding="utf-8")
    edited = text.replace(
        "共纳入77例晚期肺典型/非典型类癌", "共纳入77例（全部为成人）晚期肺典型/非典型类癌"
    )
    assert edited != text
    path = tmp_path / REVIEW.name
    path.write_text(edited, encoding="utf-8")
    changed = chunk_document(parse_review(path), max_chars=MAX_CHARS)

    def paragraph_key(chunk: Chunk) -> tuple[str, object]:
        return chunk.section, chunk.metadata["paragraph"]

    edited_paragraph = next(paragraph_key(c) for c in changed if "全部为成人" in c.text)
    before = {c.chunk_id for c in passages if paragraph_key(c) != edited_paragraph}
    after = {c.chunk_id for c in changed if paragraph_key(c) != edited_paragraph}
    assert before == after
    old_ids = {c.chunk_id for c in passages}
    assert all(c.chunk_id not in old_ids for c in changed if "全部为成人" in c.text)


# --- trial mentions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "trials"),
    [
        ("SPINET随机双盲Ⅲ期研究^[7]", ("SPINET",)),
        ("CLARINET FORTE前瞻性Ⅱ期临床试验", ("CLARINET FORTE",)),
        ("PROMID和CLARINET两大经典药物临床试验", ("PROMID", "CLARINET")),
        ("phase II NICE–NEC trial (GETNE T1913)", ("NICE-NEC",)),
        ("the TALENT trial (GETNE1509)", ("TALENT",)),
        ("KEYNOTE-028 study", ("Keynote-028",)),
        ("DART SWOG S1609 II期", ("DART SWOG S1609",)),
        ("紫杉醇联合卡铂(NCT02215447)", ("NCT02215447",)),
        ("LUNAR and dunes are not trials", ()),
        ("II期ET-NEC研究", ("ET-NEC",)),
    ],
)
def test_find_trial_mentions(text: str, trials: tuple[str, ...]) -> None:
    assert find_trial_mentions(text) == trials


# --- references ---------------------------------------------------------------------------


def test_one_reference_chunk_per_entry(review: Document) -> None:
    chunks = reference_chunks(review)
    assert [c.refs for c in chunks] == [(n,) for n in range(1, 51)]
    assert {c.kind for c in chunks} == {"reference"}
    assert {c.section for c in chunks} == {"参考文献"}
    assert all(re.fullmatch(r"r-[0-9a-f]{16}", c.chunk_id) for c in chunks)
    assert len({c.chunk_id for c in chunks}) == 50
    assert [c.chunk_id for c in reference_chunks(review)] == [c.chunk_id for c in chunks]


def test_reference_chunk_holds_both_forms_of_a_chinese_entry(review: Document) -> None:
    chunk = reference_chunks(review)[20]
    assert chunk.text.startswith("[21] 中国抗癌协会神经内分泌肿瘤专业委员会.")
    assert "Society of Neuroendocrine Neoplasm of China Anti-Cancer Association" in chunk.text
    assert chunk.metadata["refs"] == ",21,"
    assert chunk.metadata["year"] == 2022


def test_reference_chunk_names_its_trial(review: Document) -> None:
    by_number = {c.refs[0]: c for c in reference_chunks(review)}
    assert by_number[7].trials == ("SPINET",)
    assert by_number[29].trials == ("NCT03591731",)
    assert by_number[33].trials == ("NICE-NEC",)
