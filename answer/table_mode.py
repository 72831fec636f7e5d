"""Evidence tables and levels of evidence around an answer mode (extractive or llm).

A question about a set of trials (``answer.trial_query``) gets its evidence table first (as
Markdown in the text and as data in ``Answer.table``), then the mode's own answer below it; any
other question gets the mode's answer alone. Either way each sentence that reports on a trial
carries that trial's level of evidence from its record, before the sentence's end:
"…9.8个月（SPINET：III期，随机，双盲，n=77）。". A quoted sentence reports on the records whose
review sentences hold it; any other sentence (a model's) on the trials it names.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

from answer.base import AnswerMode, answer_language, final_answer
from answer.tables import build_table, display_name, evidence_level, table_markdown
from answer.trial_query import recognise_trial_query, trials_named_in
from ingest.trials import review_text_start
from nenqa.glossary import Glossary
from nenqa.text import REVIEW_MARKER
from nenqa.types import (
    Answer,
    AnswerPiece,
    Chunk,
    Citation,
    EvidenceTable,
    PassageCitation,
    Question,
    Quote,
    Reference,
    TrialRecord,
)
from nenqa.types import Evidence as EvidenceItem

# Markers and marks a quote prints differently from the record's sentences.
_PRINTED_MARKER = re.compile(r"\[(?:\d+|§[^\]]*)\]")
_FOLD_AWAY = re.compile(r"[\s$*]|\\geq|\\leq|\\%|%")
# A level-of-evidence note as ``EvidenceLevels.note`` writes it: "(SPINET: phase III, ...)".
LEVEL_NOTE = re.compile(
    r"\s?[（(][^（）()]+?[:：][^（）()]*?(?:phase [IVB/]+|[IVB/]+期|phase not stated|未注明分期|"
    r"retrospective|回顾性|case report|个案报道|n=\d+)[^（）()]*[)）]"
)
# The end of a sentence: its final punctuation, then only markers and spaces.
_SENTENCE_END = re.compile(r"([。.!?！？]?)((?:\s*\[(?:\d+|§[^\]]*)\])*\s*)$")


def _fold(text: str) -> str:
    text = _PRINTED_MARKER.sub("", REVIEW_MARKER.sub("", text))
    return _FOLD_AWAY.sub("", unicodedata.normalize("NFKC", text)).lower()


class EvidenceLevels:
    """The trial records, and the level of evidence of the trials a sentence reports on."""

    def __init__(self, records: Sequence[TrialRecord]) -> None:
        self.records = list(records)
        self._summaries = [
            (record, _fold(record.summary_zh), _fold(record.summary_en or ""))
            for record in self.records
        ]

    def reported_on(self, sentence: str) -> list[TrialRecord]:
        """The records a sentence reports on: whose review sentences hold it (those it names
        when several do), else the trials it names."""
        folded = _fold(sentence)
        if len(folded) < 8:
            return []
        holding = [r for r, zh, en in self._summaries if folded in zh or (en and folded in en)]
        named = set(trials_named_in(sentence, self.records))
        if len(holding) > 1:
            holding = [r for r in holding if r.id in named] or holding
        if len(holding) > 1:
            refs = {int(n) for n in re.findall(r"\[(\d+)\]", sentence)}
            holding = [r for r in holding if refs & set(r.refs)] or []
        if holding:
            return holding
        return [r for r in self.records if r.id in named]

    def note(self, sentence: str, language: str) -> str:
        """The sentence with its trials' levels of evidence before its end (unchanged when it
        reports on no trial)."""
        records = self.reported_on(sentence)
        if not records:
            return sentence
        separator = ": " if language == "en" else "："
        levels = ("; " if language == "en" else "；").join(
            f"{_short_name(r, language)}{separator}{evidence_level(r, language)}" for r in records
        )
        shown = f" ({levels})" if language == "en" else f"（{levels}）"
        match = _SENTENCE_END.search(sentence.rstrip())
        assert match is not None  # the pattern matches the empty end of any text
        body = sentence.rstrip()[: match.start()]
        trailing = sentence[len(sentence.rstrip()) :]
        return f"{body}{shown}{match.group(1)}{match.group(2)}{trailing}"


class EvidenceTableMode:
    """An answer mode with evidence tables and levels of evidence; see the module docstring."""

    def __init__(
        self,
        mode: AnswerMode,
        levels: EvidenceLevels,
        glossary: Glossary,
        trial_chunks: Mapping[str, Chunk],
        references: Mapping[int, Reference],
    ) -> None:
        self.mode = mode
        self.name = mode.name
        self.levels = levels
        self.glossary = glossary
        self.trial_chunks = trial_chunks
        self.references = references

    def answer(self, question: Question) -> Answer:
        """The table (when the question asks for one) and the mode's answer: ``stream`` drained."""
        # The llm mode asks the model for the whole text at once when nothing streams.
        if self.name == "llm":
            return final_answer(self.stream(question, incremental=False))
        return final_answer(self.stream(question))

    def stream(self, question: Question, **options: bool) -> Iterator[AnswerPiece]:
        """The table's Markdown first, then the mode's pieces, each with its levels of evidence.

        With a table the mode's pieces are held until its answer is known, so that an
        abstention below a table is not sent (the table answers the question). The table itself
        waits for the mode's verdict on scope (its answer, or the llm mode's quotes sent before
        the model writes): a question on what the review does not cover ("还有什么口服药？…特罗
        司他") gets the mode's abstention, never a table of trials on its other words.
        """
        language = answer_language(question)
        query = recognise_trial_query(question.text, self.glossary, self.levels.records)
        table = build_table(query, self.levels.records, language) if query else None
        heading = f"{table_markdown(table)}\n\n" if table else ""
        held: list[AnswerPiece] = []
        table_sent = False
        pieces = self.mode.stream(question, **options) if options else self.mode.stream(question)
        for piece in pieces:
            if piece.answer is not None:
                inner = piece.answer
                break
            if piece.text:
                piece = AnswerPiece(text=self.levels.note(piece.text, language))
            elif piece.quoted is not None:  # the llm mode's quotes, sent before the model
                piece = AnswerPiece(quoted=self._noted(piece.quoted, language))
                if table and not table_sent:  # the mode answers: the table, then the model
                    yield AnswerPiece(text=heading)
                    table_sent = True
            if table:
                held.append(piece)
            else:
                yield piece
        else:
            inner = final_answer([])  # raises: every stream ends with its answer
        if table and inner.abstained and inner.uncovered and not table_sent:
            yield from held
            yield AnswerPiece(answer=inner)
            return
        if table and not table_sent:
            yield AnswerPiece(text=heading)
        if table and inner.abstained:
            yield AnswerPiece(answer=self._table_only(table, heading, inner))
            return
        yield from held
        yield AnswerPiece(answer=self._combined(table, heading, inner, language))

    def _combined(
        self, table: EvidenceTable | None, heading: str, inner: Answer, language: str
    ) -> Answer:
        if inner.abstained:
            return inner
        noted = self._noted(inner, language)
        if table is None:
            return noted
        citations, passages, evidence = self._table_sources(table, inner)
        return replace(
            noted,
            text=heading + noted.text,
            segments=(heading, *noted.segments),
            citations=citations,
            passages=passages,
            evidence=evidence,
            table=table,
        )

    def _noted(self, answer: Answer, language: str) -> Answer:
        """``answer`` with the level of evidence after each sentence that reports on a trial
        (its quoted answer too, where the llm mode has one)."""
        segments = tuple(self.levels.note(s, language) for s in answer.segments)
        text = answer.text
        for before, after in zip(answer.segments, segments, strict=True):
            if before != after:
                text = text.replace(before, after, 1)
        quoted = answer.quoted and self._noted(answer.quoted, language)
        return replace(answer, text=text, segments=segments, quoted=quoted)

    def _table_only(self, table: EvidenceTable, heading: str, inner: Answer) -> Answer:
        base = replace(inner, abstained=False, citations=(), passages=(), evidence=())
        citations, passages, evidence = self._table_sources(table, base)
        return replace(
            base,
            text=heading.rstrip(),
            segments=(heading.rstrip(),),
            citations=citations,
            passages=passages,
            evidence=evidence,
            table=table,
        )

    def _table_sources(
        self, table: EvidenceTable, inner: Answer
    ) -> tuple[tuple[Citation, ...], tuple[PassageCitation, ...], tuple[EvidenceItem, ...]]:
        """The answer's citations, passages and evidence with the table's trials added: each
        row's trial record is evidence, cited by its references or its section."""
        citations = {c.ref: c for c in inner.citations}
        passages = {p.section: p for p in inner.passages}
        evidence = list(inner.evidence)
        present = {e.chunk.chunk_id for e in evidence}
        for row in table.rows:
            chunk = self.trial_chunks.get(row.trial_id)
            if chunk is None:
                continue
            if chunk.chunk_id not in present:
                evidence.append(EvidenceItem(chunk=chunk, score=0.0))
                present.add(chunk.chunk_id)
            quote = Quote(chunk_id=chunk.chunk_id, text=_review_text(chunk), section=row.section)
            for ref in row.refs:
                if ref in citations:
                    continue
                reference = self.references.get(ref)
                citations[ref] = Citation(
                    ref=ref, reference=reference.text if reference else "", quotes=(quote,)
                )
            if not row.refs and row.section not in passages:
                passages[row.section] = PassageCitation(section=row.section, quotes=(quote,))
        return (
            tuple(sorted(citations.values(), key=lambda c: c.ref)),
            tuple(passages.values()),
            tuple(evidence),
        )


def _short_name(record: TrialRecord, language: str) -> str:
    """The trial's name in ``language`` without its parenthetical (a note is one parenthesis)."""
    name = display_name(record, language)
    return re.sub(r"\s*[(（][^()（）]*[)）]", "", name).strip() or record.id


def _review_text(chunk: Chunk) -> str:
    """The review's own sentences of a trial chunk (what a citation quotes)."""
    start = review_text_start(chunk.text)
    return chunk.text[start:] if start is not None else chunk.text


def trial_chunks_by_id(chunks: Sequence[Chunk]) -> dict[str, Chunk]:
    """The indexed trial chunk of each record id (renderings left out)."""
    return {
        str(c.metadata["trial_id"]): c
        for c in chunks
        if c.kind == "trial" and c.rendering_of is None and "trial_id" in c.metadata
    }
