"""Evidence tables: the trials a question asks about, one row each, strongest evidence first.

``answer.trial_query`` recognises the question and says what the set is; this module ranks the
matching records, writes the level of evidence of each ("phase III, randomised, double-blind,
n=77", only what the review says) and renders the table as data and as Markdown, in the
question's language. Every matching record is a row (no top-k cut).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from answer.base import passage_marker, reference_markers
from answer.trial_query import TrialQuery, phase_parts
from ingest.trials import DESIGN_TAGS, LINES_OF_THERAPY, SITE_ZH
from nenqa.types import EvidenceTable, TableRow, TrialRecord


def display_name(record: TrialRecord, language: str) -> str:
    """The trial's name as an answer in ``language`` shows it: a descriptive name in Chinese
    answers is the record's Chinese one (``name_zh``, the review's words); acronyms stay."""
    return record.name_zh if language == "zh" and record.name_zh else record.name


# --- level of evidence and ranking ------------------------------------------------------------

_NOT_STATED = {"en": "phase not stated", "zh": "未注明分期"}


def evidence_level(record: TrialRecord, language: str) -> str:
    """Design, phase and size from the record: "phase III, randomised, double-blind, n=77".

    Only what the review says: a phase it does not state is said to be not stated, a size it
    does not give is left out.
    """
    parts = []
    if record.phase:
        parts.append(f"phase {record.phase}" if language == "en" else f"{record.phase}期")
    elif not {"retrospective", "case report"} & set(record.design_tags):
        parts.append(_NOT_STATED[language])
    parts += [tag if language == "en" else DESIGN_TAGS[tag][0] for tag in record.design_tags]
    if record.patients is not None:
        parts.append(f"n={record.patients}")
    return (", " if language == "en" else "，").join(parts)


def evidence_rank(record: TrialRecord) -> tuple[int, int, int]:
    """Sort key, strongest evidence first: results before none, then design and phase, then
    randomised before not, then larger before smaller."""
    tags = set(record.design_tags)
    phases = phase_parts(record.phase)
    if "case report" in tags:
        design = 7
    elif "retrospective" in tags:
        design = 6
    elif "III" in phases:
        design = 0 if "II" not in phases else 1
    elif "II" in phases:
        design = 2 if "I" not in phases else 3
    elif "I" in phases:
        design = 4
    else:
        design = 5
    return (
        0 if record.endpoints else 1,
        design * 2 + (0 if "randomised" in tags else 1),
        -(record.patients or 0),
    )


# --- the table --------------------------------------------------------------------------------

COLUMNS = {
    "en": ("Trial", "Design and phase", "Patients", "Population", "Arms", "Key results", "Cite"),
    "zh": ("试验", "设计与分期", "例数", "人群", "治疗组", "主要结果", "文献"),
}
_GRADE_ZH = {
    "typical carcinoid": "典型类癌",
    "atypical carcinoid": "非典型类癌",
    "carcinoid": "类癌",
    "high-grade": "高级别",
}
_SUMMARY = {
    "en": "{count} in the review match ({filters}), strongest evidence first:",
    "zh": "综述中符合条件（{filters}）的试验共{count}项，按证据强度排列：",
}
_COUNT_EN = ("no trials", "1 trial")


def build_table(
    query: TrialQuery, records: Sequence[TrialRecord], language: str
) -> EvidenceTable | None:
    """Every record the query matches as a row, strongest evidence first (``None``: none)."""
    matching = sorted((r for r in records if query.matches(r)), key=evidence_rank)
    if not matching:
        return None
    filters = (
        tuple(display_name(r, language) for r in matching)
        if query.named
        else query.labels(language)
    )
    count = len(matching)
    shown = _COUNT_EN[count] if count < 2 else f"{count} trials"
    summary = _SUMMARY[language].format(
        count=shown if language == "en" else count,
        filters=("; " if language == "en" else "；").join(filters),
    )
    return EvidenceTable(
        summary=summary,
        columns=COLUMNS[language],
        rows=tuple(table_row(r, language) for r in matching),
        filters=filters,
        language=language,
    )


def table_row(record: TrialRecord, language: str) -> TableRow:
    """One trial's cells in ``COLUMNS`` order, in the answer's language."""
    en = language == "en"
    sites = [s if en else SITE_ZH.get(s, s) for s in record.site]
    grades = [g if en else _GRADE_ZH.get(g, g) for g in record.grade]
    lines = [line if en else LINES_OF_THERAPY[line][0] for line in record.lines]
    grades = [g for g in grades if g not in sites]  # SCLC is a site and a histology
    population = "; ".join(", ".join(part) for part in (sites, grades, lines) if part)
    arms = " vs ".join((a.label_en or a.label) if en else a.label for a in record.arms)
    results = "; ".join(
        _endpoint(e.name, (e.value_en or e.value) if en else e.value, e.arm_en if en else e.arm)
        for e in record.endpoints
    )
    not_reported = "not reported" if en else "未报告"
    cells = (
        display_name(record, language),
        evidence_level(record, language)
        .replace(f", n={record.patients}", "")
        .replace(f"，n={record.patients}", ""),
        str(record.patients) if record.patients is not None else not_reported,
        population or "-",
        arms or "-",
        results or ("no results yet" if en else "尚无结果"),
        citation_marker(record),
    )
    return TableRow(
        trial_id=record.id, cells=cells, refs=tuple(record.refs), section=record.section
    )


def _endpoint(name: str, value: str, arm: str | None) -> str:
    return f"{name} {value}" + (f" ({arm})" if arm else "")


def citation_marker(record: TrialRecord) -> str:
    """``[7]``, or the section's ``[§3 化疗]`` for a trial the review names without a marker."""
    return reference_markers(record.refs) if record.refs else passage_marker(record.section)


# The line under a Markdown table's header: "| --- | --- |".
TABLE_RULE = re.compile(r"^\s*\|(?:\s*:?-{3,}:?\s*\|)+\s*$")


def table_markdown(table: EvidenceTable) -> str:
    """The summary line, then the table as Markdown (``|`` inside a cell escaped)."""
    lines = [
        table.summary,
        "",
        _markdown_row(table.columns),
        _markdown_row(["---"] * len(table.columns)),
    ]
    lines += [_markdown_row(row.cells) for row in table.rows]
    return "\n".join(lines)


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
