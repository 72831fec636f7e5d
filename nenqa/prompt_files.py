"""Prompt files: every text an LLM sees lives in ``prompts/`` with a header saying what it is.

A prompt file starts with a ``---`` block of ``purpose:`` and ``variables:`` lines, then the
template (``{name}`` placeholders, LangChain f-string syntax). The header is never sent.
Ground layer, so ingest (translation) and answers load prompts the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nenqa.resources import bundled_dir

PROMPTS_DIR = bundled_dir("prompts")
_HEADER = re.compile(r"\A---\n(?P<header>.*?)\n---\n", re.DOTALL)
_PLACEHOLDER = re.compile(r"(?<!\{)\{([a-z_]+)\}(?!\})")


class PromptFileError(ValueError):
    """A prompt file is missing, lacks its header, or its placeholders differ from the header."""


@dataclass(frozen=True)
class PromptFile:
    """A prompt template and what its header declares."""

    name: str
    purpose: str
    variables: tuple[str, ...]
    template: str


def load_prompt(name: str, directory: Path = PROMPTS_DIR) -> PromptFile:
    """Read ``directory/name``; raises ``PromptFileError`` naming the file and the problem."""
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PromptFileError(f"{path}: cannot be read ({error.strerror})") from None
    match = _HEADER.match(text)
    if not match:
        raise PromptFileError(f"{path}: must start with a '---' header of purpose and variables")
    fields = dict(line.split(":", 1) for line in match.group("header").splitlines() if ":" in line)
    purpose = fields.get("purpose", "").strip()
    declared = tuple(v.strip() for v in fields.get("variables", "").split(",") if v.strip())
    template = text[match.end() :].strip() + "\n"
    used = tuple(dict.fromkeys(_PLACEHOLDER.findall(template)))
    if not purpose:
        raise PromptFileError(f"{path}: the header has no 'purpose:' line")
    if set(declared) != set(used):
        raise PromptFileError(
            f"{path}: header declares variables {sorted(declared)} but the template uses "
            f"{sorted(used)}"
        )
    return PromptFile(name, purpose, declared, template)
