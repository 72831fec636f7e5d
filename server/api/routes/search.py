"""``POST /v1/search``: the evidence for a question, without an answer."""

from __future__ import annotations

from fastapi import APIRouter

from nenqa.types import Turn
from retriever.search import SearchFilters
from server.api.deps import ServiceDep
from server.api.docs import COMMON, POST_BODY, error_responses
from server.schemas import EvidenceOut, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Retrieve evidence (hybrid dense + lexical, Chinese and English)",
    responses=error_responses(*POST_BODY, *COMMON),
)
def search(body: SearchRequest, service: ServiceDep) -> SearchResponse:
    """The best `top_k` chunks, optionally restricted by kind or trial metadata."""
    filters = SearchFilters(**body.filters.model_dump()) if body.filters else None
    history = tuple(Turn(t.role, t.content) for t in body.history)
    results = service.searcher.search(body.question, body.top_k, history=history, filters=filters)
    return SearchResponse(
        question=body.question, results=[EvidenceOut(**e.as_json()) for e in results]
    )
