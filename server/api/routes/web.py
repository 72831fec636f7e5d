"""The chat page (``GET /``) and the embeddable widget script (``GET /widget.js``).

The widget's two files (``WIDGET_PARTS``) are served as one script. Both routes' bodies are
read once at import and served with an ``ETag``: a conditional request answers 304. The widget
may be cached by host pages for five minutes, the page is always revalidated.
Neither route is part of the OpenAPI schema, which documents only the ``/v1`` API.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

WIDGET_MAX_AGE_S = 300
# The page loads only its own script and talks only to its own origin.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class StaticAsset:
    """A file served as it is, with its media type and the headers that go with it."""

    body: bytes
    media_type: str
    etag: str
    headers: dict[str, str]

    def response(self, request: Request) -> Response:
        """The file, or an empty 304 when the client's ``If-None-Match`` holds its ETag."""
        headers = {"ETag": self.etag, **self.headers}
        if_none_match = request.headers.get("if-none-match", "")
        if self.etag in {tag.strip() for tag in if_none_match.split(",")} or if_none_match == "*":
            return Response(status_code=304, headers=headers)
        # For HEAD the server (uvicorn) sends the headers and drops the body.
        return Response(self.body, media_type=self.media_type, headers=headers)


def read_static(name: str) -> bytes:
    """The bytes of ``server/static/<name>``."""
    path = STATIC_DIR / name
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{path} is missing; it ships with the package (reinstall or restore it from git)"
        ) from error


def static_asset(body: bytes, media_type: str, headers: dict[str, str]) -> StaticAsset:
    """``body`` served as it is; its ETag is a hash of the bytes, so it changes with them."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return StaticAsset(body, media_type, etag, {"X-Content-Type-Options": "nosniff", **headers})


CHAT_PAGE = static_asset(
    read_static("index.html"),
    "text/html; charset=utf-8",
    {"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_CSP},
)
# The widget is two files, its drawing of answers first, served as one script inside one
# function: a host page still embeds one tag, and neither file adds a global to it.
WIDGET_PARTS = ("widget_render.js", "widget.js")
WIDGET_BODY = b"(() => {\n" + b"\n".join(read_static(p) for p in WIDGET_PARTS) + b"})();\n"
WIDGET_SCRIPT = static_asset(
    WIDGET_BODY,
    "text/javascript; charset=utf-8",
    {
        "Cache-Control": f"public, max-age={WIDGET_MAX_AGE_S}",
        # Host pages on other origins load it with a plain <script> tag.
        "Cross-Origin-Resource-Policy": "cross-origin",
    },
)

router = APIRouter(tags=["web"])


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
def chat_page(request: Request) -> Response:
    """The full-page chat, which runs the same widget script."""
    return CHAT_PAGE.response(request)


@router.api_route("/widget.js", methods=["GET", "HEAD"], include_in_schema=False)
def widget_script(request: Request) -> Response:
    """The embeddable chat widget (see docs/widget.md)."""
    return WIDGET_SCRIPT.response(request)
