"""Everything the server loads once at start-up: index, model, sentences, references, trials.

``load_service`` is called from the app's lifespan (in a background thread, so ``/healthz``
answers and ``/readyz`` says 503 while the model loads); requests only read the result.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel

from answer.base import AnswerError, AnswerMode
from answer.corpus_text import glossary_forms as forms_of
from answer.corpus_text import open_corpus_text
from answer.extractive import ExtractiveAnswerer
from answer.fallback import ExtractiveFallback
from answer.llm import LLMAnswerer, make_chat_model
from answer.relevance import ScoringConfig, SentenceScorer
from answer.scope import ScopeCheck
from answer.scope_probe import PROBE_FILE, load_probe
from answer.sentence_store import open_bank
from answer.sentences import SentenceBank
from answer.table_mode import EvidenceLevels, EvidenceTableMode, trial_chunks_by_id
from answer.word_rarity import embedder_word_logprob
from ingest.pipeline import DEFAULT_SOURCES
from ingest.review import parse_review
from ingest.trials import load_trials
from nenqa.resources import bundled_dir
from nenqa.settings import Settings
from nenqa.types import Reference, TrialRecord
from retriever.search import HybridSearcher, load_searcher
from retriever.store import IndexUnreachableError
from server.batching import QueryBatcher

# Queries embedded in one model call at most. A query with its glossary expansions is about
# 46 tokens, so the model is compute-bound and larger batches save little per query while a
# request queued behind one waits longer: with 8 concurrent clients on 2 cores, batches of 2
# gave 49 req/s and p95 215 ms, of 16 48 req/s and p95 326 ms, unbatched 41 req/s and p95
# 235 ms (in-process, docs/benchmarks.md).
QUERY_BATCH_TEXTS = 2
LOAD_RETRY_S = 2.0  # how often to try again while a Chroma server is not answering at start-up


class QueryVectorCache:
    """Wraps an embedder so a question asked again soon after is not embedded again.

    The cache is small on purpose: it spans the requests in flight and a question asked again
    soon after, not a whole evaluation set (which would make benchmarks measure the cache).

    Queries not in the cache go through a ``QueryBatcher``: at most one model call per CPU
    runs at a time (torch runs ``Settings.torch_threads`` threads per call, 1 by default), so
    request threads do not oversubscribe the cores, and queries that arrive while every slot
    is busy are embedded together. Everything except ``embed_queries`` passes through to the
    wrapped embedder.
    """

    def __init__(self, embedder: Any, size: int = 64) -> None:
        self.wrapped = embedder
        self._size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.batcher = QueryBatcher(
            embedder.embed_queries, slots=_cpu_count(), max_texts=QUERY_BATCH_TEXTS
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            hits = [self._cache.get(t) for t in texts]
        missing = [t for t, hit in zip(texts, hits, strict=True) if hit is None]
        if missing:
            vectors = self.batcher.embed(missing)
            fresh = dict(zip(missing, vectors, strict=True))
            with self._lock:
                for text, vector in fresh.items():
                    self._cache[text] = vector
                    if len(self._cache) > self._size:
                        self._cache.popitem(last=False)
            hits = [
                hit if hit is not None else fresh[t] for t, hit in zip(texts, hits, strict=True)
            ]
        return np.stack(hits)


@dataclass
class ServiceState:
    """The loaded service: the searcher, the answer modes and the lookup tables."""

    settings: Settings
    searcher: HybridSearcher
    bank: SentenceBank
    scorer: SentenceScorer
    references: dict[int, Reference]
    trials: list[TrialRecord]
    answerers: dict[str, AnswerMode]
    llm_problem: str | None = None
    load_seconds: float = 0.0
    # The trial records' levels of evidence; every answer mode is served with its tables.
    levels: EvidenceLevels | None = None

    def answerer(self, mode: str) -> AnswerMode:
        """The answer mode by name, with evidence tables and levels of evidence; raises
        ``AnswerError`` saying why a mode is unavailable."""
        if mode not in self.answerers:
            raise AnswerError(self.llm_problem or f"answer mode {mode!r} is not available")
        if self.levels is None:
            return self.answerers[mode]
        return self._with_tables[mode]

    @cached_property
    def _with_tables(self) -> dict[str, AnswerMode]:
        """Each mode wrapped once per service, not per request: the trial chunks are read from
        the searcher's table by their positions (the layout knows them; no walk over 100k
        chunks). A ``replace``d service wraps its own modes."""
        assert self.levels is not None
        trial_chunks = trial_chunks_by_id(self.searcher.chunks_of_kind("trial"))
        return {
            name: EvidenceTableMode(
                mode, self.levels, self.searcher.glossary, trial_chunks, self.references
            )
            for name, mode in self.answerers.items()
        }


def load_service(
    settings: Settings,
    *,
    searcher: HybridSearcher | None = None,
    chat_model: BaseChatModel | None = None,
    previous: ServiceState | None = None,
) -> ServiceState:
    """Open the index, load the model, open the quotable sentences and the scope check's corpus
    text (written by the first process that needs this generation's), build both answer modes.

    Raises ``IndexUnavailableError`` when the index is empty or built for another model. The
    llm mode is left out (with the reason in ``llm_problem``) when no endpoint is configured.
    After ``searcher.refresh()`` pass the ``previous`` service: sentences it already embedded
    are not embedded again (nor those of the newest saved generation).
    """
    started = time.perf_counter()
    searcher = searcher or load_searcher(settings)
    if not isinstance(searcher.embedder, QueryVectorCache):
        searcher.embedder = QueryVectorCache(searcher.embedder)
    references, trials = load_reference_tables(settings)
    bank = open_bank(
        searcher.embedder,
        searcher.chunks,
        index_dir=settings.index_dir,
        generation=searcher.generation,
        reuse=previous.bank if previous else None,
    )
    glossary_forms = forms_of(searcher.glossary)
    corpus = open_corpus_text(
        searcher.chunks,
        glossary_forms,
        index_dir=settings.index_dir,
        generation=searcher.generation,
    )
    tokenizer = getattr(searcher.embedder, "tokenizer", None)
    scope = ScopeCheck(corpus, glossary_forms, word_logprob=embedder_word_logprob(tokenizer))
    config = ScoringConfig(
        max_sentences=settings.answer_max_sentences,
        min_similarity=settings.abstain_min_similarity,
        min_overlap=settings.abstain_min_overlap,
    )
    probe = None
    if settings.scope_probe_enabled:
        probe = load_probe(
            settings.scope_probe or bundled_dir("data") / PROBE_FILE,
            required=settings.scope_probe is not None,
        )
    scorer = SentenceScorer(searcher, bank, scope, config, probe)
    answerers: dict[str, AnswerMode] = {
        "extractive": ExtractiveAnswerer(searcher, scorer, references, top_k=settings.answer_top_k)
    }
    llm_problem = None
    try:
        model = chat_model or make_chat_model(settings)
        answerers["llm"] = LLMAnswerer(
            scorer, references, model, top_k=settings.answer_top_k, records=trials
        )
    except AnswerError as error:
        llm_problem = str(error)
    state = ServiceState(
        settings=settings,
        searcher=searcher,
        bank=bank,
        scorer=scorer,
        references=references,
        trials=trials,
        answerers=answerers,
        llm_problem=llm_problem,
        levels=EvidenceLevels(trials),
    )
    state = with_extractive_fallback(state)
    state.load_seconds = round(time.perf_counter() - started, 2)
    return state


def load_when_reachable(
    settings: Settings,
    waiting: Callable[[str | None], None],
    *,
    searcher: HybridSearcher | None = None,
    chat_model: BaseChatModel | None = None,
) -> ServiceState:
    """``load_service``, tried again every ``LOAD_RETRY_S`` while a Chroma server does not answer
    (so the API and the server can start in either order): ``waiting`` hears why before each
    wait, and ``None`` once loaded. Every other error is raised."""
    while True:
        try:
            service = load_service(settings, searcher=searcher, chat_model=chat_model)
        except IndexUnreachableError as error:
            waiting(f"waiting for the index: {error}")
            time.sleep(LOAD_RETRY_S)
        else:
            waiting(None)
            return service


def reload_service(service: ServiceState) -> ServiceState:
    """A new service over the index's current generation: a new searcher (chunks, glossary,
    lexical index) over the same store and model; sentences ``service`` embedded are reused.
    ``service`` itself is left as it was for the requests still holding it."""
    return load_service(service.settings, searcher=service.searcher.reopened(), previous=service)


def with_llm(state: ServiceState, chat_model: BaseChatModel) -> ServiceState:
    """A copy of ``state`` whose llm mode uses ``chat_model`` (nothing is loaded again)."""
    answerer = LLMAnswerer(
        state.scorer,
        state.references,
        chat_model,
        top_k=state.settings.answer_top_k,
        records=state.trials,
    )
    return with_extractive_fallback(
        replace(state, answerers={**state.answerers, "llm": answerer}, llm_problem=None)
    )


def with_extractive_fallback(state: ServiceState) -> ServiceState:
    """``state`` whose llm mode answers extractively when its endpoint fails, if configured.

    Unchanged unless ``settings.llm_fallback_extractive`` is set and the llm mode exists.
    """
    llm = state.answerers.get("llm")
    if not state.settings.llm_fallback_extractive or not isinstance(llm, LLMAnswerer):
        return state
    extractive = state.answerers["extractive"]
    assert isinstance(extractive, ExtractiveAnswerer)
    return replace(state, answerers={**state.answerers, "llm": ExtractiveFallback(llm, extractive)})


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def load_reference_tables(settings: Settings) -> tuple[dict[int, Reference], list[TrialRecord]]:
    """The review's reference list and the trial records, read from ``settings.data_dir``."""
    review_name, trials_name = DEFAULT_SOURCES
    document = parse_review(settings.data_dir / review_name)
    trials_path = settings.data_dir / trials_name
    trials = load_trials(trials_path) if trials_path.exists() else []
    return {r.number: r for r in document.references}, trials
