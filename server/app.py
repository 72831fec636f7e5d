"""The FastAPI application: ``create_app(settings)`` wires routes, errors, keys, limits, CORS.

The index and the model load once, in a background thread started by the lifespan, so
``/healthz`` answers at once and ``/readyz`` says 503 until ``load_service`` has finished;
routes that need the service answer 503 (with ``Retry-After``) until then. A Chroma server
that is not answering yet is waited for (``server.state.load_when_reachable``), so the API and
the server can start in either order. Tests, embedders and ``server.prefork`` (which loads once
before forking its workers) can pass a ready ``service`` (or a ``searcher`` and a
``chat_model`` to load one around).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from langchain_core.language_models import BaseChatModel

from nenqa.settings import Settings, get_settings
from retriever.search import HybridSearcher
from server.api.deps import api_dependencies
from server.api.routes import admin, chat, completions, health, references, search, trials, web
from server.errors import install_error_handlers
from server.generations import GenerationWatcher
from server.security import APIKeyCheck, BodySizeLimit, RateLimiter, install_cors
from server.state import ServiceState, load_when_reachable

log = logging.getLogger("nenqa.server")

DESCRIPTION = """\
Evidence-grounded answers about drug trials in neuroendocrine neoplasms, from one review
(中国癌症杂志 2022;32(9):757-764), in Chinese or English.

Citations are always the review's own reference numbers `[1]`-`[50]`; evidence the review prints
without a reference marker is cited by its section, `[§section]`, never with a number. When the
review does not answer a question, the answer says so (`abstained: true`) and cites nothing.
"""


def create_app(
    settings: Settings | None = None,
    *,
    service: ServiceState | None = None,
    searcher: HybridSearcher | None = None,
    chat_model: BaseChatModel | None = None,
    load_on_startup: bool = True,
) -> FastAPI:
    """The nenqa API for ``settings`` (default: the environment's ``NENQA_*``).

    With ``load_on_startup=False`` nothing is loaded; the caller sets ``app.state.service``.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.service is None and load_on_startup:
            threading.Thread(
                target=_load,
                args=(app, settings, searcher, chat_model),
                name="nenqa-load",
                daemon=True,
            ).start()
        watcher = None
        if settings.generation_poll_s > 0:  # a change by another process reaches this one
            watcher = GenerationWatcher(app, settings.generation_poll_s)
            watcher.start()
        yield
        if watcher is not None:
            watcher.stop()

    app = FastAPI(
        title="nenqa",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.load_error = None
    app.state.load_waiting = None
    app.state.api_keys = APIKeyCheck(settings.api_keys)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(web.router)  # GET / (chat page) and GET /widget.js
    app.include_router(admin.router)  # /admin: documents, behind admin keys
    dependencies = api_dependencies(app.state.api_keys.enabled)
    for module in (chat, completions, search, references, trials):
        app.include_router(module.router, prefix="/v1", dependencies=dependencies)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_cors(app, settings.cors_origins)  # outermost: errors carry CORS headers too
    return app


def _load(
    app: FastAPI,
    settings: Settings,
    searcher: HybridSearcher | None,
    chat_model: BaseChatModel | None,
) -> None:
    def waiting(problem: str | None) -> None:  # /readyz reports it; the log says it once
        if problem is not None and app.state.load_waiting is None:
            log.warning(problem)
        app.state.load_waiting = problem

    try:
        app.state.service = load_when_reachable(
            settings, waiting, searcher=searcher, chat_model=chat_model
        )
        log.info("nenqa ready in %.1f s", app.state.service.load_seconds)
    except Exception as error:  # reported by /readyz and every route's 503
        log.exception("nenqa failed to load")
        app.state.load_error = f"{type(error).__name__}: {error}"


def app_from_environment() -> FastAPI:
    """For ``uvicorn --factory server.app:app_from_environment``."""
    return create_app(get_settings())
