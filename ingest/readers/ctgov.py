"""ClinicalTrials.gov API v2 study JSON into ``TrialRecord``s linked to the review's trials.

A file holds one study object (``GET /api/v2/studies/{nctId}``) or a page of them
(``GET /api/v2/studies``: ``{"studies": [...], "nextPageToken": ...}``). Fields read, under
``protocolSection``:

- ``identificationModule``: ``nctId`` (required), ``briefTitle`` (required), ``acronym``,
  ``officialTitle``, ``orgStudyIdInfo.id``, ``secondaryIdInfos[].id``;
- ``statusModule.overallStatus``; ``sponsorCollaboratorsModule.leadSponsor.name``;
- ``descriptionModule.briefSummary``; ``conditionsModule.conditions`` / ``keywords``;
- ``designModule``: ``studyType``, ``phases`` (``PHASE2`` ...), ``designInfo.allocation`` /
  ``interventionModel`` / ``maskingInfo.masking``, ``enrollmentInfo.count`` / ``type``;
- ``armsInterventionsModule``: ``armGroups[].label`` / ``interventionNames``, and
  ``interventions[].name`` when there are no arm groups;
- ``outcomesModule``: ``primaryOutcomes`` / ``secondaryOutcomes`` ``[].measure``, ``timeFrame``.

Everything else is ignored; a field that is present with the wrong JSON type is refused with
the line it is on. The mapping onto ``TrialRecord``: ``id`` is the NCT number in lower case,
``name`` the acronym (else the brief title), ``section`` is ``"ClinicalTrials.gov"``,
``summary_zh`` holds the registry's (English) brief summary, ``refs`` and ``endpoints`` stay
empty: a registry record has no review reference numbers, and its outcome measures are planned
endpoints without values, so they go into the chunk text instead.

Linking: a study is the review's trial with the same NCT number; failing that, the one whose
name or an alias equals the study's acronym or one of its study IDs (case, spaces and hyphens
ignored), when exactly one review trial matches. A linked record borrows the review trial's
name as an alias, its drug classes and its Chinese drug names, and its chunk names the review
trial, so a search hit on the registry record lifts the review's passages about that trial.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ingest.trials import DRUG_CLASSES, SITE_ZH, review_sentence_offsets
from nenqa.errors import EmptyFileError, MalformedRecordError
from nenqa.types import Chunk, TrialArm, TrialRecord

REGISTRY_SECTION = "ClinicalTrials.gov"
PHASES = {"EARLY_PHASE1": "early I", "PHASE1": "I", "PHASE2": "II", "PHASE3": "III", "PHASE4": "IV"}
MASKING = {
    "NONE": "open-label",
    "SINGLE": "single-blind",
    "DOUBLE": "double-blind",
    "TRIPLE": "triple-blind",
    "QUADRUPLE": "quadruple-blind",
}
_NCT = re.compile(r"^NCT\d{8}$")
_INTERVENTION_TYPE = re.compile(r"^[A-Za-z][A-Za-z_ ]*:\s*")
_MAX_SUMMARY_CHARS = 600
# Tumour sites (the trial records' English vocabulary) recognised in conditions and titles, in
# order: a matched phrase is blanked so "extrapulmonary" is not also "lung".
_SITE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (site, re.compile(pattern, re.IGNORECASE))
    for site, pattern in (
        ("GEP", r"gastro-?entero-?pancreatic|\bGEP\b"),
        ("extrapulmonary", r"extra-?pulmonary"),
        ("SCLC", r"small[- ]cell lung|\bSCLC\b"),
        ("lung", r"\blung|pulmonary|bronch"),
        ("pancreas", r"pancrea"),
        ("gastrointestinal", r"gastro-?intestinal|\bGI\b"),
        ("midgut", r"mid-?gut|small intestin|ileum|ileal|jejun"),
        ("duodenum", r"duoden"),
        ("rectum", r"\brect(?:um|al)\b"),
        ("thymus", r"thym"),
        ("unknown primary", r"unknown primary|\bCUP\b"),
        ("liver metastases", r"(?:liver|hepatic) metasta"),
        ("prostate", r"prostat"),
        ("kidney", r"kidney|\brenal\b"),
        ("CNS", r"\bCNS\b|central nervous|brain"),
    )
)
_GRADE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (grade, re.compile(pattern, re.IGNORECASE))
    for grade, pattern in (
        ("NEC", r"neuroendocrine carcinoma|\bNECs?\b|poorly[- ]differentiated"),
        ("NET", r"\bNETs?\b|carcinoid|well[- ]differentiated"),
        ("G1", r"\bG1\b|grade 1\b"),
        ("G2", r"\bG2\b|grade 2\b"),
        ("G3", r"\bG3\b|grade 3\b"),
    )
)
_NEUROENDOCRINE_TUMOUR = re.compile(r"neuroendocrine tumou?r", re.IGNORECASE)
_WHITESPACE = re.compile(r"[ \t\n\r]*")

JsonPath = tuple[str | int, ...]
LinkReason = Literal["nct", "acronym", ""]


@dataclass(frozen=True)
class RegistryStudy:
    """One ClinicalTrials.gov study: its trial record, what the record cannot hold, its link."""

    record: TrialRecord
    status: str
    sponsor: str
    conditions: tuple[str, ...]
    primary_outcomes: tuple[str, ...]
    secondary_outcomes: tuple[str, ...]
    enrollment_type: str
    linked: TrialRecord | None
    link: LinkReason
    line: int


def parse_ctgov(
    path: Path, text: str, review_trials: Sequence[TrialRecord] = ()
) -> list[RegistryStudy]:
    """The studies in a decoded CT.gov API v2 JSON file, linked to ``review_trials``.

    Raises ``MalformedRecordError`` (invalid JSON, not a CT.gov study or page, a required field
    missing, a field of the wrong type, the same NCT number twice) and ``EmptyFileError`` (a page
    without studies), naming ``path`` and the line.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedRecordError(
            path, error.lineno, f"invalid JSON: {error.msg} (column {error.colno})"
        ) from None
    except (ValueError, RecursionError) as error:  # e.g. a 5000-digit number, deep nesting
        raise MalformedRecordError(path, 1, f"JSON cannot be read: {error}") from None
    reader = _JsonReader(path, text)
    if isinstance(data, dict) and "studies" in data:
        studies = data["studies"]
        if not isinstance(studies, list):
            raise reader.error(("studies",), "'studies' must be a list of study objects")
        if not studies:
            raise EmptyFileError(path, reader.line(("studies",)), "the page has no studies")
        prefixes: list[JsonPath] = [("studies", i) for i in range(len(studies))]
    elif isinstance(data, dict) and "protocolSection" in data:
        studies, prefixes = [data], [()]
    else:
        raise MalformedRecordError(
            path,
            1,
            "not a ClinicalTrials.gov API v2 study: expected an object with 'protocolSection' "
            "or a page with a 'studies' list",
        )
    parsed: list[RegistryStudy] = []
    first_line: dict[str, int] = {}
    for study, prefix in zip(studies, prefixes, strict=True):
        item = _parse_study(reader, study, prefix, review_trials)
        nct = item.record.nct or ""
        if nct in first_line:
            raise reader.error(
                (*prefix, "protocolSection", "identificationModule", "nctId"),
                f"study {nct} appears twice (first on line {first_line[nct]})",
            )
        first_line[nct] = item.line
        parsed.append(item)
    return parsed


def link_review_trial(
    nct: str, names: Sequence[str], review_trials: Sequence[TrialRecord]
) -> tuple[TrialRecord | None, LinkReason]:
    """The review trial a registry study is: same NCT number, else one unique name match."""
    by_nct = [t for t in review_trials if t.nct == nct]
    if by_nct:
        return by_nct[0], "nct"
    wanted = {_name_key(n) for n in names if _name_key(n)}
    matches = {
        t.id: t
        for t in review_trials
        if wanted & {_name_key(n) for n in (t.name, *t.aliases) if _name_key(n)}
    }
    if len(matches) == 1:
        return next(iter(matches.values())), "acronym"
    return None, ""


def registry_chunks(studies: Sequence[RegistryStudy], doc_id: str) -> list[Chunk]:
    """One ``trial`` chunk per study; metadata as ``ingest.trials.trial_chunks`` gives, plus
    ``linked_trial`` (the review trial's id, or ``""``), ``link`` and ``registry_status``."""
    chunks = []
    for study in studies:
        record = study.record
        text = render_registry_study(study)
        digest = hashlib.sha1("\x1f".join((doc_id, record.id, text)).encode("utf-8")).hexdigest()
        drugs = [d for arm in record.arms for d in (*arm.drugs_en, *arm.drugs_zh)]
        name = study.linked.name if study.linked else record.name
        chunks.append(
            Chunk(
                chunk_id=f"t-{digest[:16]}",
                doc_id=doc_id,
                kind="trial",
                text=text,
                section=REGISTRY_SECTION,
                refs=(),
                trials=(name,),
                metadata={
                    "trial_id": record.id,
                    "phase": record.phase or "",
                    "nct": record.nct or "",
                    "site": _comma_wrapped(record.site),
                    "drug_class": _comma_wrapped(record.drug_classes),
                    "drug": _comma_wrapped(drugs),
                    "linked_trial": study.linked.id if study.linked else "",
                    "link": study.link,
                    "registry_status": study.status,
                },
                sentence_offsets=review_sentence_offsets(text),
            )
        )
    return chunks


def render_registry_study(study: RegistryStudy) -> str:
    """The study as labelled lines, Chinese and English labels, ending with its summary."""
    record = study.record
    lines = [f"注册记录 Registry record: ClinicalTrials.gov {record.nct} ({study.status or '-'})"]
    title = record.name
    if record.aliases:
        title += f"（别名 aliases: {'; '.join(record.aliases)}）"
    lines.append(f"试验 Trial: {title}")
    if study.linked:
        how = "NCT number" if study.link == "nct" else "acronym"
        lines.append(f"综述中的试验 Trial in the review: {study.linked.name} (linked by {how})")
    facts = [
        f"分期 Phase: {record.phase}期" if record.phase else None,
        f"设计 Design: {record.design}",
    ]
    if record.patients is not None:
        kind = f", {study.enrollment_type.lower()}" if study.enrollment_type else ""
        facts.append(f"例数 Patients: {record.patients}例{kind}")
    lines.append(" | ".join(f for f in facts if f))
    if study.conditions:
        lines.append(f"疾病 Conditions: {'; '.join(study.conditions)}")
    if record.site or record.grade:
        sites = ", ".join(
            f"{s} {SITE_ZH[s]}" if s in SITE_ZH and SITE_ZH[s] != s else s for s in record.site
        )
        lines.append(f"部位 Site: {sites or '-'} | 分级 Grade: {', '.join(record.grade) or '-'}")
    if record.drug_classes:
        classes = ", ".join(f"{c} {DRUG_CLASSES.get(c, '')}".strip() for c in record.drug_classes)
        lines.append(f"药物类别 Drug class: {classes}")
    if record.arms:
        arms = "; ".join(
            f"{arm.label}: {' + '.join([*arm.drugs_en, *arm.drugs_zh]) or '-'}"
            for arm in record.arms
        )
        lines.append(f"治疗组 Arms: {arms}")
    if study.primary_outcomes:
        lines.append(f"主要终点 Primary outcomes: {'; '.join(study.primary_outcomes)}")
    if study.secondary_outcomes:
        lines.append(f"次要终点 Secondary outcomes: {'; '.join(study.secondary_outcomes)}")
    if study.sponsor:
        lines.append(f"申办方 Sponsor: {study.sponsor}")
    summary = record.summary_zh
    if len(summary) > _MAX_SUMMARY_CHARS:
        summary = summary[:_MAX_SUMMARY_CHARS].rstrip() + " …"
    lines.append(f"注册摘要 Registry summary: {summary}")
    return "\n".join(lines)


class _JsonReader:
    """Typed access to decoded JSON, with errors that name the line of the offending field."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def line(self, where: JsonPath) -> int:
        return _json_line(self.text, where)

    def error(self, where: JsonPath, reason: str) -> MalformedRecordError:
        return MalformedRecordError(self.path, self.line(where), reason)

    def get(self, root: Any, prefix: JsonPath, where: JsonPath, kind: type, *, required=False):
        """The value at ``where`` under ``root`` if it has type ``kind``; None when absent."""
        value = root
        for depth, key in enumerate(where):
            if not isinstance(value, dict) or value.get(key) is None:
                if isinstance(value, dict) or value is None:
                    if required:
                        raise self.error(
                            (*prefix, *where[:depth]),
                            f"missing required field {_dotted(where)!r}",
                        )
                    return None
                raise self.error(
                    (*prefix, *where[:depth]),
                    f"field {_dotted(where[:depth])!r} must be an object, "
                    f"got {type(value).__name__}",
                )
            value = value[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.error((*prefix, *where), f"field {_dotted(where)!r} must be an integer")
        if not isinstance(value, kind):
            raise self.error(
                (*prefix, *where),
                f"field {_dotted(where)!r} must be {_json_type(kind)}, "
                f"got {_json_type(type(value))}",
            )
        return value

    def strings(self, root: Any, prefix: JsonPath, where: JsonPath) -> list[str]:
        values = self.get(root, prefix, where, list) or []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(
                    (*prefix, *where, i), f"items of {_dotted(where)!r} must be strings"
                )
        return [v.strip() for v in values if v.strip()]

    def objects(self, root: Any, prefix: JsonPath, where: JsonPath) -> list[tuple[int, dict]]:
        values = self.get(root, prefix, where, list) or []
        for i, value in enumerate(values):
            if not isinstance(value, dict):
                raise self.error(
                    (*prefix, *where, i), f"items of {_dotted(where)!r} must be objects"
                )
        return list(enumerate(values))


def _parse_study(
    reader: _JsonReader, study: Any, prefix: JsonPath, review_trials: Sequence[TrialRecord]
) -> RegistryStudy:
    if not isinstance(study, dict):
        raise reader.error(prefix, f"a study must be an object, got {_json_type(type(study))}")

    def text(*where: str, required: bool = False) -> str:
        value = reader.get(study, prefix, ("protocolSection", *where), str, required=required)
        return (value or "").strip()

    ident = ("identificationModule",)
    nct = text(*ident, "nctId", required=True)
    if not _NCT.match(nct):
        raise reader.error(
            (*prefix, "protocolSection", *ident, "nctId"),
            f"nctId {nct[:40]!r} is not an NCT number like 'NCT03591731'",
        )
    brief_title = text(*ident, "briefTitle", required=True)
    if not brief_title:
        raise reader.error(
            (*prefix, "protocolSection", *ident, "briefTitle"), "briefTitle is empty"
        )
    acronym = text(*ident, "acronym")
    study_ids = [text(*ident, "orgStudyIdInfo", "id")]
    study_ids += [
        (
            reader.get(
                info, (*prefix, "protocolSection", *ident, "secondaryIdInfos", i), ("id",), str
            )
            or ""
        ).strip()
        for i, info in reader.objects(
            study, prefix, ("protocolSection", *ident, "secondaryIdInfos")
        )
    ]
    study_ids = [s for s in study_ids if s]
    linked, link = link_review_trial(nct, [acronym, *study_ids], review_trials)

    design_path = ("protocolSection", "designModule")
    phases = reader.strings(study, prefix, (*design_path, "phases"))
    unknown = [p for p in phases if p not in PHASES and p != "NA"]
    if unknown:
        raise reader.error(
            (*prefix, *design_path, "phases"),
            f"unknown phase {unknown[0][:40]!r}; expected one of {', '.join(PHASES)} or NA",
        )
    phase = "/".join(PHASES[p] for p in phases if p in PHASES) or None
    masking = text("designModule", "designInfo", "maskingInfo", "masking")
    design_parts = [
        _allocation(text("designModule", "designInfo", "allocation")),
        MASKING.get(masking, _words(masking)),
        _words(text("designModule", "designInfo", "interventionModel")),
        _words(text("designModule", "studyType")),
    ]
    design = ", ".join(p for p in design_parts if p) or "not stated in the registry record"
    count = reader.get(study, prefix, (*design_path, "enrollmentInfo", "count"), int)
    conditions = reader.strings(
        study, prefix, ("protocolSection", "conditionsModule", "conditions")
    )
    keywords = reader.strings(study, prefix, ("protocolSection", "conditionsModule", "keywords"))
    official_title = text(*ident, "officialTitle")
    described = " ; ".join([*conditions, *keywords, brief_title, official_title])

    zh_by_en = _chinese_drug_names(linked)
    arms = _arms(reader, study, prefix, zh_by_en)
    aliases = [brief_title, official_title, *study_ids]
    if linked:
        aliases += [linked.name, *linked.aliases]
    name = acronym or brief_title
    aliases = [a for a in dict.fromkeys(aliases) if a and a != name]
    try:
        record = TrialRecord(
            id=nct.lower(),
            name=name,
            aliases=aliases,
            nct=nct,
            phase=phase,
            design=design,
            patients=count if count and count > 0 else None,
            site=_matches(_SITE_PATTERNS, described, blank=True),
            grade=_grades(described),
            arms=arms,
            drug_classes=list(linked.drug_classes) if linked else [],
            endpoints=[],
            refs=[],
            section=REGISTRY_SECTION,
            summary_zh=text("descriptionModule", "briefSummary") or brief_title,
        )
    except ValidationError as error:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise reader.error(prefix, f"study {nct} does not fit the trial record: {detail}") from None
    return RegistryStudy(
        record=record,
        status=text("statusModule", "overallStatus"),
        sponsor=text("sponsorCollaboratorsModule", "leadSponsor", "name"),
        conditions=tuple(conditions),
        primary_outcomes=_outcomes(reader, study, prefix, "primaryOutcomes"),
        secondary_outcomes=_outcomes(reader, study, prefix, "secondaryOutcomes"),
        enrollment_type=text("designModule", "enrollmentInfo", "type"),
        linked=linked,
        link=link,
        line=reader.line(prefix),
    )


def _arms(
    reader: _JsonReader, study: dict, prefix: JsonPath, zh_by_en: dict[str, str]
) -> list[TrialArm]:
    module = ("protocolSection", "armsInterventionsModule")
    arms = []
    for i, group in reader.objects(study, prefix, (*module, "armGroups")):
        where = (*prefix, *module, "armGroups", i)
        label = (reader.get(group, where, ("label",), str) or "").strip()
        names = [
            _INTERVENTION_TYPE.sub("", n)
            for n in reader.strings(group, where, ("interventionNames",))
        ]
        if label or names:
            arms.append(_arm(label or f"arm {i + 1}", names, zh_by_en))
    if not arms:
        names = [
            (reader.get(item, (*prefix, *module, "interventions", i), ("name",), str) or "").strip()
            for i, item in reader.objects(study, prefix, (*module, "interventions"))
        ]
        if any(names):
            arms.append(_arm("interventions", [n for n in names if n], zh_by_en))
    return arms


def _arm(label: str, names: list[str], zh_by_en: dict[str, str]) -> TrialArm:
    names = [n for n in dict.fromkeys(names) if n]
    return TrialArm(
        label=label,
        drugs_en=names,
        drugs_zh=[zh_by_en[n.casefold()] for n in names if n.casefold() in zh_by_en],
    )


def _outcomes(reader: _JsonReader, study: dict, prefix: JsonPath, which: str) -> tuple[str, ...]:
    module = ("protocolSection", "outcomesModule", which)
    outcomes = []
    for i, item in reader.objects(study, prefix, module):
        where = (*prefix, *module, i)
        measure = (reader.get(item, where, ("measure",), str) or "").strip()
        frame = (reader.get(item, where, ("timeFrame",), str) or "").strip()
        if measure:
            outcomes.append(f"{measure} ({frame})" if frame else measure)
    return tuple(outcomes)


def _chinese_drug_names(trial: TrialRecord | None) -> dict[str, str]:
    names: dict[str, str] = {}
    for arm in trial.arms if trial else ():
        if len(arm.drugs_en) == len(arm.drugs_zh):
            for en, zh in zip(arm.drugs_en, arm.drugs_zh, strict=True):
                names.setdefault(en.casefold(), zh)
    return names


def _matches(
    patterns: tuple[tuple[str, re.Pattern[str]], ...], text: str, *, blank: bool = False
) -> list[str]:
    found = []
    for name, pattern in patterns:
        if pattern.search(text):
            found.append(name)
            if blank:
                text = pattern.sub(" ", text)
    return found


def _grades(text: str) -> list[str]:
    grades = _matches(_GRADE_PATTERNS, text)
    # "neuroendocrine tumour" alone names a NET, but registries also write it for carcinomas.
    if "NEC" not in grades and "NET" not in grades and _NEUROENDOCRINE_TUMOUR.search(text):
        grades.insert(0, "NET")
    return grades


def _name_key(name: str) -> str:
    return re.sub(r"[\W_]+", "", name).casefold()


def _allocation(value: str) -> str:
    return "" if value in {"", "NA"} else _words(value)


def _words(value: str) -> str:
    return value.replace("_", " ").lower().strip()


def _comma_wrapped(values: Sequence[str]) -> str:
    unique = list(dict.fromkeys(values))
    return f",{','.join(unique)}," if unique else ""


def _dotted(where: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in where)


def _json_type(kind: type) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        type(None): "null",
    }.get(kind, kind.__name__)


def _json_line(text: str, where: JsonPath) -> int:
    """The 1-based line of the value at ``where`` in valid JSON ``text`` (or of the deepest
    part of ``where`` that exists)."""
    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text, 0).end()
    try:
        for key in where:
            if pos >= len(text):
                break
            if text[pos] == "{" and isinstance(key, str):
                found = _object_member(decoder, text, pos, key)
            elif text[pos] == "[" and isinstance(key, int):
                found = _array_item(decoder, text, pos, key)
            else:
                found = None
            if found is None:
                break
            pos = found
    except ValueError:  # unreachable for text json.loads accepted; the line so far is fine
        pass
    return text.count("\n", 0, pos) + 1


def _object_member(decoder: json.JSONDecoder, text: str, pos: int, key: str) -> int | None:
    i = _WHITESPACE.match(text, pos + 1).end()
    while i < len(text) and text[i] != "}":
        name, i = decoder.raw_decode(text, i)
        i = _WHITESPACE.match(text, i).end() + 1  # the ':'
        i = _WHITESPACE.match(text, i).end()
        if name == key:
            return i
        _, i = decoder.raw_decode(text, i)
        i = _WHITESPACE.match(text, i).end()
        if i < len(text) and text[i] == ",":
            i = _WHITESPACE.match(text, i + 1).end()
    return None


def _array_item(decoder: json.JSONDecoder, text: str, pos: int, index: int) -> int | None:
    i = _WHITESPACE.match(text, pos + 1).end()
    current = 0
    while i < len(text) and text[i] != "]":
        if current == index:
            return i
        _, i = decoder.raw_decode(text, i)
        i = _WHITESPACE.match(text, i).end()
        if i < len(text) and text[i] == ",":
            i = _WHITESPACE.match(text, i + 1).end()
        current += 1
    return None
