"""The error responses each route documents in the OpenAPI schema (see ``server/errors.py``)."""

from __future__ import annotations

from typing import Any

from server.schemas import ErrorResponse

_DESCRIPTIONS = {
    400: "The request body is not valid JSON.",
    401: "An API key is required (when the server has keys) and was missing or wrong.",
    404: "No such reference number or trial.",
    413: "The request body is larger than the limit (64 KB by default).",
    422: "A field breaks the request schema; `detail` names each field and what is wrong.",
    429: "Too many requests for this API key; retry after `Retry-After` seconds.",
    502: "The LLM endpoint failed while answering (llm mode).",
    503: "The index and model are still loading, or the index or answer mode is unavailable.",
    504: "The LLM endpoint did not answer within the server's timeout (llm mode).",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "string"},
    }
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the given status codes with the error body schema."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
        if code in {429, 503}:
            entry["headers"] = _RETRY_AFTER
        responses[code] = entry
    return responses


# Every /v1 route: the key check, the rate limit and the loading state.
COMMON = (401, 429, 503)
POST_BODY = (400, 413, 422)
# Routes with path or query parameters.
PARAMETERS = (422,)
