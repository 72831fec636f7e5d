"""Trial records: read ``data/trials.jsonl`` strictly and turn each record into a trial chunk.

Each line of the file is one ``TrialRecord`` (a study the review discusses) as a JSON object.
``drug_classes`` must come from ``DRUG_CLASSES``, the fixed vocabulary below, so that a filter
on ``drug_class`` finds every study of a class.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from nenqa.errors import EmptyFileError, EncodingError, MalformedRecordError, UnreadableFileError
from nenqa.text import sentence_spans
from nenqa.types import Chunk, TrialRecord

# The label before the review's own sentences in a trial rendering; only what follows it is
# quotable.
TRIAL_REVIEW_TEXT = "综述原文 Review text:"

# The drug-class vocabulary: English name (what records and metadata use) -> Chinese label.
DRUG_CLASSES: dict[str, str] = {
    "SSA": "生长抑素类似物",
    "mTOR inhibitor": "mTOR抑制剂",
    "TKI": "酪氨酸激酶抑制剂",
    "chemotherapy": "化疗",
    "alkylating agent": "烷化剂",
    "platinum": "铂类药物",
    "fluoropyrimidine": "氟尿嘧啶类",
    "topoisomerase inhibitor": "拓扑异构酶抑制剂",
    "taxane": "紫杉类",
    "PD-1 inhibitor": "PD-1抑制剂",
    "PD-L1 inhibitor": "PD-L1抑制剂",
    "CTLA-4 inhibitor": "CTLA-4抑制剂",
    "VEGF antibody": "抗VEGF抗体",
    "ADC": "抗体药物偶联物",
    "T-cell engager": "双抗/三抗",
    "ATR inhibitor": "ATR抑制剂",
    "HIF-2α inhibitor": "缺氧诱导因子2α抑制剂",
    "BRAF inhibitor": "BRAF抑制剂",
    "MEK inhibitor": "MEK抑制剂",
    "embolization": "肝动脉介入栓塞",
}

# What the review says of a study's design: tag -> (Chinese label, the review's words for it).
# A record carries a tag only when its review sentences use those words (tests check it).
DESIGN_TAGS: dict[str, tuple[str, str]] = {
    "randomised": ("随机", r"随机"),
    "double-blind": ("双盲", r"双盲"),
    "placebo-controlled": ("安慰剂对照", r"安慰剂"),
    "prospective": ("前瞻性", r"前瞻性"),
    "retrospective": ("回顾性", r"回顾性"),
    "multicentre": ("多中心", r"多中心"),
    "ongoing": ("正在进行", r"正在进行|进行中|正在入组"),
    "case report": ("个案报道", r"个案报道"),
}

# Line of therapy: line -> (Chinese label, the review's words for it), checked like the tags.
LINES_OF_THERAPY: dict[str, tuple[str, str]] = {
    "first-line": ("一线", r"一线"),
    "second-line": ("二线", r"二线"),
    "maintenance": ("维持治疗", r"维持"),
    "after progression": ("治疗失败或进展后", r"失败|进展|难治|耐药"),
}

# Chinese labels for the English site terms records use; a site not listed renders in English.
SITE_ZH: dict[str, str] = {
    "GEP": "胃肠胰",
    "gastrointestinal": "胃肠",
    "pancreas": "胰腺",
    "non-pancreatic": "非胰腺",
    "midgut": "中肠",
    "duodenum": "十二指肠",
    "rectum": "直肠",
    "lung": "肺",
    "thymus": "胸腺",
    "extrapulmonary": "肺外",
    "unknown primary": "原发不明",
    "liver metastases": "肝转移",
    "SCLC": "小细胞肺癌",
    "solid tumours": "实体瘤",
    "prostate": "前列腺",
    "kidney": "肾",
    "CNS": "中枢",
}


def load_trials(path: Path) -> list[TrialRecord]:
    """Read and validate every trial record in a UTF-8 JSON-lines file; blank lines are skipped.

    Raises ``UnreadableFileError``, ``EncodingError``, ``EmptyFileError`` or
    ``MalformedRecordError`` (bad JSON, a field error, an unknown drug class, a duplicate id),
    each naming the file and the 1-based line.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableFileError(path, 0, f"cannot read trial records: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise EncodingError(
            path, line, f"not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from exc
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise EmptyFileError(path, 0, "no trial records (the file is empty)")

    trials: list[TrialRecord] = []
    first_line_of: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        trial = _parse_trial_line(path, number, line)
        if trial.id in first_line_of:
            raise MalformedRecordError(
                path,
                number,
                f"duplicate trial id {trial.id!r} (first used on line {first_line_of[trial.id]})",
            )
        first_line_of[trial.id] = number
        trials.append(trial)
    return trials


def _parse_trial_line(path: Path, number: int, line: str) -> TrialRecord:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MalformedRecordError(
            path, number, f"invalid JSON: {exc.msg} (column {exc.colno})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting too deep
        raise MalformedRecordError(path, number, f"JSON cannot be read: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedRecordError(
            path, number, f"expected a JSON object, got {type(obj).__name__}"
        )
    try:
        trial = TrialRecord.model_validate(obj, strict=True)
    except ValidationError as exc:
        raise MalformedRecordError(path, number, _describe_validation_error(exc)) from exc
    unknown = [c for c in trial.drug_classes if c not in DRUG_CLASSES]
    if unknown:
        raise MalformedRecordError(
            path,
            number,
            f"unknown drug class {unknown[0]!r} in trial {trial.id!r}; "
            f"use one of: {', '.join(DRUG_CLASSES)}",
        )
    for field, values, vocabulary in (
        ("design tag", trial.design_tags, DESIGN_TAGS),
        ("line of therapy", trial.lines, LINES_OF_THERAPY),
    ):
        if unknown := [v for v in values if v not in vocabulary]:
            raise MalformedRecordError(
                path,
                number,
                f"unknown {field} {unknown[0]!r} in trial {trial.id!r}; "
                f"use one of: {', '.join(vocabulary)}",
            )
    bad_refs = [r for r in trial.refs if r < 1]
    if bad_refs:
        raise MalformedRecordError(
            path, number, f"reference number {bad_refs[0]} in trial {trial.id!r} is not >= 1"
        )
    return trial


def _describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "record"
        parts.append(f"field {field!r}: {error['msg']}")
    return "; ".join(parts)


def trial_chunks(trials: Iterable[TrialRecord], doc_id: str) -> list[Chunk]:
    """One ``"trial"`` chunk per record, its text a bilingual rendering a zh or en query can hit.

    List-valued metadata (site, drug_class, drug, refs) is flattened to strings wrapped in
    commas (``",lung,thymus,"``) so a store can filter with a substring such as ``",lung,"``;
    an empty list gives ``""``. Chunk ids depend only on ``doc_id``, the trial id and the text.
    """
    chunks = []
    for trial in trials:
        text = render_trial(trial)
        digest = hashlib.sha1("\x1f".join((doc_id, trial.id, text)).encode("utf-8")).hexdigest()
        drugs = [d for arm in trial.arms for d in (*arm.drugs_en, *arm.drugs_zh)]
        chunks.append(
            Chunk(
                chunk_id=f"t-{digest[:16]}",
                doc_id=doc_id,
                kind="trial",
                text=text,
                section=trial.section,
                refs=tuple(trial.refs),
                trials=(trial.name,),
                metadata={
                    "trial_id": trial.id,
                    "phase": trial.phase or "",
                    "nct": trial.nct or "",
                    "site": _comma_wrapped(trial.site),
                    "drug_class": _comma_wrapped(trial.drug_classes),
                    "drug": _comma_wrapped(drugs),
                    "refs": _comma_wrapped(str(r) for r in trial.refs),
                },
                sentence_offsets=review_sentence_offsets(text),
            )
        )
    return chunks


def review_text_start(text: str) -> int | None:
    """Where the review's own sentences start in a trial rendering (``None``: it has none)."""
    _, found, rest = text.partition(TRIAL_REVIEW_TEXT)
    if not found:
        return None
    return len(text) - len(rest.lstrip())


def review_sentence_offsets(text: str) -> tuple[tuple[int, int], ...]:
    """Half-open ranges in a trial rendering of the sentences of its review text: the only part
    an answer quotes (the labelled lines are a rendering, not the review's words)."""
    start = review_text_start(text)
    if start is None:
        return ()
    return tuple((start + lo, start + hi) for lo, hi in sentence_spans(text[start:]))


def _comma_wrapped(values: Iterable[str]) -> str:
    unique = list(dict.fromkeys(values))
    return f",{','.join(unique)}," if unique else ""


def render_trial(trial: TrialRecord) -> str:
    """The trial as compact labelled lines, Chinese and English side by side, ending with the
    review's own sentences; records without reference markers say so instead of citing any."""
    title = (
        trial.name
        if not trial.aliases
        else f"{trial.name}（别名 aliases: {'; '.join(trial.aliases)}）"
    )
    facts = [
        f"分期 Phase: {trial.phase}期" if trial.phase else None,
        f"设计 Design: {trial.design}",
    ]
    if trial.patients is not None:
        facts.append(f"例数 Patients: {trial.patients}例")
    lines = [f"试验 Trial: {title}"]
    if trial.nct:
        lines.append(f"注册号 NCT: {trial.nct}")
    lines.append(" | ".join(f for f in facts if f))
    if trial.site or trial.grade:
        sites = ", ".join(_bilingual(s, SITE_ZH.get(s)) for s in trial.site)
        lines.append(f"部位 Site: {sites or '-'} | 分级 Grade: {', '.join(trial.grade) or '-'}")
    if trial.drug_classes:
        classes = ", ".join(_bilingual(c, DRUG_CLASSES[c]) for c in trial.drug_classes)
        lines.append(f"药物类别 Drug class: {classes}")
    if trial.arms:
        arms = "; ".join(
            f"{arm.label}: {_arm_drugs(arm.drugs_zh, arm.drugs_en)}" for arm in trial.arms
        )
        lines.append(f"治疗组 Arms: {arms}")
    if trial.endpoints:
        results = "; ".join(
            f"{e.name} {e.value}" + (f"（{e.arm}）" if e.arm else "") for e in trial.endpoints
        )
        lines.append(f"结果 Results: {results}")
    refs = (
        ", ".join(f"[{r}]" for r in trial.refs)
        or "综述未标注文献 (no reference given in the review)"
    )
    lines.append(f"参考文献 Refs: {refs}")
    lines.append(f"{TRIAL_REVIEW_TEXT} {trial.summary_zh}")
    return "\n".join(lines)


def _bilingual(english: str, chinese: str | None) -> str:
    return f"{english} {chinese}" if chinese and chinese != english else english


def _arm_drugs(drugs_zh: Sequence[str], drugs_en: Sequence[str]) -> str:
    if len(drugs_zh) == len(drugs_en):
        return " + ".join(_bilingual(zh, en) for zh, en in zip(drugs_zh, drugs_en, strict=True))
    return " + ".join([*drugs_zh, *drugs_en])
