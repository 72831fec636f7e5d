"""The bilingual term table: each concept's Chinese forms, English forms and abbreviations.

Ground layer, so ingest (translation checks), the retriever (query expansion), answers and eval
share one reading of ``data/glossary.tsv`` and one way of finding the terms a text names.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nenqa.errors import MalformedRecordError
from nenqa.text import has_cjk

TERM_TYPES = frozenset(
    {"drug", "regimen", "trial", "endpoint", "disease", "site", "biomarker", "class", "other"}
)


def normalize_text(text: str) -> str:
    """NFKC-fold full-width forms and lowercase, so ＡＢＣ１ matches abc1."""
    return unicodedata.normalize("NFKC", text).lower()


@dataclass(frozen=True)
class Term:
    """One concept in both languages: its Chinese forms, English forms and abbreviations."""

    zh: tuple[str, ...]
    en: tuple[str, ...]
    abbr: tuple[str, ...]
    type: str

    @property
    def forms(self) -> tuple[str, ...]:
        return (*self.zh, *self.en, *self.abbr)


def load_glossary_table(path: Path) -> list[Term]:
    """Read ``glossary.tsv`` (columns zh, en, abbr, type; ``|`` separates variants).

    Raises ``MalformedRecordError`` naming the line of a bad header, row or type.
    """
    terms: list[Term] = []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        header = next(rows, None)
        if header != ["zh", "en", "abbr", "type"]:
            raise MalformedRecordError(
                path, 1, "header must be: zh, en, abbr, type (tab-separated)"
            )
        for line, row in enumerate(rows, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != 4:
                raise MalformedRecordError(path, line, f"expected 4 columns, found {len(row)}")
            zh, en, abbr, kind = (cell.strip() for cell in row)
            if kind not in TERM_TYPES:
                raise MalformedRecordError(path, line, f"unknown type {kind!r}")
            terms.append(Term(_split(zh), _split(en), _split(abbr), kind))
    return terms


class Glossary:
    """Finds the terms a text names and expands a query with their other-language forms."""

    def __init__(self, terms: Iterable[Term]) -> None:
        self.terms = list(terms)
        # (literal, pattern, ignores case, term index): ``literal`` occurs in every text the
        # pattern matches (lowercased when it ignores case), so a substring test skips most.
        self._patterns: list[tuple[str, re.Pattern[str], bool, int]] = []
        for index, term in enumerate(self.terms):
            for form in term.forms:
                if pattern := _form_pattern(form, is_abbr=form in term.abbr):
                    folds = bool(pattern.flags & re.IGNORECASE)
                    literal = normalize_text(form) if folds else form
                    self._patterns.append((literal, pattern, folds, index))

    def __len__(self) -> int:
        return len(self.terms)

    def matches(self, query: str) -> list[Term]:
        """Terms any of whose forms occurs in the query, in table order.

        Longest match wins: "CLARINET FORTE" is one trial, not also "CLARINET".
        """
        hit = {index for _, _, index in self._spans(query)}
        return [self.terms[i] for i in sorted(hit)]

    def spans(self, query: str) -> list[tuple[int, int, Term]]:
        """Where ``matches`` finds each term: ``(start, end, term)`` in the query's NFKC form
        (``unicodedata.normalize("NFKC", query)``), in text order."""
        return [(start, end, self.terms[i]) for start, end, i in sorted(self._spans(query))]

    def _spans(self, query: str) -> list[tuple[int, int, int]]:
        folded = normalize_text(query)
        nfkc = unicodedata.normalize("NFKC", query)
        found: list[tuple[int, int, int]] = []
        for literal, pattern, folds, index in self._patterns:
            subject = folded if folds else nfkc
            if literal in subject:
                found.extend((m.start(), m.end(), index) for m in pattern.finditer(subject))
        taken: list[tuple[int, int]] = []
        kept: list[tuple[int, int, int]] = []
        for start, end, index in sorted(found, key=lambda f: (f[0] - f[1], f[0])):
            overlaps = any(start < t_end and t_start < end for t_start, t_end in taken)
            # Two terms sharing one form at one place are both kept.
            if overlaps and (start, end) not in taken:
                continue
            taken.append((start, end))
            kept.append((start, end, index))
        return kept

    def expand(self, query: str) -> list[str]:
        """Forms of the matched terms that the query does not already contain."""
        folded = normalize_text(query)
        extra: dict[str, None] = {}
        for term in self.matches(query):
            for form in term.forms:
                if normalize_text(form) not in folded:
                    extra[form] = None
        return list(extra)


def _split(cell: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in cell.split("|") if part.strip())


def _form_pattern(form: str, *, is_abbr: bool) -> re.Pattern[str] | None:
    if has_cjk(form):
        return (
            re.compile(re.escape(normalize_text(form)), re.IGNORECASE) if len(form) >= 2 else None
        )
    if len(form) < 2:
        return None
    body = re.escape(form) if is_abbr and len(form) <= 4 else re.escape(normalize_text(form))
    pattern = rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"
    # Short abbreviations match case-sensitively: "EC" is a regimen, "ec" is not.
    return re.compile(pattern) if is_abbr and len(form) <= 4 else re.compile(pattern, re.IGNORECASE)
