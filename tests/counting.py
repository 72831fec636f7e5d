"""An answer pipeline over the session index whose embedder and sentence scorer count calls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from answer.relevance import Relevance, SentenceScorer
from nenqa.types import Retrieval
from retriever.search import HybridSearcher


class CountingEmbedder:
    """The real embedder, recording the query texts it is asked to embed."""

    def __init__(self, embedder) -> None:
        self.wrapped = embedder
        self.queries: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries.extend(texts)
        return self.wrapped.embed_queries(texts)


class CountingScorer(SentenceScorer):
    """The real scorer, counting how often relevance is computed."""

    calls = 0

    def relevance(self, retrieval: Retrieval) -> Relevance:
        self.calls += 1
        return super().relevance(retrieval)


def counting_scorer(service, embedder) -> tuple[CountingScorer, CountingEmbedder]:
    """A scorer over a searcher like ``service``'s, both counting what they are asked."""
    counting = CountingEmbedder(embedder)
    shared = service.searcher
    searcher = HybridSearcher(
        shared.store,
        counting,
        shared.glossary,
        dense_candidates=shared.dense_candidates,
        lexical_candidates=shared.lexical_candidates,
    )
    scorer = CountingScorer(searcher, service.bank, service.scorer.scope, service.scorer.config)
    return scorer, counting
