"""The extractive answer mode: quote the evidence sentences that answer the question.

Faithful by construction: the answer is made only of the review's own sentences, each with its
own reference numbers where the review prints them (or its passage's ``[§section]`` when it has
none), in the review's reading order, behind one line saying that it quotes the source.

Each sentence of the retrieved chunks is scored by
``similarity + overlap_weight * overlap + rank_weight / (1 + chunk rank)``: ``similarity`` is the
cosine of the question (with the conversation's earlier user turns) and the sentence under the
retrieval embedder, ``overlap`` the IDF-weighted share of the question's corpus words the
sentence contains, the glossary's other-language forms counting for their terms. The best
sentence is kept, then others within ``margin`` of it, up to ``max_sentences``; a sentence that
continues one with references (``结果显示…``) brings that one along. The question is answered
only when the best sentence reaches both ``min_similarity`` and ``min_overlap`` and the question
names no entity the review never mentions (``ScopeCheck``); otherwise the mode abstains and
cites nothing.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from answer.base import ABSTENTION_TEXT, Answer, AnswerPiece, Question
from answer.citations import QuotedSentence, collect_citations, render_quote
from answer.scope import ScopeCheck
from answer.sentences import SentenceBank
from nenqa.text import detect_language, strip_citation_markers
from nenqa.types import Evidence, Reference
from retriever.glossary import Glossary
from retriever.lexical import normalize_text, tokenize
from retriever.search import HybridSearcher

QUOTE_PREFACE = {
    "zh": "以下为综述原文摘录：",
    "en": "Quoted from the review (original Chinese text):",
}
# A sentence opening like these reports on the study named in the sentence before it.
_CONTINUATION = re.compile(r"^(?:结果显示|结果提示|该研究|该药|其中|研究显示|亚组分析)")
_NUMBER_TOKEN = re.compile(r"^[\d.]+$")


@dataclass(frozen=True)
class ExtractiveConfig:
    """The selection and abstention parameters (calibrated on ``eval/qa.jsonl``)."""

    max_sentences: int = 3
    min_similarity: float = 0.78
    min_overlap: float = 0.20
    overlap_weight: float = 0.25
    rank_weight: float = 0.05
    margin: float = 0.15
    history_weight: float = 0.5
    # A further sentence must cover this share of what the best one covers of the question,
    # so a SPINET question does not also quote the PROMID sentence next to it.
    min_overlap_ratio: float = 0.4
    # A question whose every specific word (a trial name) the best sentence covers is
    # answerable at a lower similarity ("What did the SEQTOR trial find?").
    strong_overlap: float = 0.9
    strong_min_similarity: float = 0.70


@dataclass(frozen=True)
class ScoredSentence:
    """A candidate sentence with its score parts; ``index`` points into the ``SentenceBank``."""

    index: int
    chunk_id: str
    rank: int
    similarity: float
    overlap: float
    score: float


@dataclass
class Relevance:
    """How well the retrieved evidence matches the question; decides abstention."""

    best_similarity: float = 0.0
    best_overlap: float = 0.0
    unknown_entities: list[str] = field(default_factory=list)
    ranked: list[ScoredSentence] = field(default_factory=list)
    # Every folded form of the trials the question names (SPINET; 兰瑞肽 is not a trial).
    named_trials: frozenset[str] = frozenset()

    def answerable(self, config: ExtractiveConfig) -> bool:
        if self.unknown_entities or not self.ranked:
            return False
        top = self.ranked[0]
        covered = top.overlap >= config.strong_overlap
        return (
            self.best_similarity >= config.min_similarity
            and self.best_overlap >= config.min_overlap
        ) or (covered and top.similarity >= config.strong_min_similarity)


class SentenceScorer:
    """Scores the sentences of retrieved evidence against a question (shared by both modes)."""

    def __init__(
        self,
        searcher: HybridSearcher,
        bank: SentenceBank,
        scope: ScopeCheck,
        config: ExtractiveConfig,
    ) -> None:
        self.searcher = searcher
        self.bank = bank
        self.scope = scope
        self.config = config

    def relevance(self, question: Question, evidence: Sequence[Evidence]) -> Relevance:
        """Every sentence of ``evidence`` scored, best first, with the abstention signals."""
        query = self.searcher.retrieval_query(question.text, question.history)
        expansions = self.searcher.glossary.expand(query)
        units = self._query_units(question)
        vector = self._query_vector(query, expansions)
        candidates: dict[int, tuple[str, int]] = {}
        for rank, item in enumerate(evidence):
            for index in self.bank.sentences_of(item.chunk.chunk_id):
                candidates.setdefault(index, (self.bank.quote_chunk(index, item.chunk), rank))
        relevance = Relevance(
            unknown_entities=self.scope.unknown_entities(question.text),
            named_trials=frozenset(
                normalize_text(form)
                for term in self.searcher.glossary.matches(question.text)
                if term.type == "trial"
                for form in term.forms
            ),
        )
        if not candidates:
            return relevance
        indices = list(candidates)
        similarities = self.bank.vectors[indices] @ vector
        scored = []
        for index, similarity in zip(indices, similarities, strict=True):
            chunk_id, rank = candidates[index]
            overlap = self._overlap(units, self.bank.tokens[index])
            score = (
                float(similarity)
                + self.config.overlap_weight * overlap
                + self.config.rank_weight / (1 + rank)
            )
            scored.append(ScoredSentence(index, chunk_id, rank, float(similarity), overlap, score))
        scored.sort(key=lambda s: (-s.score, s.index))
        relevance.ranked = scored
        relevance.best_similarity = max(s.similarity for s in scored)
        relevance.best_overlap = max(s.overlap for s in scored)
        return relevance

    def _query_units(self, question: Question) -> list[tuple[float, tuple[frozenset[str], ...]]]:
        """What the question asks about, as (weight, alternatives) units a sentence can cover.

        A glossary term the question names is one unit, covered by any of its forms in either
        language (so ``lanreotide`` is covered by ``兰瑞肽``); every other corpus word is a unit of
        its own. Weights are IDF, times ``history_weight`` for words of earlier turns only.
        """
        earlier = [t.content for t in question.history if t.role == "user"]
        earlier = earlier[-self.searcher.weights.history_turns :]
        texts = [*((t, self.config.history_weight) for t in earlier), (question.text, 1.0)]
        units: dict[object, tuple[float, tuple[frozenset[str], ...]]] = {}
        for text, weight in texts:
            claimed: set[str] = set()
            for term in self.searcher.glossary.matches(text):
                forms = tuple(
                    toks
                    for form in term.forms
                    if (toks := frozenset(t for t in tokenize(form) if self.bank.known(t)))
                )
                named = {t for form in term.forms for t in tokenize(form)} & set(tokenize(text))
                claimed |= named
                if not forms:
                    continue
                unit_weight = weight * max(self.bank.idf(t) for toks in forms for t in toks)
                key = ("term", term.forms)
                if units.get(key, (0.0,))[0] < unit_weight:
                    units[key] = (unit_weight, forms)
            for token in tokenize(text):
                if token in claimed or not self.bank.known(token) or _NUMBER_TOKEN.match(token):
                    continue
                unit_weight = weight * self.bank.idf(token)
                if units.get(token, (0.0,))[0] < unit_weight:
                    units[token] = (unit_weight, (frozenset({token}),))
        return list(units.values())

    @staticmethod
    def _overlap(
        units: Sequence[tuple[float, tuple[frozenset[str], ...]]], tokens: frozenset[str]
    ) -> float:
        total = sum(weight for weight, _ in units)
        if total <= 0:
            return 0.0
        found = sum(weight for weight, forms in units if any(f <= tokens for f in forms))
        return found / total

    def _query_vector(self, query: str, expansions: Sequence[str]) -> np.ndarray:
        # The text the searcher embeds, so a caching embedder (server.state) pays for it once.
        text = f"{query} ({'; '.join(expansions)})" if expansions else query
        return np.asarray(self.searcher.embedder.embed_queries([text])[0], dtype=np.float32)


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
    def config(self) -> ExtractiveConfig:
        return self.scorer.config

    def retrieve(self, question: Question) -> list[Evidence]:
        return self.searcher.search(
            question.text, question.top_k or self.top_k, history=question.history
        )

    def answer(self, question: Question) -> Answer:
        started = time.perf_counter()
        evidence = self.retrieve(question)
        retrieved = time.perf_counter()
        answer = self.answer_from_evidence(question, evidence)
        answer.timings_ms.update(
            retrieve=_ms(started, retrieved), total=_ms(started, time.perf_counter())
        )
        return answer

    def stream(self, question: Question) -> Iterator[AnswerPiece]:
        answer = self.answer(question)
        for segment in answer.segments:
            yield AnswerPiece(text=segment)
        yield AnswerPiece(answer=answer)

    def answer_from_evidence(self, question: Question, evidence: Sequence[Evidence]) -> Answer:
        """The quoted answer (or the abstention) for evidence already retrieved."""
        started = time.perf_counter()
        language = detect_language(question.text)
        relevance = self.scorer.relevance(question, evidence)
        if not relevance.answerable(self.config):
            return abstention(language, "extractive", evidence, {"select": _ms(started)})
        quoted = self.select(relevance)
        segments = [QUOTE_PREFACE[language]]
        segments += [render_quote(q.sentence, self.references) for q in quoted]
        citations, passages = collect_citations(quoted, self.references)
        return Answer(
            text=_join(segments, language),
            abstained=False,
            mode="extractive",
            language=language,
            segments=tuple(_spaced(segments, language)),
            citations=citations,
            passages=passages,
            evidence=tuple(evidence),
            timings_ms={"select": _ms(started)},
        )

    def select(self, relevance: Relevance) -> list[QuotedSentence]:
        """The chosen sentences in reading order: best, those within the margin, their leads."""
        bank, config = self.scorer.bank, self.config
        ranked = relevance.ranked
        if not ranked:
            return []
        chosen: dict[int, str] = {}
        best = ranked[0].score
        min_overlap = ranked[0].overlap * config.min_overlap_ratio
        for candidate in ranked:
            if len(chosen) >= config.max_sentences or candidate.score < best - config.margin:
                break
            if chosen and candidate.overlap < min_overlap:
                continue
            printed = bank.sentences[candidate.index].text
            if chosen and _names_another_trial(printed, relevance, self.searcher.glossary):
                continue
            text = strip_citation_markers(printed)
            if any(_near_duplicate(text, bank.sentences[i].text) for i in chosen):
                continue
            chosen[candidate.index] = candidate.chunk_id
        for index, chunk_id in list(chosen.items()):
            lead = self._lead_sentence(index, chunk_id)
            if lead is not None and lead not in chosen:
                chosen[lead] = chunk_id
        ordered = sorted(chosen, key=lambda i: (bank.sentences[i].position, i))
        return [QuotedSentence(bank.sentences[i], chosen[i]) for i in ordered]

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


def abstention(
    language: str, mode: str, evidence: Sequence[Evidence], timings: dict[str, float]
) -> Answer:
    """The answer when the evidence does not answer the question: no citations at all."""
    text = ABSTENTION_TEXT[language]
    return Answer(
        text=text,
        abstained=True,
        mode=mode,  # type: ignore[arg-type]
        language=language,
        segments=(text,),
        evidence=tuple(evidence),
        timings_ms=dict(timings),
    )


def _names_another_trial(text: str, relevance: Relevance, glossary: Glossary) -> bool:
    """Whether a sentence is about a trial the question does not name (PROMID for SPINET)."""
    if not relevance.named_trials:
        return False
    trials = [t for t in glossary.matches(text) if t.type == "trial"]
    return bool(trials) and not any(
        normalize_text(f) in relevance.named_trials for t in trials for f in t.forms
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


def _ms(started: float, ended: float | None = None) -> float:
    return round(((ended or time.perf_counter()) - started) * 1000, 2)
