"""``GET /healthz`` (the process is up) and ``GET /readyz`` (index and model loaded).

``/readyz`` asks the index for its size on every call, so with a Chroma server it turns 503
(``unavailable``) while the server is down and 200 again once it answers.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from retriever.store import IndexUnavailableError
from server.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, summary="The process is up")
def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="The index and model are loaded",
    responses={
        503: {"model": ReadyResponse, "description": "still loading, failed, or index unavailable"}
    },
)
def readyz(request: Request) -> ReadyResponse | JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is None:
        problem = getattr(request.app.state, "load_error", None)
        waiting = getattr(request.app.state, "load_waiting", None)
        body = ReadyResponse(
            status="failed" if problem else "loading",
            detail=problem or waiting,
            worker_pid=os.getpid(),
        )
        return JSONResponse(body.model_dump(), status_code=503)
    try:
        service.searcher.store.count()
    except IndexUnavailableError as error:
        body = ReadyResponse(status="unavailable", detail=str(error), worker_pid=os.getpid())
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    return ReadyResponse(
        status="ready",
        chunks=len(service.searcher),
        renderings=service.searcher.twin_count,
        sentences=len(service.bank),
        references=len(service.references),
        trials=len(service.trials),
        modes=sorted(service.answerers),
        load_seconds=service.load_seconds,
        worker_pid=os.getpid(),
        generation=service.searcher.generation.number,
        fingerprint=service.searcher.generation.fingerprint,
    )
