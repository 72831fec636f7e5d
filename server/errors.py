"""The one place where errors become HTTP status codes and JSON bodies.

| error                                  | status |
|----------------------------------------|--------|
| body is not valid JSON                 | 400    |
| missing or wrong API key, no admin key | 401    |
| not an admin key, admin keys not set   | 403    |
| unknown reference number / trial / document, nothing to reindex | 404 |
| document id registered from another path, chunks no document owns | 409 |
| body over the size limit               | 413    |
| a field breaks the request schema      | 422    |
| a document that cannot be ingested, a path outside the data folder | 422 |
| too many requests for this key         | 429 (+ Retry-After) |
| LLM endpoint failed                    | 502    |
| LLM endpoint timed out (``NENQA_LLM_TIMEOUT_S``) | 504 |
| still loading, index missing, mode not configured | 503 (+ Retry-After while loading) |
| Chroma server not answering, index disk full or read-only | 503 (+ Retry-After for the server) |

Every error body is ``{"detail": "<what is wrong>", "error": {"message", "type", "code"},
"errors": [...]?}``: ``detail`` for people, ``error`` as OpenAI clients expect it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from answer.base import AnswerError, LLMEndpointError, LLMTimeoutError
from ingest.corpus import NothingToReindexError, OrphanChunksError, OutsideDataFolderError
from ingest.registry import DocumentConflictError, UnknownDocumentError
from nenqa.errors import IngestError
from retriever.store import IndexUnavailableError, IndexUnreachableError

log = logging.getLogger("nenqa.server")


class QuestionTooLongError(ValueError):
    """The question is longer than the server's configured ``max_question_chars``."""


class NotFoundError(LookupError):
    """A reference number or trial id the review does not have."""


class ServiceNotReadyError(RuntimeError):
    """The index and model are still loading (or failed to load)."""

    def __init__(self, message: str, *, loading: bool) -> None:
        super().__init__(message)
        self.loading = loading


class UnauthorizedError(PermissionError):
    """No key where one is needed (API or admin), or an API key that is not configured."""


class ForbiddenError(PermissionError):
    """A key that is not an admin key, or an admin request while no admin key is set."""


class RateLimitedError(RuntimeError):
    """The key (or client) used up its requests for the current minute."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


_OPENAI_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def error_body(detail: str, status: int, errors: list[dict] | None = None) -> dict:
    """``detail`` for people and FastAPI clients, ``error`` in the shape OpenAI clients read."""
    kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    body: dict = {"detail": detail, "error": {"message": detail, "type": kind, "code": status}}
    if errors is not None:
        body["errors"] = errors
    return body


def describe_validation_errors(errors: list[dict]) -> tuple[str, list[dict]]:
    """One sentence naming each bad field, and the errors as ``{loc, msg, type}``."""
    items = []
    parts = []
    for error in errors:
        loc = [p for p in error.get("loc", ()) if p != "body"]
        where = ".".join(str(p) for p in loc) or "body"
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        items.append({"loc": loc, "msg": message, "type": str(error.get("type", "invalid"))})
        parts.append(f"{where}: {message}")
    return "; ".join(parts), items


# Errors whose message is the whole answer: the status code each maps to.
PLAIN_STATUS: dict[type[Exception], int] = {
    QuestionTooLongError: 422,
    OutsideDataFolderError: 422,
    NotFoundError: 404,
    UnknownDocumentError: 404,
    NothingToReindexError: 404,
    ForbiddenError: 403,
    OrphanChunksError: 409,
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that implement the table in the module docstring."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        json_errors = [e for e in errors if e.get("type") == "json_invalid"]
        if json_errors:
            error = json_errors[0]
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            position = error.get("loc", ("body", 0))[-1]
            detail = f"the request body is not valid JSON: {reason} at character {position}"
            return JSONResponse(error_body(detail, 400), status_code=400)
        detail, items = describe_validation_errors(errors)
        return JSONResponse(error_body(detail, 422, items), status_code=422)

    async def plain(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in PLAIN_STATUS.items() if isinstance(exc, kind))
        return JSONResponse(error_body(str(exc), status), status_code=status)

    for kind in PLAIN_STATUS:
        app.add_exception_handler(kind, plain)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(
            error_body(detail, exc.status_code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(UnauthorizedError)
    async def unauthorized(request: Request, exc: UnauthorizedError) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc), 401), status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(DocumentConflictError)
    async def document_conflict(request: Request, exc: DocumentConflictError) -> JSONResponse:
        detail = f"{exc} (the index was not changed)"
        return JSONResponse(error_body(detail, 409), status_code=409)

    @app.exception_handler(IngestError)
    async def bad_document(request: Request, exc: IngestError) -> JSONResponse:
        detail = f"{exc} (the index was not changed)"  # everything is parsed before a write
        return JSONResponse(error_body(detail, 422), status_code=422)

    @app.exception_handler(RateLimitedError)
    async def rate_limited(request: Request, exc: RateLimitedError) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc), 429),
            status_code=429,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(ServiceNotReadyError)
    async def not_ready(request: Request, exc: ServiceNotReadyError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.loading else None
        return JSONResponse(error_body(str(exc), 503), status_code=503, headers=headers)

    @app.exception_handler(IndexUnavailableError)
    async def index_unavailable(request: Request, exc: IndexUnavailableError) -> JSONResponse:
        # A stopped Chroma server usually comes back; a missing index needs `nenqa ingest`.
        headers = {"Retry-After": "5"} if isinstance(exc, IndexUnreachableError) else None
        return JSONResponse(error_body(str(exc), 503), status_code=503, headers=headers)

    @app.exception_handler(LLMEndpointError)
    async def llm_failed(request: Request, exc: LLMEndpointError) -> JSONResponse:
        status = 504 if isinstance(exc, LLMTimeoutError) else 502
        return JSONResponse(error_body(str(exc), status), status_code=status)

    @app.exception_handler(AnswerError)
    async def answer_unavailable(request: Request, exc: AnswerError) -> JSONResponse:
        return JSONResponse(error_body(str(exc), 503), status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal error; see the server log", 500), status_code=500)
