"""Renderings files: the translations of a document's quotable units, one JSON line per unit.

A renderings file sits beside its source as ``<stem>.<target>.jsonl`` (the shipped review's is
``data/nen-drug-trials-review-2022.en.jsonl``). Each line is
``{"id": unit_id(original), "<source>": original, "<target>": rendering}``, where ``<source>`` is
the other language's code, plus, for a reviewed exception to the translation check,
``"waive": [term, ...]`` and the ``"reason"``. A unit already written in the target language is
its own rendering.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nenqa.errors import EncodingError, MalformedRecordError, UnreadableFileError
from nenqa.text import unit_id

Language = Literal["zh", "en"]


def other_language(language: Language) -> Language:
    return "en" if language == "zh" else "zh"


@dataclass(frozen=True)
class Rendering:
    """One unit in the other language: ``text`` renders ``original`` into ``language``."""

    unit_id: str
    original: str
    text: str
    language: Language
    waive: tuple[str, ...] = ()
    reason: str = ""


def renderings_path(source: Path, language: Language) -> Path:
    """Where the renderings of ``source`` into ``language`` are shipped: ``<stem>.<lang>.jsonl``."""
    return source.with_name(f"{source.stem}.{language}.jsonl")


def is_renderings_file(path: Path) -> bool:
    """Whether ``path`` is named as a renderings file (``<stem>.zh.jsonl``, ``<stem>.en.jsonl``)."""
    return path.name.endswith((".zh.jsonl", ".en.jsonl"))


def load_renderings(path: Path, language: Language) -> dict[str, Rendering]:
    """The renderings in ``path`` by unit ID; raises ``MalformedRecordError`` naming the line.

    Refused: a line that is not a JSON object, a missing or empty field, an unknown field, an
    ``id`` that is not the unit ID of the original, a unit given twice, a waiver without reason.
    """
    source = other_language(language)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise EncodingError(path, 0, f"not UTF-8 ({error.reason})") from error
    except OSError as error:
        raise UnreadableFileError(path, 0, f"cannot read: {error.strerror}") from error
    found: dict[str, Rendering] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise MalformedRecordError(path, number, f"not JSON: {error.msg}") from error
        if not isinstance(record, dict):
            raise MalformedRecordError(path, number, "expected a JSON object")
        unknown = set(record) - {"id", source, language, "waive", "reason"}
        if unknown:
            raise MalformedRecordError(
                path, number, f"unknown field(s): {', '.join(sorted(unknown))}"
            )
        for key in ("id", source, language):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise MalformedRecordError(
                    path, number, f"field {key!r} must be a non-empty string"
                )
        original = record[source]
        if record["id"] != unit_id(original):
            raise MalformedRecordError(
                path,
                number,
                f"id {record['id']} is not the unit ID of its {source} text ({unit_id(original)})",
            )
        waive = record.get("waive", [])
        if not isinstance(waive, list) or not all(isinstance(t, str) and t for t in waive):
            raise MalformedRecordError(path, number, "'waive' must be a list of glossary terms")
        reason = record.get("reason", "")
        if waive and not (isinstance(reason, str) and reason.strip()):
            raise MalformedRecordError(path, number, "a waiver needs its 'reason'")
        if record["id"] in found:
            raise MalformedRecordError(path, number, f"unit {record['id']} is given twice")
        found[record["id"]] = Rendering(
            record["id"], original, record[language], language, tuple(waive), reason
        )
    return found


def shipped_renderings(source: Path, language: Language) -> dict[str, Rendering]:
    """The renderings shipped beside ``source`` into ``language``; none when there is no file."""
    path = renderings_path(source, language)
    return load_renderings(path, language) if path.is_file() else {}


def write_renderings(path: Path, renderings: Iterable[Rendering]) -> None:
    """Write ``renderings`` as a renderings file (the format ``load_renderings`` reads)."""
    lines = []
    for rendering in renderings:
        record: dict[str, object] = {
            "id": rendering.unit_id,
            other_language(rendering.language): rendering.original,
            rendering.language: rendering.text,
        }
        if rendering.waive:
            record |= {"waive": list(rendering.waive), "reason": rendering.reason}
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
