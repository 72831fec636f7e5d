"""The domain types every layer shares: documents, references, chunks, trials, evidence.

Plain dataclasses inside the pipeline; pydantic models where data crosses a file boundary
(``TrialRecord`` is read from ``data/trials.jsonl``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ChunkKind = Literal["passage", "trial", "reference"]


@dataclass(frozen=True)
class Span:
    """A half-open character range ``[start, end)`` in the original source text."""

    start: int
    end: int


@dataclass(frozen=True)
class Sentence:
    """One sentence of the repaired text, its citation numbers and where it came from.

    ``text`` is the repaired text (page-break artefacts removed, citation markers kept);
    ``spans`` are the pieces of the original source that it was made from, in order.
    """

    text: str
    refs: tuple[int, ...]
    spans: tuple[Span, ...]

    @property
    def start(self) -> int:
        return self.spans[0].start

    @property
    def end(self) -> int:
        return self.spans[-1].end


@dataclass(frozen=True)
class Paragraph:
    """A paragraph inside one section; sentences keep their order."""

    section: str
    sentences: tuple[Sentence, ...]
    language: Literal["zh", "en"] = "zh"


@dataclass(frozen=True)
class Section:
    """A numbered section (``"1"``) or a named part (``"abstract"``) with its title."""

    number: str
    title: str
    paragraphs: tuple[Paragraph, ...]

    @property
    def path(self) -> str:
        return f"{self.number} {self.title}".strip() if self.number else self.title


@dataclass(frozen=True)
class Reference:
    """One entry of a document's numbered reference list.

    ``alternate`` holds a second form of the same entry (e.g. the English form of a Chinese
    entry); ``text`` is the entry as printed, repaired of extraction artefacts.
    """

    number: int
    text: str
    authors: tuple[str, ...]
    title: str
    journal: str
    year: int | None
    volume_pages: str
    span: Span
    alternate: str | None = None


@dataclass(frozen=True)
class FrontMatter:
    title_zh: str
    title_en: str
    authors_zh: tuple[str, ...]
    authors_en: tuple[str, ...]
    journal: str
    year: int | None
    doi: str


@dataclass(frozen=True)
class Document:
    """A parsed source document: its structure, its references and where it came from."""

    doc_id: str
    path: str
    sha256: str
    front: FrontMatter
    sections: tuple[Section, ...]
    references: tuple[Reference, ...]
    source_text: str = field(repr=False)

    def reference(self, number: int) -> Reference | None:
        return next((r for r in self.references if r.number == number), None)


@dataclass(frozen=True)
class Chunk:
    """The unit that is embedded, indexed and retrieved.

    ``chunk_id`` is stable: derived from the document, kind, position and content, so
    re-ingesting an unchanged corpus produces the same IDs. ``sentence_offsets`` are the
    half-open ranges in ``text`` of the sentences an answer may quote, as ingest split them (a
    trial record: its ``综述原文 Review text:`` part; a reference entry: none); ``None`` where
    ingest did not record them (a chunk built elsewhere, or read from an older index).
    """

    chunk_id: str
    doc_id: str
    kind: ChunkKind
    text: str
    section: str
    refs: tuple[int, ...] = ()
    trials: tuple[str, ...] = ()
    spans: tuple[Span, ...] = ()
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)
    sentence_offsets: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Evidence:
    """A retrieved chunk with its fused relevance score (higher is better)."""

    chunk: Chunk
    score: float

    def as_json(self) -> dict:
        return {
            "chunk_id": self.chunk.chunk_id,
            "text": self.chunk.text,
            "refs": list(self.chunk.refs),
            "score": round(float(self.score), 6),
            "section": self.chunk.section,
            "kind": self.chunk.kind,
        }


class TrialArm(BaseModel):
    """One treatment arm; drug names in both languages as the review and INN give them."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="arm label, e.g. 'lanreotide' or '安慰剂'")
    drugs_zh: list[str] = Field(default_factory=list)
    drugs_en: list[str] = Field(default_factory=list)


class TrialEndpoint(BaseModel):
    """A reported result, its value exactly as written in the review."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="endpoint, e.g. 'mPFS', 'ORR', 'TTF'")
    value: str = Field(description="the value exactly as the review states it, e.g. '13.3个月'")
    arm: str | None = Field(default=None, description="arm or subgroup the value belongs to")


class TrialRecord(BaseModel):
    """One study the review discusses, validated when read from ``data/trials.jsonl``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="stable slug, e.g. 'spinet'")
    name: str = Field(min_length=1, description="trial name or a short description if unnamed")
    aliases: list[str] = Field(default_factory=list)
    nct: str | None = Field(default=None, pattern=r"^NCT\d{8}$")
    phase: str | None = Field(default=None, description="'I', 'IB', 'II', 'II/III', 'III' ...")
    design: str = Field(description="e.g. 'randomized double-blind placebo-controlled'")
    patients: int | None = Field(default=None, ge=1)
    site: list[str] = Field(default_factory=list, description="tumour sites, English")
    grade: list[str] = Field(default_factory=list, description="e.g. G1, G2, G3, NEC")
    arms: list[TrialArm] = Field(default_factory=list)
    drug_classes: list[str] = Field(default_factory=list, description="e.g. SSA, TKI, mTOR, ICI")
    endpoints: list[TrialEndpoint] = Field(default_factory=list)
    refs: list[int] = Field(default_factory=list, description="review reference numbers")
    section: str = Field(description="section of the review that discusses it, e.g. '1 生物治疗'")
    summary_zh: str = Field(description="the review's own sentence(s) about the study")
