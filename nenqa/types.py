"""The domain types every layer shares: documents, references, chunks, trials, evidence,
and a conversation's questions, retrieval results and cited answers.

Plain dataclasses inside the pipeline; pydantic models where data crosses a file boundary
(``TrialRecord`` is read from ``data/trials.jsonl``). A ``Retrieval`` and an ``Answer`` are
passed along as they are, never converted to another library's types and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
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

    ``language`` is the language of ``text``. A rendering chunk (a "twin") holds another
    language's rendering of a parent chunk: ``metadata["rendering_of"]`` is the parent's
    ``chunk_id`` and its ``sentence_offsets`` align one-to-one with the parent's (an empty span
    where a sentence has no rendering). Search folds twins into their parents.
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
    language: Literal["zh", "en"] = "zh"

    @property
    def rendering_of(self) -> str | None:
        """The parent's ``chunk_id`` when this chunk is a rendering of it, else ``None``."""
        parent = self.metadata.get("rendering_of")
        return str(parent) if parent else None


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
    label_en: str | None = Field(default=None, description="the label in English, e.g. 'placebo'")
    drugs_zh: list[str] = Field(default_factory=list)
    drugs_en: list[str] = Field(default_factory=list)


class TrialEndpoint(BaseModel):
    """A reported result, its value exactly as written in the review."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="endpoint, e.g. 'mPFS', 'ORR', 'TTF'")
    value: str = Field(description="the value exactly as the review states it, e.g. '13.3个月'")
    arm: str | None = Field(default=None, description="arm or subgroup the value belongs to")
    value_en: str | None = Field(default=None, description="the value in English: '13.3 months'")
    arm_en: str | None = Field(default=None, description="the arm or subgroup in English")


class TrialRecord(BaseModel):
    """One study the review discusses, validated when read from ``data/trials.jsonl``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="stable slug, e.g. 'spinet'")
    name: str = Field(min_length=1, description="trial name or a short description if unnamed")
    name_zh: str | None = Field(
        default=None,
        min_length=1,
        description="the Chinese display name of a trial with a descriptive name, in the "
        "review's words ('rovalpituzumab tesirine I/II期临床试验'); none for an acronym",
    )
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
    summary_en: str | None = Field(
        default=None, description="the English renderings of the summary's sentences, joined"
    )
    design_tags: list[str] = Field(
        default_factory=list,
        description="what the review says of the design: 'randomised', 'retrospective' ... "
        "(the vocabulary ``ingest.trials.DESIGN_TAGS``)",
    )
    lines: list[str] = Field(
        default_factory=list,
        description="line of therapy the review names: 'first-line', 'maintenance' ... "
        "(the vocabulary ``ingest.trials.LINES_OF_THERAPY``)",
    )


@dataclass(frozen=True)
class TableRow:
    """One trial in an evidence table: its cells in column order and what it cites.

    ``refs`` are the review's reference numbers of the trial; a trial the review names without
    a marker has none and is cited by its ``section`` (``[§section]``).
    """

    trial_id: str
    cells: tuple[str, ...]
    refs: tuple[int, ...]
    section: str


@dataclass(frozen=True)
class EvidenceTable:
    """The trials that match a question about a set of trials, strongest evidence first.

    ``summary`` is the one sentence shown above the table; ``filters`` says what the question
    asked for (e.g. ``("PD-1 inhibitor", "NEC")``); ``language`` is the cells' language.
    """

    summary: str
    columns: tuple[str, ...]
    rows: tuple[TableRow, ...]
    filters: tuple[str, ...] = ()
    language: str = "zh"


# --- a conversation: questions, retrieval results, answers ------------------------------------

AnswerModeName = Literal["extractive", "llm"]


@dataclass(frozen=True)
class Turn:
    """One earlier message of the conversation."""

    role: Literal["user", "assistant", "system"]
    content: str


@dataclass(frozen=True)
class Question:
    """A question in Chinese or English, the conversation before it, and how much to retrieve.

    ``language`` is the answer language the asker chose (a request's ``lang``); ``None`` lets
    ``answer.base.answer_language`` decide from the question and the conversation.
    """

    text: str
    history: tuple[Turn, ...] = ()
    top_k: int | None = None
    language: Literal["zh", "en"] | None = None


@dataclass(frozen=True)
class Retrieval:
    """What one search for a question found, and everything it computed on the way.

    ``query`` is the question with the recent user turns before it; ``expansions`` are the
    glossary's other-language forms of its terms; ``query_vector`` is the embedding of the
    dense text (query and expansions), ``None`` when the query was empty and nothing was
    embedded. ``evidence`` is best first; ``timings_ms`` has ``embed``, ``dense`` and ``total``.
    """

    question: Question
    query: str
    expansions: tuple[str, ...]
    query_vector: np.ndarray | None = field(default=None, repr=False, compare=False)
    evidence: tuple[Evidence, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Quote:
    """A sentence of the review that an answer rests on, and the chunk it was retrieved in.

    ``text`` is what the answer shows: the sentence as printed or, in an answer in another
    language, its rendering; then ``original`` is the sentence as printed (else ``None``).
    """

    chunk_id: str
    text: str
    section: str
    original: str | None = None


@dataclass(frozen=True)
class Citation:
    """One reference of the review cited by an answer, with the quotes that cite it.

    ``reference`` is the entry in the answer's language where a rendering exists; then
    ``reference_original`` is the entry as printed (else ``None``).
    """

    ref: int
    reference: str
    quotes: tuple[Quote, ...]
    reference_original: str | None = None


@dataclass(frozen=True)
class PassageCitation:
    """Evidence without a reference marker, cited by its section (``[§section]``)."""

    section: str
    quotes: tuple[Quote, ...]


@dataclass(frozen=True)
class Answer:
    """An answer, its citations and the evidence behind it.

    ``segments`` are the pieces of ``text`` in order, each whole sentences with their markers,
    so a stream can send them without splitting a citation. ``unsupported`` holds sentences a
    model wrote that failed the citation checks and were removed from ``text``; ``draft`` is the
    model's raw output before the checks (empty when no model wrote the answer).
    ``untranslated`` counts the quoted sentences shown in the original language because they
    have no rendering in the answer's language.
    """

    text: str
    abstained: bool
    mode: AnswerModeName
    language: str
    segments: tuple[str, ...] = ()
    citations: tuple[Citation, ...] = ()
    passages: tuple[PassageCitation, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    unsupported: tuple[str, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    draft: str = ""
    untranslated: int = 0
    # Set when the llm mode was asked for, the endpoint failed and the extractive mode answered.
    fallback: str | None = None
    # The llm mode's verified extractive answer, sent before the model writes (evidence first).
    quoted: Answer | None = None
    # The evidence table of a question about a set of trials (also in ``text`` as Markdown).
    table: EvidenceTable | None = None
    # An abstention because the review does not cover what is asked (an unknown name, a term
    # or disease the evidence never mentions, the scope probe), not because the evidence scored
    # low: an evidence table must not answer it either.
    uncovered: bool = False


@dataclass(frozen=True)
class AnswerPiece:
    """A streamed piece: a text segment, the llm mode's quoted answer sent first (``quoted``),
    or (last) the complete ``Answer``."""

    text: str = ""
    answer: Answer | None = None
    quoted: Answer | None = None
