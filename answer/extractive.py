"""The extractive answer mode: quote the evidence sentences that answer the question.

Faithful by construction: the answer is made only of the review's own sentences, each with its
own reference numbers where the review prints them (or its passage's ``[§section]`` when it has
none), in the review's reading order, behind one line saying that it quotes the source.

An answer in another language than the review's (``answer.base.answer_language``) shows each
sentence's rendering from the index (looked up, never translated per question) with the same
markers, keeps the printed sentence in ``Quote.original`` and says that it is translated; a
sentence without a rendering is quoted as printed and counted in ``Answer.untranslated``. The
sentences are chosen on the printed text either way, so both languages cite the same evidence.

The sentences are scored once per answer by ``answer.relevance.SentenceScorer``. The best
sentence is kept, then others within ``margin`` of it, up to ``max_sentences``; when the
question names a trial, a quote about another study (one naming another trial, or one neither
naming the trial nor sharing its passage or reference) is left out, and so, when it names a drug
or regimen, is a quote naming only other treatments; a sentence that continues one with
references (``结果显示…``) brings that one along. When the relevance gate says
the evidence does not answer the question the mode abstains and cites nothing.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from answer.base import answer_language, final_answer, not_discussed_text
from answer.citations import QuotedSentence, collect_citations, render_quote
from answer.relevance import (
    TREATMENT_TYPES,
    Relevance,
    ScoringConfig,
    SentenceScorer,
    abstention,
)
from nenqa.glossary import Term, normalize_text
from nenqa.text import strip_citation_markers
from nenqa.timing import elapsed_ms
from nenqa.types import Answer, AnswerPiece, Question, Reference, Retrieval
from retriever.search import HybridSearcher

QUOTE_PREFACE = {
    "zh": "以下为综述原文摘录：",
    "en": "Quoted from the review (original Chinese text):",
}
# When the quotes are renderings: the preface says so, and how many are not.
TRANSLATED_PREFACE = {
    "zh": "以下摘录译自综述原文（每条摘录附原文）：",
    "en": "Translated from the review's Chinese text (each quote keeps its original):",
}
UNTRANSLATED_NOTE = {
    "zh": "（{n}句尚无译文，按原文引用）",
    "en": " ({n} without a translation, quoted in the original)",
}
# A sentence opening like these reports on the study named in the sentence before it.
_TRIAL = frozenset({"trial"})
_CONTINUATION = re.compile(r"^(?:结果显示|结果提示|该研究|该药|其中|研究显示|亚组分析)")


class ExtractiveAnswerer:
    """Answers by quoting review sentences; see the module docstring for the rules."""

    name = "extractive"

    def __init__(
        self,
        searcher: HybridSearcher,
        scorer: SentenceScorer,
        references: Mapping[int, Reference],
        *,
        top_k: int = 6,
    ) -> None:
        self.searcher = searcher
        self.scorer = scorer
        self.references = references
        self.top_k = top_k

    @property
    def config(self) -> ScoringConfig:
        return self.scorer.config

    def answer(self, question: Question) -> Answer:
        """The quoted answer (or the abstention): the last piece of ``stream``."""
        return final_answer(self.stream(question))

    def stream(self, question: Question) -> Iterator[AnswerPiece]:
        """Retrieve, score, select: the answer's segments, then the complete ``Answer``."""
        started = time.perf_counter()
        retrieval = self.searcher.retrieve(question, question.top_k or self.top_k)
        retrieved = time.perf_counter()
        answer = self.answer_retrieval(retrieval)
        answer.timings_ms.update(retrieve=elapsed_ms(started, retrieved), total=elapsed_ms(started))
        for segment in answer.segments:
            yield AnswerPiece(text=segment)
        yield AnswerPiece(answer=answer)

    def answer_retrieval(self, retrieval: Retrieval) -> Answer:
        """The quoted answer (or the abstention) for a retrieval already made.

        eval's tutorial recipe calls this with evidence ranked by other means.
        """
        started = time.perf_counter()
        language = answer_language(retrieval.question)
        evidence = retrieval.evidence
        relevance = self.scorer.relevance(retrieval)
        if not relevance.answerable(self.config):
            timings = {"select": elapsed_ms(started)}
            return abstention(
                language,
                "extractive",
                evidence,
                timings,
                not_covered=relevance.not_covered,
                uncovered=relevance.uncovered,
            )
        return self.quote(retrieval, relevance, started)

    def quote(
        self, retrieval: Retrieval, relevance: Relevance, started: float | None = None
    ) -> Answer:
        """The quoted answer for an answerable retrieval already scored (the llm mode sends it
        first, so relevance is computed once per answer)."""
        started = time.perf_counter() if started is None else started
        language = answer_language(retrieval.question)
        evidence = retrieval.evidence
        quoted = [q.shown_in(language) for q in self.select(relevance)]
        segments = [quote_preface(quoted, language)]
        segments += [
            render_quote(q.sentence, self.references, rendering=q.rendering) for q in quoted
        ]
        if relevance.unknown_entities:  # answered in part: the rest is named, never quoted for
            segments.append(not_discussed_text(language, relevance.unknown_entities))
        citations, passages = collect_citations(
            quoted, self.references, self.scorer.bank.entries_in(language)
        )
        return Answer(
            text=_join(segments, language),
            abstained=False,
            mode="extractive",
            language=language,
            segments=tuple(_spaced(segments, language)),
            citations=citations,
            passages=passages,
            evidence=tuple(evidence),
            timings_ms={"select": elapsed_ms(started)},
            untranslated=sum(q.untranslated for q in quoted if q.sentence.language != language),
        )

    def select(self, relevance: Relevance) -> list[QuotedSentence]:
        """The chosen sentences in reading order: best, those within the margin, their leads."""
        bank, config = self.scorer.bank, self.config
        ranked = relevance.ranked
        if not ranked:
            return []
        named: dict[int, list[Term]] = {}  # the glossary terms of each sentence looked at

        def terms_of(index: int) -> list[Term]:
            if index not in named:
                named[index] = self.searcher.glossary.matches(bank.sentences[index].text)
            return named[index]

        if relevance.subject_inherited:
            # A follow-up's best quote is about the subject it inherited too, where one is.
            on_subject = [
                s for s in ranked if not _about_another_study(terms_of(s.index), relevance)
            ]
            ranked = on_subject or ranked
        chosen: dict[int, str] = {}
        best = ranked[0].score
        min_overlap = ranked[0].overlap * config.min_overlap_ratio
        for candidate in ranked:
            if len(chosen) >= config.max_sentences or candidate.score < best - config.margin:
                break
            if chosen and candidate.overlap < min_overlap:
                continue
            if chosen and _about_another_study(terms_of(candidate.index), relevance):
                continue
            text = strip_citation_markers(bank.sentences[candidate.index].text)
            if any(_near_duplicate(text, bank.sentences[i].text) for i in chosen):
                continue
            chosen[candidate.index] = candidate.chunk_id
        chosen = self._on_named_trials(chosen, terms_of, relevance)
        for index, chunk_id in list(chosen.items()):
            lead = self._lead_sentence(index, chunk_id)
            if lead is not None and lead not in chosen:
                chosen[lead] = chunk_id
        ordered = sorted(chosen, key=lambda i: (bank.sentences[i].position, i))
        return [QuotedSentence(bank.sentences[i], chosen[i]) for i in ordered]

    def _on_named_trials(
        self,
        chosen: dict[int, str],
        terms_of: Callable[[int], Sequence[Term]],
        relevance: Relevance,
    ) -> dict[int, str]:
        """When a quote names a trial the question names, the others must be about it too: name
        it, sit in a retrieved passage with a quote that does (a sentence where two chunks
        overlap is in both), or cite the same reference (the CASPIAN result sentence cites [32]
        without the name). The best scored sentence stays (dropping it too lost a gold reference
        on the eval set); the rest would be a cited answer about another study (a DLL3 trial
        quoted beside TALENT)."""
        if not relevance.named_trials or len(chosen) < 2:
            return chosen
        bank = self.scorer.bank
        naming = [i for i in chosen if _names_one(terms_of(i), _TRIAL, relevance.named_trials)]
        if not naming:
            return chosen
        passages = {
            chunk_id: set(bank.sentences_of(chunk_id)) for chunk_id in relevance.evidence_chunks
        }

        def passages_of(index: int) -> set[str]:
            return {chosen[index]} | {c for c, held in passages.items() if index in held}

        chunks = set().union(*(passages_of(i) for i in naming))
        refs = {ref for i in naming for ref in bank.sentences[i].refs}
        best = next(iter(chosen))
        return {
            index: chunk_id
            for index, chunk_id in chosen.items()
            if index == best
            or index in naming
            or passages_of(index) & chunks
            or refs.intersection(bank.sentences[index].refs)
        }

    def _lead_sentence(self, index: int, chunk_id: str) -> int | None:
        """The cited sentence a reference-less continuation (``结果显示…``) reports on."""
        sentence = self.scorer.bank.sentences[index]
        if sentence.refs or not _CONTINUATION.match(sentence.text):
            return None
        in_chunk = self.scorer.bank.sentences_of(chunk_id)
        position = in_chunk.index(index) if index in in_chunk else 0
        if position == 0:
            return None
        previous = in_chunk[position - 1]
        return previous if self.scorer.bank.sentences[previous].refs else None


def quote_preface(quoted: Sequence[QuotedSentence], language: str) -> str:
    """The line before the quotes: "quoted from" as printed, or "translated from" when any
    quote is a rendering (with the number quoted as printed for want of one)."""
    foreign = [q for q in quoted if q.sentence.language != language]
    rendered = sum(q.rendering is not None for q in foreign)
    if not rendered:
        return QUOTE_PREFACE[language]
    preface = TRANSLATED_PREFACE[language]
    if missing := len(foreign) - rendered:
        preface = preface[:-1] + UNTRANSLATED_NOTE[language].format(n=missing) + preface[-1]
    return preface


def _names_one(terms: Sequence[Term], types: frozenset[str], forms: frozenset[str]) -> bool:
    """Whether any of a sentence's ``terms`` of these ``types`` has one of the question's
    ``forms``."""
    return any(normalize_text(f) in forms for t in terms if t.type in types for f in t.forms)


def _about_another_study(terms: Sequence[Term], relevance: Relevance) -> bool:
    """Whether a sentence names trials, none of them the question's (PROMID for SPINET), or
    drugs and regimens, none of them the question's or held in its regimens (FOLFOX beside
    pembrolizumab's trials). A sentence naming none may stay (belzutifan's result, [46])."""
    return any(
        wanted and any(t.type in types for t in terms) and not _names_one(terms, types, wanted)
        for types, wanted in (
            (_TRIAL, relevance.named_trials),
            (TREATMENT_TYPES, relevance.named_treatments),
        )
    )


def _near_duplicate(text: str, other: str) -> bool:
    other = strip_citation_markers(other)
    return difflib.SequenceMatcher(None, text, other, autojunk=False).ratio() >= 0.9


def _spaced(segments: Sequence[str], language: str) -> list[str]:
    """Segments with the separator the joined text uses, so streamed pieces join to ``text``."""
    if language == "zh":
        return list(segments)
    return [segments[0], *(f" {s}" for s in segments[1:])]


def _join(segments: Sequence[str], language: str) -> str:
    return "".join(_spaced(segments, language))
