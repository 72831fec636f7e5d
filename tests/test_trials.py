"""Trial records: every number and citation traces back to the review; bad files are refused."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from ingest.renderings import load_renderings
from ingest.trials import DRUG_CLASSES, load_trials, trial_chunks
from nenqa.errors import EmptyFileError, EncodingError, MalformedRecordError, UnreadableFileError
from nenqa.glossary import Glossary
from nenqa.settings import PROJECT_ROOT
from nenqa.text import rendering_problems, sentence_spans, unit_id
from nenqa.types import TrialRecord

DATA = PROJECT_ROOT / "data"
TRIALS_PATH = DATA / "trials.jsonl"
REVIEW_PATH = DATA / "nen-drug-trials-review-2022.md"

NUMBER = re.compile(r"\d+(?:\.\d+)?")
MARKER = re.compile(r"\^\[([0-9,\-–]+)\]")


def review_match_form(text: str) -> str:
    """Text reduced to what survives PDF extraction: NFKC, no LaTeX/markdown marks, no whitespace
    (except one space between two digits, so that "G2 65%" stays two numbers).

    Whitespace goes because the extraction breaks pages mid-word (``兰\\n\\n瑞肽``) and
    spaces after punctuation vary; the same reduction is applied to the review and to the data.
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\\geq", "≥").replace("\\leq", "≤").replace("\\%", "%")
    text = text.replace("$", "").replace("*", "")
    text = re.sub(r"(?<=\d)\s+(?=\d)", " ", text)  # keep "G2 65%" two numbers
    return re.sub(r"(?<!\d)\s+|\s+(?!\d)", "", text)


def marker_numbers(marker: str) -> set[int]:
    numbers: set[int] = set()
    for part in marker.split(","):
        low, _, high = part.replace("–", "-").partition("-")
        numbers.update(range(int(low), int(high or low) + 1))
    return numbers


def summary_sentences(summary: str) -> list[str]:
    return [s for s in re.split(r"(?<=。)", review_match_form(summary)) if s]


@pytest.fixture(scope="module")
def review_text() -> str:
    return REVIEW_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def review_body(review_text: str) -> str:
    """The normalised review without its reference list, where the studies are discussed."""
    return review_match_form(review_text.split("[参 考 文 献]")[0])


@pytest.fixture(scope="module")
def trials() -> list[TrialRecord]:
    return load_trials(TRIALS_PATH)


def test_trial_file_holds_every_study_once(trials: list[TrialRecord]) -> None:
    assert len(trials) >= 35
    assert len({t.id for t in trials}) == len(trials)
    assert len({t.name for t in trials}) == len(trials)


def test_every_summary_sentence_is_quoted_from_the_review(
    trials: list[TrialRecord], review_body: str
) -> None:
    misquoted = [
        (t.id, s) for t in trials for s in summary_sentences(t.summary_zh) if s not in review_body
    ]
    assert misquoted == []


def test_every_reported_number_appears_in_the_quoted_sentences(
    trials: list[TrialRecord],
) -> None:
    """Patients and endpoint values must be read off the record's own review sentences."""
    unsupported = []
    for t in trials:
        quoted = set(NUMBER.findall(review_match_form(t.summary_zh)))
        stated = [str(t.patients)] if t.patients is not None else []
        stated += [review_match_form(e.value) for e in t.endpoints]
        stated += [review_match_form(e.arm) for e in t.endpoints if e.arm]
        unsupported += [(t.id, n) for s in stated for n in NUMBER.findall(s) if n not in quoted]
    assert unsupported == []


def test_every_number_in_descriptive_fields_occurs_in_the_review(
    trials: list[TrialRecord], review_text: str
) -> None:
    in_review = set(NUMBER.findall(review_match_form(review_text)))
    unsupported = []
    for t in trials:
        fields = [t.name, *t.aliases, t.phase or "", t.design, *t.grade, t.nct or ""]
        fields += [a.label for a in t.arms] + [e.name for e in t.endpoints]
        for field in fields:
            unsupported += [(t.id, n) for n in NUMBER.findall(review_match_form(field))]
    assert [(i, n) for i, n in unsupported if n not in in_review] == []


def test_phases_are_written_as_roman_numerals(trials: list[TrialRecord]) -> None:
    phases = {t.phase for t in trials if t.phase}
    assert phases and all(re.fullmatch(r"I{1,3}B?(?:/I{1,3})?", p) for p in phases)


def test_chinese_drug_names_are_the_reviews_own(
    trials: list[TrialRecord], review_body: str
) -> None:
    missing = [
        (t.id, d)
        for t in trials
        for arm in t.arms
        for d in arm.drugs_zh
        if review_match_form(d) not in review_body
    ]
    assert missing == []


def test_references_are_cited_in_the_quoted_sentences(trials: list[TrialRecord]) -> None:
    """Each ref of a record sits in a marker inside the review sentences the record quotes."""
    uncited = []
    for t in trials:
        assert all(1 <= r <= 50 for r in t.refs), t.id
        cited: set[int] = set()
        for sentence in summary_sentences(t.summary_zh):
            for marker in MARKER.findall(sentence):
                cited |= marker_numbers(marker)
        uncited += [(t.id, r) for r in t.refs if r not in cited]
    assert uncited == []


def test_studies_without_a_marker_cite_nothing(trials: list[TrialRecord]) -> None:
    unmarked = [t for t in trials if not MARKER.search(t.summary_zh)]
    assert unmarked, "the review discusses several studies without a reference marker"
    assert [t.id for t in unmarked if t.refs] == []


@pytest.mark.parametrize("name_part", ["E2211", "SEQTOR", "ET-NEC", "NCT02215447", "NCT04325425"])
def test_unreferenced_trials_named_by_the_review_have_no_refs(
    trials: list[TrialRecord], name_part: str
) -> None:
    matching = [t for t in trials if name_part in t.name]
    assert len(matching) == 1
    assert matching[0].refs == []


def test_temozolomide_nivolumab_study_has_no_refs(trials: list[TrialRecord]) -> None:
    matching = [
        t
        for t in trials
        if any({"temozolomide", "nivolumab"} <= set(arm.drugs_en) for arm in t.arms)
    ]
    assert len(matching) == 1
    assert matching[0].refs == []


def test_drug_classes_come_from_the_vocabulary(trials: list[TrialRecord]) -> None:
    used = {c for t in trials for c in t.drug_classes}
    assert used <= set(DRUG_CLASSES)


def test_arms_pair_each_chinese_drug_with_one_english_name(trials: list[TrialRecord]) -> None:
    unpaired = [
        (t.id, a.label) for t in trials for a in t.arms if len(a.drugs_zh) != len(a.drugs_en)
    ]
    assert unpaired == []


# --- refusing malformed files -------------------------------------------------------------


def valid_line() -> str:
    return TRIALS_PATH.read_text(encoding="utf-8").splitlines()[0]


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_change(**changes: object) -> str:
    record = json.loads(valid_line())
    record["id"] = "changed"
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return json.dumps(record, ensure_ascii=False)


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"id": "broken", "name": ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (with_change(design=None), "'design': Field required"),
        (with_change(patients="77"), "'patients': Input should be a valid integer"),
        (with_change(arms="兰瑞肽"), "'arms': Input should be a valid list"),
        (with_change(sponsor="Ipsen"), "'sponsor': Extra inputs are not permitted"),
        (with_change(nct="NCT123"), "'nct': String should match pattern"),
        (with_change(drug_classes=["ICI"]), "unknown drug class 'ICI'"),
        (with_change(refs=[0]), "reference number 0"),
    ],
)
def test_malformed_line_is_refused_with_file_and_line(
    tmp_path: Path, bad_line: str, reason: str
) -> None:
    path = write_lines(tmp_path / "trials.jsonl", valid_line(), "", bad_line)
    with pytest.raises(MalformedRecordError) as caught:
        load_trials(path)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{path}:3: ")
    assert reason in str(caught.value)


def test_duplicate_trial_id_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "trials.jsonl", valid_line(), valid_line())
    with pytest.raises(MalformedRecordError, match=r":2: duplicate trial id .* line 1"):
        load_trials(path)


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trials.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EmptyFileError, match=re.escape(f"{path}:0:")):
        load_trials(path)


def test_non_utf8_file_is_refused_at_the_offending_line(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    path.write_bytes((valid_line() + "\n").encode() + with_change().encode("gb18030"))
    with pytest.raises(EncodingError, match=re.escape(f"{path}:2: not UTF-8")):
        load_trials(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="cannot read trial records"):
        load_trials(tmp_path / "absent.jsonl")


def test_blank_lines_and_utf8_bom_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    path.write_text("\ufeff" + valid_line() + "\n\n" + with_change() + "\n", encoding="utf-8")
    assert [t.id for t in load_trials(path)][1] == "changed"


# --- trial chunks ---------------------------------------------------------------------------


def test_chunk_metadata_is_flat_scalars(trials: list[TrialRecord]) -> None:
    for chunk in trial_chunks(trials, "review"):
        assert chunk.kind == "trial"
        assert all(isinstance(v, str | int | float | bool) for v in chunk.metadata.values())


def test_chunk_ids_are_stable_and_distinct(trials: list[TrialRecord]) -> None:
    first = [c.chunk_id for c in trial_chunks(trials, "review")]
    again = [c.chunk_id for c in trial_chunks(load_trials(TRIALS_PATH), "review")]
    other_doc = [c.chunk_id for c in trial_chunks(trials, "another-review")]
    assert first == again
    assert len(set(first)) == len(first)
    assert set(first).isdisjoint(other_doc)
    assert all(re.fullmatch(r"t-[0-9a-f]{16}", i) for i in first)


def test_chunk_text_names_each_drug_in_both_languages(trials: list[TrialRecord]) -> None:
    for trial, chunk in zip(trials, trial_chunks(trials, "review"), strict=True):
        for arm in trial.arms:
            assert all(d in chunk.text for d in (*arm.drugs_zh, *arm.drugs_en)), trial.id
        assert trial.summary_zh in chunk.text
        assert chunk.refs == tuple(trial.refs)
        assert chunk.trials == (trial.name,)


def test_chunk_text_of_unreferenced_study_says_no_reference(trials: list[TrialRecord]) -> None:
    for trial, chunk in zip(trials, trial_chunks(trials, "review"), strict=True):
        cites_refs = bool(re.search(r"Refs: \[\d+\]", chunk.text))
        assert cites_refs == bool(trial.refs), trial.id


def test_metadata_filters_find_trials_by_site_class_drug_and_ref(
    trials: list[TrialRecord],
) -> None:
    chunks = trial_chunks(trials, "review")
    for trial, chunk in zip(trials, chunks, strict=True):
        meta = chunk.metadata
        assert meta["trial_id"] == trial.id
        assert all(f",{s}," in meta["site"] for s in trial.site)
        assert all(f",{c}," in meta["drug_class"] for c in trial.drug_classes)
        assert all(f",{d}," in meta["drug"] for a in trial.arms for d in a.drugs_en + a.drugs_zh)
        assert sorted(int(r) for r in str(meta["refs"]).strip(",").split(",") if r) == sorted(
            trial.refs
        )
    lung = {c.metadata["trial_id"] for c in chunks if ",lung," in str(c.metadata["site"])}
    assert lung == {t.id for t in trials if "lung" in t.site}


def test_json_that_cannot_be_decoded_at_all_is_a_malformed_line(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text('{"patients": ' + "9" * 5000 + "}\n" + "[" * 100_000 + "\n")
    with pytest.raises(MalformedRecordError, match=r"trials\.jsonl:1: JSON cannot be read"):
        load_trials(path)


def test_every_english_field_renders_its_chinese_field_faithfully():
    renderings = load_renderings(DATA / "nen-drug-trials-review-2022.en.jsonl", "en")
    no_terms = Glossary([])  # labels and values: numbers, signs and no Chinese left
    failures = []
    for trial in load_trials(TRIALS_PATH):
        pairs = [(arm.label, arm.label_en) for arm in trial.arms]
        pairs += [(e.value, e.value_en) for e in trial.endpoints]
        pairs += [(e.arm, e.arm_en) for e in trial.endpoints if e.arm is not None]
        failures += [(trial.id, zh) for zh, en in pairs if en is None]
        failures += [
            (trial.id, zh, problems)
            for zh, en in pairs
            if en is not None and (problems := rendering_problems(zh, en, no_terms, "en"))
        ]
        assert all(e.arm_en is None for e in trial.endpoints if e.arm is None), trial.id
        sentences = [trial.summary_zh[lo:hi] for lo, hi in sentence_spans(trial.summary_zh)]
        joined = " ".join(renderings[unit_id(s)].text for s in sentences)
        assert trial.summary_en == joined, trial.id
    assert not failures


def test_design_tags_and_lines_use_the_reviews_own_words(trials: list[TrialRecord]) -> None:
    """A record says "randomised" or "first-line" only where its review sentences do."""
    from ingest.trials import DESIGN_TAGS, LINES_OF_THERAPY

    unsupported = [
        (t.id, value)
        for t in trials
        for value, vocabulary in [
            *((v, DESIGN_TAGS) for v in t.design_tags),
            *((v, LINES_OF_THERAPY) for v in t.lines),
        ]
        if not re.search(vocabulary[value][1], t.summary_zh)
    ]
    assert unsupported == []
    assert next(t for t in trials if t.id == "spinet").design_tags == ["randomised", "double-blind"]


def test_unknown_design_tag_is_refused_with_file_and_line(tmp_path: Path) -> None:
    line = json.loads(TRIALS_PATH.read_text(encoding="utf-8").splitlines()[0])
    line["design_tags"] = ["pivotal"]
    path = tmp_path / "trials.jsonl"
    path.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(MalformedRecordError, match="unknown design tag 'pivotal'"):
        load_trials(path)
