"""Where the bundled files are: the corpus (``data/``) and the prompt files (``prompts/``).

In a source checkout (or an editable install of one) they are the checkout's own ``data/`` and
``prompts/``; an installed wheel carries the same files as ``nenqa/data`` and ``nenqa/prompts``
(links to them in the checkout, shipped as package data), because its project root is just
``site-packages``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
PROJECT_ROOT = _PACKAGE.parent


def is_source_checkout() -> bool:
    """Whether this code runs from a checkout (its ``pyproject.toml`` beside the packages)."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "data").is_dir()


def bundled_dir(name: str) -> Path:
    """The folder of bundled files ``name`` (``data`` or ``prompts``), checkout or wheel."""
    return PROJECT_ROOT / name if is_source_checkout() else _PACKAGE / name


def default_index_dir() -> Path:
    """``.nenqa/index`` in a checkout; ``~/.cache/nenqa/index`` for an installed wheel."""
    if is_source_checkout():
        return PROJECT_ROOT / ".nenqa" / "index"
    return Path.home() / ".cache" / "nenqa" / "index"
