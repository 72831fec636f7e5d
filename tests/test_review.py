"""The extracted review parses into the structure, sentences, citations and references it prints."""

from __future__ import annotations

import hashlib
import re
from itertools import pairwise
from pathlib import Path

import pytest

from ingest.review import normalise_for_matching, parse_review
from nenqa.errors import (
    EmptyFileError,
    EncodingError,
    IngestError,
    MalformedRecordError,
    UnreadableFileError,
)
from nenqa.types import Document, Sentence

REVIEW = Path(__file__).resolve().parent.parent / "data" / "nen-drug-trials-review-2022.md"

# A small review in the same layout as the real one: a page break inside a paragraph,
# an English paragraph, and a reference entry continued on the next list item.
MINIMAL_REVIEW = """· 专家述评 ·

测试标题

张 三¹，李 四²

[摘要] 这是摘要。

[关键词] 测试

DOI: 10.19401/j.cnki.1007-3639.2022.09.001

[**Key words**] test

引言句子^[1]。

1 第一节

第一段落被分页打

断了^[1-2]。

2 第二节

Liu et al. reported 13.3 months vs. 9.8 months in the trial^[2]. The second sentence follows.

[参 考 文 献]

- [1] ZHANG S, WANG W, et al. A title [J] . *Ann Oncol*, 2021, 32: S906.
- [2] LI S, et al. Another title [J] . *Lancet*, 2020, 1(2): 3-
- 4.
"""


@pytest.fixture(scope="module")
def review() -> Document:
    return parse_review(REVIEW)


def all_sentences(doc: Document) -> list[tuple[str, Sentence]]:
    return [
        (section.path, sentence)
        for section in doc.sections
        for paragraph in section.paragraphs
        for sentence in paragraph.sentences
    ]


def sentence_containing(doc: Document, needle: str) -> Sentence:
    found = [s for _, s in all_sentences(doc) if needle in s.text]
    assert len(found) == 1, f"{needle!r} is in {len(found)} sentences"
    return found[0]


def without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def line_number(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` that contains ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def write(tmp_path: Path, text: str | bytes, name: str = "review.md") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- front matter and structure ---------------------------------------------------------


def test_front_matter_names_title_authors_doi_journal_and_year(review: Document) -> None:
    front = review.front
    assert front.title_zh == "神经内分泌肿瘤药物临床试验进展"
    assert front.title_en == "Updates on medical treatment for neuroendocrine neoplasm"
    assert front.authors_zh == ("梁贇", "吉顺荣", "虞先濬", "陈洁")
    assert front.authors_en == ("LIANG Yun", "JI Shunrong", "YU Xianjun", "CHEN Jie")
    assert front.doi == "10.19401/j.cnki.1007-3639.2022.09.001"
    assert "中国癌症杂志" in front.journal and "China Oncology" in front.journal
    assert front.year == 2022


def test_document_identity_comes_from_the_file(review: Document) -> None:
    assert review.doc_id == "nen-drug-trials-review-2022"
    assert review.sha256 == hashlib.sha256(REVIEW.read_bytes()).hexdigest()
    assert review.source_text == REVIEW.read_text(encoding="utf-8")


def test_sections_are_profile_abstracts_introduction_then_numbered_one_to_six(
    review: Document,
) -> None:
    assert [section.path for section in review.sections] == [
        "专家简介",
        "摘要",
        "Abstract",
        "引言",
        "1 生物治疗",
        "2 靶向治疗",
        "3 化疗",
        "4 免疫治疗",
        "5 新药研究",
        "6 总结",
    ]
    english = next(s for s in review.sections if s.title == "Abstract")
    assert [p.language for p in english.paragraphs] == ["en"]
    assert english.paragraphs[0].sentences[0].text.startswith("Neuroendocrine neoplasm (NEN)")
    assert len(english.paragraphs[0].sentences) == 4


def test_abstract_and_front_lines_stay_out_of_the_body(review: Document) -> None:
    body = " ".join(s.text for path, s in all_sentences(review) if path not in {"摘要", "Abstract"})
    for front_line in ("[摘要]", "DOI:", "中图分类号", "基金项目", "Correspondence to", "利益冲突"):
        assert front_line not in body
    introduction = next(s for s in review.sections if s.title == "引言")
    assert introduction.paragraphs[0].sentences[0].text.startswith("神经内分泌肿瘤 (neuroendocrine")


def test_headings_are_never_joined_to_the_text_around_them(review: Document) -> None:
    for _, sentence in all_sentences(review):
        assert not re.search(r"(生物治疗|靶向治疗|免疫治疗|新药研究)\s*\n", sentence.text)
        assert not sentence.text.startswith(("1 生物治疗", "2 靶向治疗", "6 总结"))
    assert review.front.title_zh == "神经内分泌肿瘤药物临床试验进展"


# --- page-break repairs -----------------------------------------------------------------


@pytest.mark.parametrize(
    "repaired",
    [
        "兰瑞肽维持",
        "结果显示,仑伐替尼",
        "6个月的PFS率为31%",
        "研究结果显示, O6-甲基鸟嘌呤",
        "欧洲多中心SEQTOR",
        "DLL3最早被发现特异性高表达",
        "肝转移瘤负荷能延长",
        "原发不明NET中的疗效",
        "≤55%组",
    ],
)
def test_words_and_sentences_cut_by_page_breaks_are_joined(review: Document, repaired: str) -> None:
    sentence_containing(review, repaired)


def test_no_sentence_keeps_a_line_break(review: Document) -> None:
    for _, sentence in all_sentences(review):
        assert "\n" not in sentence.text, sentence.text


def test_every_sentence_is_reassembled_from_its_source_spans(review: Document) -> None:
    source = review.source_text
    for _, sentence in all_sentences(review):
        pieces = [source[span.start : span.end] for span in sentence.spans]
        assert without_whitespace("".join(pieces)) == without_whitespace(sentence.text)
        assert all(a.end <= b.start for a, b in pairwise(sentence.spans))
        assert source[sentence.start] == sentence.text[0]
        assert source[sentence.end - 1] == sentence.text[-1]


# --- citations ----------------------------------------------------------------------------


def test_spinet_sentence_cites_seven(review: Document) -> None:
    sentence = sentence_containing(review, "SPINET随机双盲")
    assert sentence.refs == (7,)
    assert "^[7]" in sentence.text


def test_range_marker_expands_to_every_number(review: Document) -> None:
    assert sentence_containing(review, "^[13-16]").refs == (13, 14, 15, 16)


def test_marker_in_the_middle_of_a_sentence_belongs_to_that_sentence(review: Document) -> None:
    sentence = sentence_containing(review, "PROMID临床试验^[4]")
    assert sentence.refs == (4, 11)


def test_sentences_without_markers_cite_nothing(review: Document) -> None:
    for needle in ("SEQTOR III期", "ECOG-ACRIN E2211", "ET-NEC研究"):
        assert sentence_containing(review, needle).refs == ()


def test_every_reference_is_cited_in_the_body(review: Document) -> None:
    cited = {n for _, sentence in all_sentences(review) for n in sentence.refs}
    assert cited == {reference.number for reference in review.references}


# --- reference list -------------------------------------------------------------------------


def test_reference_list_has_fifty_entries_numbered_in_order(review: Document) -> None:
    assert [r.number for r in review.references] == list(range(1, 51))


@pytest.mark.parametrize(
    ("number", "year", "journal", "volume_pages"),
    [
        (1, 2017, "JAMA Oncol", "3(10): 1335-1342"),
        (4, 2014, "N Engl J Med", "371(3): 224-233"),
        (7, 2021, "Ann Oncol", "32: S906"),
        (9, 2017, "Dig Liver Dis", "49(5): 568-571"),
        (31, 2018, "N Engl J Med", "379(23): 2220-2229"),
        (45, 2021, "Cancer Cell", "39(4): 566-579.e7"),
        (50, 2018, "J Natl Compr Canc Netw", "16(9): 1035-1040"),
    ],
)
def test_reference_fields(
    review: Document, number: int, year: int, journal: str, volume_pages: str
) -> None:
    reference = review.reference(number)
    assert reference is not None
    assert (reference.year, reference.journal, reference.volume_pages) == (
        year,
        journal,
        volume_pages,
    )


def test_reference_authors_keep_diacritics_and_et_al(review: Document) -> None:
    reference = review.reference(4)
    assert reference is not None
    assert reference.authors == ("CAPLIN M E", "PAVEL M", "ĆWIKŁA J B", "et al.")
    assert reference.title == "Lanreotide in metastatic enteropancreatic neuroendocrine tumors"


def test_corporate_authors(review: Document) -> None:
    for number in (2, 3):
        reference = review.reference(number)
        assert reference is not None
        assert reference.authors == ("WHO Classification of Tumours Editorial Board",)
    assert review.reference(2).year == 2019  # type: ignore[union-attr]
    assert review.reference(3).title == "Thoracic tumours"  # type: ignore[union-attr]


def test_entries_split_over_a_page_are_one_entry(review: Document) -> None:
    ninth, thirty_first = review.reference(9), review.reference(31)
    assert ninth is not None and thirty_first is not None
    assert ninth.text.endswith("49(5): 568-571.")
    assert "small-cell lung cancer" in thirty_first.title
    assert thirty_first.text.endswith("2220-2229.")
    assert "- 571" not in ninth.text and "- lung" not in thirty_first.text


def test_chinese_entry_keeps_its_english_form_as_alternate(review: Document) -> None:
    reference = review.reference(21)
    assert reference is not None
    assert reference.authors == ("中国抗癌协会神经内分泌肿瘤专业委员会",)
    assert reference.journal == "中国癌症杂志"
    assert reference.alternate is not None
    assert reference.alternate.startswith("Society of Neuroendocrine Neoplasm of China")
    assert "*China Oncol*" in reference.alternate
    assert review.reference(22).alternate is None  # type: ignore[union-attr]


def test_web_entry_keeps_the_trial_registration(review: Document) -> None:
    reference = review.reference(29)
    assert reference is not None
    assert "NCT03591731" in reference.journal
    assert reference.title.startswith("Nivolumab +/- ipilimumab")
    assert reference.authors[0] == "Thoracique IFdC"


def test_reference_text_uses_hyphens_and_its_span_points_at_the_entry(review: Document) -> None:
    for reference in review.references:
        assert "–" not in reference.text
        printed = review.source_text[reference.span.start : reference.span.end]
        assert printed.startswith(f"[{reference.number}] ")
        assert normalise_for_matching(reference.authors[0]) in normalise_for_matching(printed)


# --- a small file in the same layout -------------------------------------------------------


def test_minimal_review_joins_breaks_and_splits_english_sentences(tmp_path: Path) -> None:
    doc = parse_review(write(tmp_path, MINIMAL_REVIEW))
    assert doc.front.title_zh == "测试标题"
    assert doc.front.authors_zh == ("张三", "李四")
    first = next(s for s in doc.sections if s.number == "1")
    assert [s.text for s in first.paragraphs[0].sentences] == ["第一段落被分页打断了^[1-2]。"]
    english = next(s for s in doc.sections if s.number == "2").paragraphs[0]
    assert english.language == "en"
    assert [s.text for s in english.sentences] == [
        "Liu et al. reported 13.3 months vs. 9.8 months in the trial^[2].",
        "The second sentence follows.",
    ]
    assert english.sentences[0].refs == (2,)
    assert doc.reference(2).volume_pages == "1(2): 3-4"  # type: ignore[union-attr]


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    doc = parse_review(write(tmp_path, b"\xef\xbb\xbf" + MINIMAL_REVIEW.encode("utf-8")))
    assert doc.front.title_zh == "测试标题"
    assert [r.number for r in doc.references] == [1, 2]


# --- refusals ------------------------------------------------------------------------------


def assert_refused(error: IngestError, path: Path, line: int, words: str) -> None:
    assert str(error).startswith(f"{path}:{line}: ")
    assert (error.path, error.line) == (str(path), line)
    assert words in error.reason


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absent.md"
    with pytest.raises(UnreadableFileError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, 0, "not found")


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError) as refused:
        parse_review(tmp_path)
    assert_refused(refused.value, tmp_path, 0, "directory")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, content)
    with pytest.raises(EmptyFileError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, 1, "empty")


def test_gb18030_file_is_refused_at_the_first_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"# ok\n\n" + "神经内分泌肿瘤".encode("gb18030") + b"\n")
    with pytest.raises(EncodingError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, 3, "not valid UTF-8")
    assert "GB18030" in refused.value.reason


def test_utf16_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_REVIEW.encode("utf-16"))
    with pytest.raises(EncodingError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, 1, "UTF-16")


def test_nul_bytes_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, b"line one\nline\x00two\n")
    with pytest.raises(EncodingError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, 2, "NUL")


def test_file_without_abstract_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_REVIEW.replace("[摘要] ", ""))
    with pytest.raises(MalformedRecordError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, 1, "[摘要]")


def test_gap_in_reference_numbers_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_REVIEW.replace("- [2] LI S", "- [3] LI S"))
    line = line_number(MINIMAL_REVIEW, "- [2]")
    with pytest.raises(MalformedRecordError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, line, "reference [3] out of sequence; expected [2]")


def test_citation_of_a_missing_reference_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_REVIEW.replace("断了^[1-2]", "断了^[1-3]"))
    with pytest.raises(MalformedRecordError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, line_number(MINIMAL_REVIEW, "第一段落"), "cites [3]")


def test_sections_out_of_order_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_REVIEW.replace("2 第二节", "3 第二节"))
    with pytest.raises(MalformedRecordError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, line_number(MINIMAL_REVIEW, "2 第二节"), "expected 2")


def test_real_review_with_a_reference_removed_is_refused(tmp_path: Path) -> None:
    text = REVIEW.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    twelfth = next(i for i, line in enumerate(lines) if line.startswith("- [12] "))
    path = write(tmp_path, "".join(lines[:twelfth] + lines[twelfth + 1 :]))
    with pytest.raises(MalformedRecordError) as refused:
        parse_review(path)
    assert_refused(refused.value, path, twelfth + 1, "expected [12]")


def test_a_fragment_that_looks_like_a_heading_continues_a_cut_paragraph(tmp_path: Path) -> None:
    cut = MINIMAL_REVIEW.replace(
        "第一段落被分页打\n\n断了^[1-2]。", "中位生存期超过\n\n12 个月\n\n, 差异显著^[1-2]。"
    )
    doc = parse_review(write(tmp_path, cut))
    first = next(s for s in doc.sections if s.number == "1")
    assert [s.text for s in first.paragraphs[0].sentences] == [
        "中位生存期超过12 个月, 差异显著^[1-2]。"
    ]
    assert [s.number for s in doc.sections if s.number] == ["1", "2"]
