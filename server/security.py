"""API keys, the per-key rate limit, CORS for widget origins and the request body size limit.

- Keys (``NENQA_API_KEYS``, a comma list): when set, every ``/v1`` request needs one, as
  ``Authorization: Bearer <key>`` (what OpenAI clients send) or ``X-API-Key: <key>``.
- Rate limit (``NENQA_RATE_LIMIT_PER_MINUTE``): a token bucket per key, or per client address
  when no keys are configured; an empty bucket answers 429 with ``Retry-After`` in seconds.
- CORS (``NENQA_CORS_ORIGINS``): only the listed origins may call the API from a browser.
- Body size (``NENQA_MAX_BODY_BYTES``): a larger body is refused with 413 before it is parsed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import RateLimitedError, UnauthorizedError, error_body


class APIKeyCheck:
    """Accepts a request carrying one of the configured keys (compared in constant time)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def verify(self, bearer: str | None, header_key: str | None) -> str:
        """The accepted key; raises ``UnauthorizedError`` saying what is missing or wrong."""
        presented = header_key or bearer
        if not presented:
            raise UnauthorizedError(
                "this server needs an API key: send 'Authorization: Bearer <key>' "
                "or 'X-API-Key: <key>'"
            )
        digest = hashlib.sha256(presented.encode()).digest()
        if not any(hmac.compare_digest(digest, known) for known in self._digests):
            raise UnauthorizedError("the API key is not valid for this server")
        return presented


class RateLimiter:
    """A token bucket per client key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int, *, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def check(self, client: str) -> None:
        """Take one request from ``client``'s bucket; raises ``RateLimitedError`` if empty."""
        if not self.enabled:
            return
        rate = self.per_minute / 60.0
        now = self._clock()
        key = hashlib.sha256(client.encode()).hexdigest()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                retry_after = max(1, math.ceil((1.0 - tokens) / rate))
                raise RateLimitedError(
                    f"rate limit of {self.per_minute} requests per minute reached; "
                    f"retry in {retry_after} s",
                    retry_after,
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:  # forget idle clients
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 120}


def install_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Allow the listed widget origins to call the API from browsers (none: CORS off)."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        # The widget reads Retry-After to say when to try again after a 429 or 503.
        expose_headers=["Retry-After"],
        max_age=600,
    )


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with a JSON 413.

    Checks ``Content-Length`` first, then counts the bytes that actually arrive (chunked
    bodies), buffering at most ``max_bytes`` before the app sees the body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS", "DELETE"}:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        detail = f"the request body is larger than the limit of {self.max_bytes} bytes"
        body = json.dumps(error_body(detail, 413)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
