"""Fuzz the ingest parsers: malformed Markdown and plain text, mutated copies of the review,
reference lists, trial-record JSON lines, ClinicalTrials.gov JSON, PDF bytes and raw bytes.

Every input must either parse into a well-formed document or be refused with one of the
documented ``IngestError`` subclasses (a file, a line, a reason); any other exception, or a
parse whose chunks cite numbers their reference list lacks, fails the test.

Runs derandomized (the same examples every run, so CI does not flake) and bounded to well under
a minute. ``NENQA_FUZZ_SCALE=20`` runs twenty times as many examples from a random seed.
"""

from __future__ import annotations

import json
import os
import random
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunking import chunk_document, reference_chunks
from ingest.readers.text import parse_text
from ingest.sources import read_source
from ingest.trials import load_trials
from nenqa.errors import IngestError
from nenqa.settings import PROJECT_ROOT

DATA = PROJECT_ROOT / "data"
FIXTURES = Path(__file__).parent / "fixtures"
REVIEW = (DATA / "nen-drug-trials-review-2022.md").read_text(encoding="utf-8")
REVIEW_LINES = REVIEW.split("\n")
TRIAL_LINES = (DATA / "trials.jsonl").read_text(encoding="utf-8").splitlines()
STUDY = json.loads((FIXTURES / "ctgov-NCT03591731.json").read_text(encoding="utf-8"))
PDF = (FIXTURES / "sample-update.pdf").read_bytes()
REVIEW_TRIALS = load_trials(DATA / "trials.jsonl")
SCALE = int(os.environ.get("NENQA_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def parse_file(name: str, content: str | bytes):
    """``read_source`` on a temporary file; returns the source or the ``IngestError``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        try:
            source = read_source(path, review_trials=REVIEW_TRIALS)
        except IngestError as error:
            assert error.path.endswith(name) and error.line >= 0 and error.reason
            return error
    check_source(source)
    return source


def check_source(source) -> None:
    """What every parsed source must satisfy, whatever its input was."""
    ids = [c.chunk_id for c in source.chunks]
    assert len(ids) == len(set(ids))
    for chunk in source.chunks:
        assert chunk.doc_id == source.doc_id and chunk.text.strip()
        assert chunk.metadata["cites"] == source.cites
    if source.document is not None:
        numbers = {r.number for r in source.document.references}
        text = source.document.source_text
        for chunk in source.chunks:
            assert set(chunk.refs) <= numbers, "a chunk cites a number its list lacks"
            assert all(0 <= s.start < s.end <= len(text) for s in chunk.spans)


# --- Markdown and plain text ---------------------------------------------------------------

numbers = st.one_of(st.integers(0, 12), st.integers(13, 10**12)).map(str)
citation = st.one_of(
    st.builds("[{}]".format, numbers),
    st.builds("^[{}-{}]".format, numbers, numbers),
    st.builds("[{}, {}]".format, numbers, numbers),
    st.builds("[^{}]".format, numbers),
    st.builds("^[{}]".format, st.text("0123456789-,~、 ", max_size=12)),
)
words = st.text(
    alphabet=st.sampled_from(
        list(string.ascii_letters + " .,;:!?()[]^*_#-") + list("神经内分泌肿瘤。，；")
    ),
    max_size=60,
)
sentence = st.builds(lambda a, c, b: f"{a}{c}{b}", words, st.one_of(st.just(""), citation), words)
line = st.one_of(
    sentence,
    st.builds("{} {}".format, st.sampled_from(["#", "##", "###", "####### ", "  #"]), words),
    st.builds("{}. {}".format, numbers, sentence),
    st.builds("- {}".format, sentence),
    st.builds("[{}] {}".format, numbers, words),
    st.builds("[^{}]: {}".format, numbers, words),
    st.sampled_from(
        ["", "", "---", "```", "~~~", "References", "## 参考文献", "[参 考 文 献]", "title: x"]
    ),
    st.builds("    {}".format, words),
    st.text(max_size=40),
)
noise = st.lists(line, max_size=40).map("\n".join)


@st.composite
def reviews(draw) -> str:
    """Documents with a numbered reference list and citations mostly within it, then noise."""
    count = draw(st.integers(1, 8))
    small = st.integers(1, count + 1).map(str)
    cite = st.one_of(
        st.builds("[{}]".format, small),
        st.builds("^[{}-{}]".format, small, small),
        st.builds("[{}, {}]".format, small, small),
        st.builds("[^{}]".format, small),
    )
    body = []
    for _ in range(draw(st.integers(1, 4))):
        body.append(draw(st.sampled_from(["## 1 Methods", "2 Results", "# Title", "### 参考"])))
        for _ in range(draw(st.integers(1, 4))):
            body.append(draw(st.builds("{}{}. {}".format, words, cite, words)))
            body.append(draw(st.sampled_from(["", "", "- item [1].", "continued line"])))
    style = draw(st.sampled_from(["[{}] {}", "{}. {}", "- [{}] {}", "[^{}]: {}"]))
    entries = [style.format(n, draw(words) or "x") for n in range(1, count + 1)]
    if draw(st.booleans()):
        entries = draw(st.permutations(entries))
    tail = draw(st.lists(line, max_size=3))
    heading = draw(
        st.sampled_from(["## References", "References", "[参 考 文 献]", "**参考文献**"])
    )
    return "\n".join([*body, "", heading, "", *entries, *tail])


documents = st.one_of(noise, reviews())


@fuzz(1000)
@given(text=documents, markdown=st.booleans(), crlf=st.booleans())
def test_markdown_and_plain_text_parse_or_are_refused(text, markdown, crlf):
    if crlf:
        text = text.replace("\n", "\r\n")
    try:
        parsed = parse_text(
            text, path=Path("fuzz.md"), sha256="0", doc_id="fuzz", markdown=markdown
        )
    except IngestError as error:
        assert error.path == "fuzz.md" and error.line >= 0
        return
    document = parsed.document
    numbers_listed = {r.number for r in document.references}
    assert sorted(numbers_listed) == list(range(1, len(numbers_listed) + 1))
    for chunk in [*chunk_document(document), *reference_chunks(document)]:
        assert set(chunk.refs) <= numbers_listed
        assert all(0 <= s.start < s.end <= len(text) for s in chunk.spans)


@fuzz(200)
@given(text=documents, suffix=st.sampled_from(["fuzz.md", "fuzz.txt", "fuzz.markdown"]))
def test_text_files_through_the_dispatcher_parse_or_are_refused(text, suffix):
    parse_file(suffix, text)


# --- the review's own layout: mutated copies -----------------------------------------------


def mutate_lines(lines: list[str], rng: random.Random, edits: int) -> list[str]:
    lines = list(lines)
    for _ in range(edits):
        if not lines:
            break
        i = rng.randrange(len(lines))
        operation = rng.randrange(8)
        if operation == 7:  # move a run of lines, e.g. the reference list before the abstract
            run = lines[i : i + rng.randrange(1, 20)]
            del lines[i : i + len(run)]
            at = rng.randrange(len(lines) + 1)
            lines[at:at] = run
        elif operation == 0:
            del lines[i : i + rng.randrange(1, 30)]
        elif operation == 1:
            lines.insert(rng.randrange(len(lines)), lines[i])
        elif operation == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif operation == 3:
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i : i + 1] = [lines[i][:cut], "", lines[i][cut:]]
        elif operation == 4:
            marker = rng.choice(["^[{}]", "^[{}-{}]", "- [{}] ", "[{}]"]).format(
                rng.choice([0, 1, 49, 50, 51, 9999, 10**9]), rng.choice([2, 60, 10**7])
            )
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:cut] + marker + lines[i][cut:]
        elif operation == 5:
            lines[i] = "".join(rng.choice("[]^-*#0123456789 摘要参考文献.。") for _ in range(12))
        else:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    return lines


@fuzz(500)
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 12))
def test_mutated_copies_of_the_review_parse_or_are_refused(seed, edits):
    text = "\n".join(mutate_lines(REVIEW_LINES, random.Random(seed), edits))
    parse_file("review.md", text)


REFERENCES_AT = next(i for i, line in enumerate(REVIEW_LINES) if "参 考 文 献" in line)


@fuzz(300)
@given(
    entries=st.lists(
        st.one_of(
            st.builds("- [{}] {}".format, numbers, words),
            st.builds("[{}] {}".format, numbers, words),
            st.builds("- {}".format, words),
            words,
            st.just(""),
        ),
        max_size=60,
    )
)
def test_review_reference_lists_parse_or_are_refused(entries):
    text = "\n".join([*REVIEW_LINES[: REFERENCES_AT + 1], *entries])
    parse_file("review.md", text)


# --- trial records and ClinicalTrials.gov JSON --------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.sampled_from(["PHASE2", "NCT03591731", "NCT1", "Drug: X", "DOUBLE", "", "NA"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_of(item, (*prefix, index))


def edited(value, path, new):
    """``value`` with the item at ``path`` replaced by ``new`` (deleted when ``new`` is
    ``DELETE``); unchanged when an earlier edit removed the path."""
    if not path:
        return value if new is DELETE else new
    key, rest = path[0], path[1:]
    if isinstance(value, dict) and key in value:
        if not rest and new is DELETE:
            return {k: v for k, v in value.items() if k != key}
        return {k: edited(v, rest, new) if k == key else v for k, v in value.items()}
    if isinstance(value, list) and isinstance(key, int) and key < len(value):
        if not rest and new is DELETE:
            return value[:key] + value[key + 1 :]
        return [edited(v, rest, new) if i == key else v for i, v in enumerate(value)]
    return value


DELETE = object()
STUDY_PATHS = list(paths_of(STUDY))


@fuzz(500)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(STUDY_PATHS), json_values | st.just(DELETE)), max_size=5
    ),
    page=st.booleans(),
)
def test_mutated_ctgov_studies_parse_or_are_refused(edits, page):
    study = STUDY
    for path, value in edits:
        study = edited(study, path, value)
    data = {"studies": [study, STUDY]} if page else study
    result = parse_file("study.json", json.dumps(data, indent=1, allow_nan=True))
    if not isinstance(result, IngestError):
        for record, chunk in zip(result.trials, result.chunks, strict=True):
            assert record.nct and record.nct in chunk.text


@fuzz(300)
@given(value=json_values)
def test_arbitrary_json_is_refused_or_read_as_a_study(value):
    parse_file("study.json", json.dumps(value, allow_nan=True))


@fuzz(300)
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from(TRIAL_LINES),
            json_values.map(lambda v: json.dumps(v, allow_nan=True)),
            st.builds(
                lambda line, key, value: json.dumps({**json.loads(line), key: value}),
                st.sampled_from(TRIAL_LINES),
                st.sampled_from(["id", "name", "nct", "patients", "arms", "refs", "endpoints"]),
                json_values,
            ),
            st.text(max_size=30),
            st.sampled_from(["[" * 5000, "9" * 5000, "{}", ""]),
        ),
        max_size=8,
    )
)
def test_trial_record_lines_parse_or_are_refused(lines):
    parse_file("trials.jsonl", "\n".join(lines))


# --- bytes: encodings, PDFs ----------------------------------------------------------------


@fuzz(300)
@given(
    data=st.binary(max_size=300),
    name=st.sampled_from(["b.md", "b.txt", "b.json", "b.jsonl", "b.pdf"]),
)
def test_arbitrary_bytes_are_refused_or_parsed(data, name):
    parse_file(name, data)


@fuzz(200)
@given(
    flips=st.lists(st.tuples(st.integers(0, len(PDF) - 1), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, len(PDF))),
)
def test_damaged_pdfs_are_refused_or_parsed(flips, cut):
    data = bytearray(PDF)
    for offset, byte in flips:
        data[offset] = byte
    parse_file("damaged.pdf", bytes(data[:cut] if cut is not None else data))
