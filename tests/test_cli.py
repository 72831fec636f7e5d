"""The ``nenqa`` command line as a user runs it: ingest summary, batch search, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from nenqa.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

NENQA = [sys.executable, "-m", "cli.main"]


def run_nenqa(args, settings, *, stdin: str | None = None, extra_env=None):
    env = {
        **os.environ,
        "NENQA_INDEX_DIR": str(settings.index_dir),
        "NENQA_DATA_DIR": str(settings.data_dir),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "400",  # rich wraps at the terminal width; keep messages on one line
        **(extra_env or {}),
    }
    return subprocess.run(
        [*NENQA, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=600,
    )


def test_batch_search_prints_one_json_object_per_question(indexed_settings):
    questions = "what did SPINET show for lanreotide?\n\n仑伐替尼 TALENT ORR\n"
    result = run_nenqa(["search", "--jsonl", "--k", "3"], indexed_settings, stdin=questions)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["question"] for line in lines] == [
        "what did SPINET show for lanreotide?",
        "仑伐替尼 TALENT ORR",
    ]
    for line in lines:
        assert len(line["results"]) == 3
        for hit in line["results"]:
            assert set(hit) == {"chunk_id", "text", "refs", "score", "section", "kind"}
            assert hit["refs"] == sorted(hit["refs"])
            assert hit["kind"] in {"passage", "trial", "reference"}
    assert 7 in lines[0]["results"][0]["refs"]
    assert 17 in {r for hit in lines[1]["results"] for r in hit["refs"]}


def test_single_search_as_json(indexed_settings):
    result = run_nenqa(["search", "REMINET 兰瑞肽维持", "--json", "-k", "2"], indexed_settings)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["question"] == "REMINET 兰瑞肽维持"
    assert {9, 10} <= set(record["results"][0]["refs"])


def test_reingesting_the_unchanged_corpus_writes_nothing(indexed_settings):
    result = run_nenqa(["ingest", "--quiet"], indexed_settings)
    assert result.returncode == 0, result.stderr
    summary = result.stderr
    assert "ingest summary" in summary
    row = [line for line in summary.splitlines() if "│" in line][-1]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    documents, chunks, renderings, references, trials, added, removed, unchanged = map(
        int, cells[:8]
    )
    assert (documents, chunks, renderings, references, added, removed) == (2, 139, 90, 50, 0, 0)
    assert trials >= 35 and unchanged == chunks + renderings
    # Every rendering came from the shipped files: none from the cache or the model.
    assert cells[8:11] == ["101/0/0", "0", "0"]


def test_a_malformed_trials_file_is_refused_with_its_name_and_line(indexed_settings, tmp_path):
    bad = tmp_path / "trials.jsonl"
    good = (PROJECT_ROOT / "data" / "trials.jsonl").read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join([good[0], "{not json", *good[1:]]) + "\n", encoding="utf-8")
    shutil.copyfile(PROJECT_ROOT / "data" / "nen-drug-trials-review-2022.md", tmp_path / "r.md")
    result = run_nenqa(["ingest", str(tmp_path / "r.md"), str(bad)], indexed_settings)
    assert result.returncode == 1
    assert f"{bad}:2:" in result.stderr.replace("\n", "")
    assert "index was not changed" in result.stderr.replace("\n", " ")


def test_searching_an_empty_index_says_to_ingest(tmp_path):
    from nenqa.settings import Settings

    empty = Settings(index_dir=tmp_path / "empty-index")
    result = run_nenqa(["search", "lanreotide"], empty)
    assert result.returncode == 1
    assert "nenqa ingest" in result.stderr
