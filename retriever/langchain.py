"""LangChain faces of the retriever: a ``BaseRetriever`` and an ``Embeddings`` adapter."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from nenqa.types import Evidence, Turn
from retriever.embeddings import Embedder
from retriever.search import HybridSearcher, SearchFilters


def evidence_to_document(evidence: Evidence) -> Document:
    """A LangChain ``Document`` whose metadata carries the chunk's refs, section and score."""
    chunk = evidence.chunk
    return Document(
        page_content=chunk.text,
        id=chunk.chunk_id,
        metadata={
            "chunk_id": chunk.chunk_id,
            "refs": list(chunk.refs),
            "score": float(evidence.score),
            "section": chunk.section,
            "kind": chunk.kind,
            "trials": list(chunk.trials),
            "doc_id": chunk.doc_id,
        },
    )


class NenqaRetriever(BaseRetriever):
    """Hybrid (dense + BM25 + bilingual glossary) search over the evidence index.

    ``invoke(question, k=3, history=[...])`` overrides ``k`` and adds conversation context.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: HybridSearcher = Field(exclude=True)
    k: int = 5
    filters: SearchFilters | None = None

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        history: list[dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        turns = [Turn(t["role"], t["content"]) for t in history or []]  # type: ignore[arg-type]
        results = self.searcher.search(query, k or self.k, history=turns, filters=self.filters)
        return [evidence_to_document(e) for e in results]


class E5Embeddings(Embeddings):
    """LangChain ``Embeddings`` over our embedder (``passage:``/``query:`` prompts applied)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_passages(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()
