"""Sources beyond the default review: Markdown, plain text, PDF and ClinicalTrials.gov JSON.

Each document keeps its own reference list, its chunks say which list their numbers belong to,
and bad input is refused with the file, the line and the reason.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from ingest.pipeline import default_sources, expand_sources, parse_sources
from ingest.registry import citable_documents, format_citation
from ingest.sources import document_label, read_source
from ingest.trials import load_trials
from nenqa.errors import EmptyFileError, IngestError, MalformedRecordError
from nenqa.settings import PROJECT_ROOT
from nenqa.types import FrontMatter

FIXTURES = Path(__file__).parent / "fixtures"
DATA = PROJECT_ROOT / "data"
NIPINEC_JSON = FIXTURES / "ctgov-NCT03591731.json"


@pytest.fixture(scope="module")
def review_trials():
    return load_trials(DATA / "trials.jsonl")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def by_text(source, fragment: str):
    return next(c for c in source.chunks if fragment in c.text)


# --- Markdown ------------------------------------------------------------------------------


def test_a_markdown_review_keeps_its_own_reference_list_and_citations():
    source = read_source(FIXTURES / "sample-review.md")
    assert (source.doc_id, source.kind, source.label) == ("sample-review", "markdown", "Zhang 2024")
    document = source.document
    assert [r.number for r in document.references] == [1, 2, 3]
    assert document.references[1].title.startswith("Lanreotide in metastatic enteropancreatic")
    assert document.front.doi == "10.0000/nenqa.fixture.2024"

    spinet = by_text(source, "13.3 months")
    assert spinet.section == "1 Somatostatin analogues"
    assert spinet.refs == (1, 2)  # [2], [1] and the review-style ^[1] in one window
    assert by_text(source, "every 28 days").refs == (1, 2)  # a list item citing [1-2]
    assert by_text(source, "14.9%").refs == (3,)  # [3] and the footnote form [^3]
    assert not any("[99]" in c.text for c in source.chunks), "fenced code is not evidence"
    references = [c for c in source.chunks if c.kind == "reference"]
    assert [c.refs for c in references] == [(1,), (2,), (3,)]
    for chunk in source.chunks:
        assert chunk.metadata["doc_label"] == "Zhang 2024"
        assert chunk.metadata["cites"] == "sample-review"


def test_source_offsets_point_at_the_quoted_text():
    source = read_source(FIXTURES / "sample-review.md")
    text = (FIXTURES / "sample-review.md").read_text(encoding="utf-8")
    chunk = by_text(source, "Octreotide LAR")
    assert [text[s.start : s.end] for s in chunk.spans] == ["Octreotide LAR was studied in PROMID."]


def test_two_reviews_each_cite_their_own_numbers():
    corpus = parse_sources([DATA / "nen-drug-trials-review-2022.md", FIXTURES / "sample-review.md"])
    first = {c.doc_id: c for c in corpus.chunks if c.kind == "reference" and c.refs == (1,)}
    assert set(first) == {"nen-drug-trials-review-2022", "sample-review"}
    assert "DASARI" in first["nen-drug-trials-review-2022"].text
    assert "SPINET" in first["sample-review"].text

    labels = citable_documents(corpus.chunks)
    assert labels == {"nen-drug-trials-review-2022": "Liang 2022", "sample-review": "Zhang 2024"}
    assert format_citation(7, "nen-drug-trials-review-2022", labels) == "[Liang 2022 7]"
    assert format_citation(1, "sample-review", labels) == "[Zhang 2024 1]"


def test_the_single_review_case_stays_a_bare_number():
    corpus = parse_sources(default_sources(DATA))
    labels = citable_documents(corpus.chunks)
    assert labels == {"nen-drug-trials-review-2022": "Liang 2022"}
    trial = next(c for c in corpus.chunks if c.kind == "trial" and c.refs == (7,))
    assert trial.metadata["cites"] == "nen-drug-trials-review-2022", "trial refs are the review's"
    assert format_citation(7, trial.metadata["cites"], labels) == "[7]"


def test_labels_that_collide_fall_back_to_document_ids(tmp_path):
    twin = write(
        tmp_path,
        "twin.md",
        (FIXTURES / "sample-review.md").read_text(encoding="utf-8").replace("neuroendocrine", "NE"),
    )
    corpus = parse_sources([FIXTURES / "sample-review.md", twin])
    labels = citable_documents(corpus.chunks)
    assert labels == {"sample-review": "sample-review", "twin": "twin"}
    assert format_citation(2, "twin", labels) == "[twin 2]"


@pytest.mark.parametrize(
    ("authors", "year", "label"),
    [
        (("LIANG Yun", "JI Shunrong"), 2022, "Liang 2022"),
        (("Smith J", "Doe A"), 2023, "Smith 2023"),
        (("Smith, John",), None, "Smith"),
        (("John Smith",), 2020, "Smith 2020"),
        ((), 2020, "fallback-id"),
    ],
)
def test_document_labels_name_the_first_author_and_year(authors, year, label):
    front = FrontMatter("", "", (), authors, "", year, "")
    assert document_label(front, "fallback-id") == label


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("# T\n\nText [4].\n\n## References\n\n[1] A.\n[2] B.\n", 3, r"cites \[4\].*\[1\]-\[2\]"),
        ("# T\n\nText ^[1].\n", 3, "no reference list"),
        ("# T\n\nText [1].\n\n## References\n\n[1] A.\n[3] C.\n", 8, r"\[3\] out of sequence"),
        ("# T\n\nText.\n\n## References\n\n[1] A.\n[1] A again.\n", 8, r"\[1\] out of sequence"),
        ("# T\n\nText [1-99999999].\n\n## References\n\n[1] A.\n", 3, "not in the reference"),
        ("---\ntitle: T\n\nText.\n", 1, "front matter .* never closed"),
        ("# T\n\nText.\n\n```\ncode\n", 5, "code fence .* never closed"),
        ("# T\n\n## References\n\n", 3, "has no entries"),
        ("# Only a title\n", 1, "no paragraphs"),
    ],
)
def test_malformed_markdown_is_refused_with_its_line(tmp_path, text, line, reason):
    path = write(tmp_path, "bad.md", text)
    with pytest.raises(IngestError, match=rf"bad\.md:{line}: .*{reason}"):
        read_source(path)


def test_the_journal_layout_is_parsed_by_the_review_parser_and_guarded(tmp_path):
    review = (DATA / "nen-drug-trials-review-2022.md").read_text(encoding="utf-8")
    assert read_source(DATA / "nen-drug-trials-review-2022.md").kind == "review"
    line = review[: review.index("^[7]")].count("\n") + 1
    # An absurd range is refused by the review parser's reference check, without expanding it.
    path = write(tmp_path, "review.md", review.replace("^[7]", "^[7-99999999]", 1))
    with pytest.raises(MalformedRecordError, match=rf"review\.md:{line}: .*\[1\]-\[50\]"):
        read_source(path)


# --- plain text and PDF --------------------------------------------------------------------


def test_plain_text_joins_a_paragraph_cut_by_a_page_break():
    source = read_source(FIXTURES / "sample-notes.txt")
    assert source.kind == "text" and source.title.startswith("Notes on second-line options")
    talent = by_text(source, "TALENT")
    assert "ORR was 40.4% and the mPFS was 15.8 months [1]." in talent.text
    assert talent.section == "1 Targeted therapy" and talent.refs == (1,)
    assert [r.number for r in source.document.references] == [1]
    assert source.label == "sample-notes", "no authors: the label is the document id"


def test_a_pdf_text_layer_becomes_a_document_with_its_references():
    source = read_source(FIXTURES / "sample-update.pdf")
    assert source.kind == "pdf"
    assert source.title == "Lanreotide in lung carcinoids: a test update"
    passage = by_text(source, "SPINET was")
    assert passage.section == "1 Background"
    # The paragraph ran over the page break and is whole again.
    assert "time to treatment failure was 13.3 months with lanreotide" in passage.text
    assert passage.refs == (1,)
    assert [r.number for r in source.document.references] == [1]
    assert "SPINET study" in source.document.references[0].title
    assert source.label == "Author 2024", "from the PDF's document information"


def test_damaged_and_image_only_pdfs_are_refused(tmp_path):
    data = (FIXTURES / "sample-update.pdf").read_bytes()
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(MalformedRecordError, match=r"truncated\.pdf:0: .*not a readable PDF"):
        read_source(truncated)
    blank = tmp_path / "scanned.pdf"
    blank.write_bytes(_pdf_without_text())
    with pytest.raises(EmptyFileError, match=r"scanned\.pdf:0: .*no text layer"):
        read_source(blank)


def test_a_pdf_error_names_the_page(tmp_path, monkeypatch):
    from ingest.readers import pdf

    text = "Title\n\nBody cites [2].\n\nReferences\n\n[1] Only one."
    monkeypatch.setattr(
        pdf, "extract_pdf_text", lambda path, data: pdf.PdfText(text, (1, 3), "", "", None)
    )
    target = tmp_path / "cited.pdf"
    target.write_bytes(b"%PDF")
    with pytest.raises(MalformedRecordError, match=r"cited\.pdf:3: .*\(page 2 of the PDF"):
        read_source(target)


def _pdf_without_text() -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


# --- ClinicalTrials.gov --------------------------------------------------------------------


def test_a_ctgov_study_maps_onto_a_trial_record_linked_by_nct_number(review_trials):
    source = read_source(NIPINEC_JSON, review_trials=review_trials)
    assert (source.kind, source.doc_id, source.cites) == ("ctgov", "ctgov-nct03591731", "")
    record = source.trials[0]
    assert (record.id, record.nct, record.name) == ("nct03591731", "NCT03591731", "NIPINEC")
    assert (record.phase, record.patients) == ("II", 185)
    assert record.design == "randomized, open-label, parallel, interventional"
    assert record.site == ["GEP", "lung"] and record.grade == ["NEC"]
    assert [arm.drugs_en for arm in record.arms] == [["Nivolumab"], ["Nivolumab", "Ipilimumab"]]
    assert record.arms[1].drugs_zh == ["纳武利尤单抗", "伊匹木单抗"], "from the linked review trial"
    assert record.drug_classes == ["PD-1 inhibitor", "CTLA-4 inhibitor"]
    assert record.refs == [] and record.endpoints == []
    assert "GCO-001 NIPINEC" in record.aliases

    chunk = source.chunks[0]
    assert chunk.kind == "trial" and chunk.trials == ("GCO-001 NIPINEC",)
    assert chunk.metadata["linked_trial"] == "gco-001-nipinec"
    assert chunk.metadata["link"] == "nct"
    assert "Objective response rate (ORR) (8 weeks)" in chunk.text
    assert "综述中的试验 Trial in the review: GCO-001 NIPINEC (linked by NCT number)" in chunk.text


def test_a_studies_page_links_by_acronym_and_leaves_unknown_studies_unlinked(
    tmp_path, review_trials
):
    study = json.loads(NIPINEC_JSON.read_text(encoding="utf-8"))
    spinet = _minimal_study("NCT00000001", "Lanreotide in Lung NET", acronym="SPINET")
    other = _minimal_study("NCT00000002", "A study the review does not discuss")
    page = write(
        tmp_path, "page.json", json.dumps({"studies": [study, spinet, other], "nextPageToken": "x"})
    )
    source = read_source(page, review_trials=review_trials)
    links = {
        c.metadata["nct"]: (c.metadata["linked_trial"], c.metadata["link"]) for c in source.chunks
    }
    assert links == {
        "NCT03591731": ("gco-001-nipinec", "nct"),
        "NCT00000001": ("spinet", "acronym"),
        "NCT00000002": ("", ""),
    }


def test_registry_studies_link_to_trial_records_added_in_the_same_run(tmp_path):
    trials = tmp_path / "trials.jsonl"
    shutil.copyfile(DATA / "trials.jsonl", trials)
    corpus = parse_sources([NIPINEC_JSON, trials])  # the .json first: linking still works
    registry = next(c for c in corpus.chunks if c.doc_id == "ctgov-nct03591731")
    assert registry.metadata["linked_trial"] == "gco-001-nipinec"


def _minimal_study(nct: str, title: str, acronym: str | None = None) -> dict:
    ident = {"nctId": nct, "briefTitle": title, **({"acronym": acronym} if acronym else {})}
    return {"protocolSection": {"identificationModule": ident}}


def _mutated(change) -> str:
    study = json.loads(NIPINEC_JSON.read_text(encoding="utf-8"))
    change(study["protocolSection"])
    return json.dumps(study, indent=2)


def _line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


@pytest.mark.parametrize(
    ("change", "fragment", "reason"),
    [
        (lambda p: p["designModule"].update(phases="PHASE2"), '"phases"', "must be a list"),
        (
            lambda p: p["designModule"]["enrollmentInfo"].update(count="185"),
            '"count"',
            "must be an integer",
        ),
        (lambda p: p["identificationModule"].update(nctId="NCT123"), '"nctId"', "not an NCT"),
        (lambda p: p["identificationModule"].pop("nctId"), '"identificationModule"', "nctId"),
        (lambda p: p["designModule"].update(phases=["PHASE9"]), '"phases"', "unknown phase"),
        (
            lambda p: p["armsInterventionsModule"]["armGroups"].append("Arm C"),
            '"Arm C"',
            "must be objects",
        ),
        (lambda p: p.update(outcomesModule=[]), '"outcomesModule"', "must be an object"),
    ],
)
def test_a_malformed_ctgov_field_is_refused_with_its_line(tmp_path, change, fragment, reason):
    text = _mutated(change)
    path = write(tmp_path, "study.json", text)
    with pytest.raises(
        MalformedRecordError, match=rf"study\.json:{_line_of(text, fragment)}: .*{reason}"
    ):
        read_source(path)


@pytest.mark.parametrize(
    ("text", "error", "reason"),
    [
        ('{"protocolSection": {', MalformedRecordError, "invalid JSON"),
        ('{"results": []}', MalformedRecordError, "not a ClinicalTrials.gov API v2 study"),
        ('{"studies": []}', EmptyFileError, "no studies"),
        ('{"studies": {"a": 1}}', MalformedRecordError, "must be a list"),
        ("[" * 100_000, MalformedRecordError, "JSON"),
        ('{"studies": [' + "9" * 5000 + "]}", MalformedRecordError, "JSON cannot be read"),
    ],
)
def test_json_that_is_not_a_study_is_refused(tmp_path, text, error, reason):
    with pytest.raises(error, match=rf"bad\.json:\d+: .*{reason}"):
        read_source(write(tmp_path, "bad.json", text))


def test_the_same_study_twice_in_a_page_is_refused(tmp_path):
    study = json.loads(NIPINEC_JSON.read_text(encoding="utf-8"))
    text = json.dumps({"studies": [study, copy.deepcopy(study)]}, indent=1)
    with pytest.raises(MalformedRecordError, match=r"appears twice \(first on line 3\)"):
        read_source(write(tmp_path, "page.json", text))


# --- folders and file types ----------------------------------------------------------------


def test_folders_contribute_every_supported_file_and_nothing_else(tmp_path):
    for name in ("a.md", "b.txt", "c.pdf", "d.json", "e.jsonl", "notes.docx", "table.tsv"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    assert [p.name for p in expand_sources([tmp_path])] == [
        "a.md",
        "b.txt",
        "c.pdf",
        "d.json",
        "e.jsonl",
    ]
    with pytest.raises(IngestError, match=r"notes\.docx:0: unsupported file type '\.docx'"):
        expand_sources([tmp_path / "notes.docx"])


def test_two_files_with_the_same_document_id_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = shutil.copyfile(FIXTURES / "sample-notes.txt", tmp_path / "a" / "notes.txt")
    two = shutil.copyfile(FIXTURES / "sample-review.md", tmp_path / "b" / "notes.md")
    with pytest.raises(IngestError, match=r"notes\.md:0: document id 'notes' is also the id of"):
        parse_sources([one, two])


def test_a_trials_file_named_after_a_review_cites_that_review(tmp_path):
    trials = shutil.copyfile(DATA / "trials.jsonl", tmp_path / "sample-review.trials.jsonl")
    source = read_source(trials)
    assert source.kind == "trials" and source.cites == "sample-review"
    assert {c.metadata["cites"] for c in source.chunks} == {"sample-review"}
