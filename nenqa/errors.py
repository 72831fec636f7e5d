"""Errors raised while reading source files; each names the file, the line and what is wrong.

Ground layer, so every reader of a file (ingest's sources, the glossary table) raises the same
kinds.

Every message has the form ``"{path}:{line}: {reason}"`` so an editor or a terminal can jump to
it. ``line`` is 1-based; 0 means the problem concerns the file as a whole (missing, empty).
"""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """A source file cannot be ingested; ``path``, ``line`` and ``reason`` say where and why."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


class UnreadableFileError(IngestError):
    """The file is missing, a directory, or cannot be opened for reading."""


class EmptyFileError(IngestError):
    """The file has no content (or only whitespace)."""


class EncodingError(IngestError):
    """The file is not valid UTF-8 (or is in another encoding, e.g. UTF-16 or GB18030)."""


class MalformedRecordError(IngestError):
    """A record inside the file does not have the expected shape (missing part, bad field)."""
