"""Rendering chunks ("twins"): a parent chunk's quotable units in the other language.

A twin has the parent's document, kind, section, refs and trials, ``language`` the target, and
``metadata["rendering_of"]`` the parent's ID. Its ``sentence_offsets`` align one-to-one with
the parent's: the i-th span is the rendering of the parent's i-th quotable sentence, an empty
span where that sentence has none. Passages: the renderings joined. Trial records: the English
card (name, design, patients, site, grade, arms, results) and ``Review text:`` with the
summary's renderings. Reference entries: the entry's rendering. Its ID is content-based, so a
rendering filled in later is a new chunk the pipeline writes (and the old twin is deleted).
"""

from __future__ import annotations

from dataclasses import replace

from ingest.renderings import Language
from ingest.sources import reference_entry, stored_record_id
from nenqa.types import Chunk, TrialRecord

REVIEW_TEXT = {"en": "Review text:", "zh": "综述原文:"}


def quotable_units(chunk: Chunk) -> list[str]:
    """The units of a parent chunk that get a rendering, in order (a reference: its entry)."""
    if chunk.kind == "reference":
        return [reference_entry(chunk)]
    return [chunk.text[lo:hi] for lo, hi in chunk.sentence_offsets or ()]


def build_twin(
    parent: Chunk,
    renderings: list[str | None],
    language: Language,
    trial: TrialRecord | None = None,
) -> Chunk | None:
    """The twin of ``parent`` from its units' renderings (``None`` where a unit has none), or
    ``None`` when no unit has a rendering."""
    if not any(renderings):
        return None
    if parent.kind == "reference":
        number = f"[{parent.refs[0]}] " if parent.refs else ""
        text, offsets = f"{number}{renderings[0]}", ()
    else:
        head = ""
        if parent.kind == "trial":
            card = english_card(trial) if trial is not None and language == "en" else ""
            head = f"{card}\n{REVIEW_TEXT[language]} " if card else f"{REVIEW_TEXT[language]} "
        text, offsets = _joined(head, renderings, " " if language == "en" else "")
    twin = Chunk(
        chunk_id=parent.chunk_id,
        doc_id=parent.doc_id,
        kind=parent.kind,
        text=text,
        section=parent.section,
        refs=parent.refs,
        trials=parent.trials,
        spans=parent.spans,
        metadata={**parent.metadata, "rendering_of": parent.chunk_id, "language": language},
        sentence_offsets=offsets,
        language=language,
    )
    return replace(twin, chunk_id=stored_record_id(twin))


def english_card(trial: TrialRecord) -> str:
    """A trial record's labelled lines in English only (each field's ``_en`` form)."""
    title = trial.name + (f" (aliases: {'; '.join(trial.aliases)})" if trial.aliases else "")
    lines = [f"Trial: {title}"]
    if trial.nct:
        lines.append(f"NCT: {trial.nct}")
    facts = [f"Phase: {trial.phase}" if trial.phase else "", f"Design: {trial.design}"]
    if trial.patients is not None:
        facts.append(f"Patients: {trial.patients}")
    lines.append(" | ".join(f for f in facts if f))
    if trial.site or trial.grade:
        lines.append(
            f"Site: {', '.join(trial.site) or '-'} | Grade: {', '.join(trial.grade) or '-'}"
        )
    if trial.drug_classes:
        lines.append(f"Drug class: {', '.join(trial.drug_classes)}")
    arms = [
        f"{arm.label_en}: {' + '.join(arm.drugs_en)}" if arm.drugs_en else arm.label_en
        for arm in trial.arms
        if arm.label_en
    ]
    if arms:
        lines.append(f"Arms: {'; '.join(arms)}")
    results = [
        f"{e.name} {e.value_en}" + (f" ({e.arm_en})" if e.arm_en else "")
        for e in trial.endpoints
        if e.value_en
    ]
    if results:
        lines.append(f"Results: {'; '.join(results)}")
    refs = ", ".join(f"[{r}]" for r in trial.refs) or "no reference given in the review"
    lines.append(f"Refs: {refs}")
    return "\n".join(lines)


def _joined(
    head: str, renderings: list[str | None], separator: str
) -> tuple[str, tuple[tuple[int, int], ...]]:
    text, offsets = head, []
    for rendering in renderings:
        if not rendering:
            offsets.append((len(text), len(text)))  # this unit has no rendering yet
            continue
        if text and not text.endswith((" ", "\n")) and separator:
            text += separator
        offsets.append((len(text), len(text) + len(rendering)))
        text += rendering
    return text, tuple(offsets)
