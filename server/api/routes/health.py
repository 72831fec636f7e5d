"""``GET /healthz`` (the process is up) and ``GET /readyz`` (index and model loaded)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="The process is up")
def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="The index and model are loaded",
    responses={503: {"model": ReadyResponse, "description": "still loading, or failed"}},
)
def readyz(request: Request) -> ReadyResponse | JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is None:
        problem = getattr(request.app.state, "load_error", None)
        body = ReadyResponse(status="failed" if problem else "loading", detail=problem)
        return JSONResponse(body.model_dump(), status_code=503)
    return ReadyResponse(
        status="ready",
        chunks=len(service.searcher.chunks),
        sentences=len(service.bank),
        references=len(service.references),
        trials=len(service.trials),
        modes=sorted(service.answerers),
        load_seconds=service.load_seconds,
    )
