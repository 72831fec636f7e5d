"""Every worker serves the index's newest generation (``retriever.generation``).

A ``GenerationWatcher`` thread per server process reads the index's published generation every
``Settings.generation_poll_s`` seconds; when it differs from the one the loaded service holds,
``serve_current_generation`` builds a new service over the current chunks (the embedding model
and the sentences already embedded are reused) and swaps it in with one assignment. A request
takes the service once, at its start, so it answers from one generation throughout; requests
that started before the swap finish on the old one. After a swap the C allocator is asked to give
back the pages the writer's work and the old generation freed (``release_freed_memory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
from functools import cache

from fastapi import FastAPI

from retriever.store import IndexUnavailableError
from server.state import ServiceState, reload_service

log = logging.getLogger("nenqa.generations")

# One swap at a time per process: the watcher and an admin change may both ask for one.
_swap_lock = threading.Lock()


def serve_current_generation(app: FastAPI) -> ServiceState | None:
    """Swap in a service over the index's current generation unless the loaded one holds it;
    returns the service now served (``None`` before the first load)."""
    with _swap_lock:
        service: ServiceState | None = app.state.service
        if service is None:
            return None
        latest = service.searcher.store.generation()
        if latest == service.searcher.generation:
            return service
        fresh = reload_service(service)
        app.state.service = fresh
        del service
        release_freed_memory()
        log.info(
            "now serving generation %d (%s): %d chunks, loaded in %.1f s",
            fresh.searcher.generation.number,
            fresh.searcher.generation.fingerprint,
            len(fresh.searcher),
            fresh.load_seconds,
        )
        return fresh


def release_freed_memory() -> bool:
    """Give the pages glibc keeps after frees back to the system (``malloc_trim``); whether any
    were. Without it a worker's private memory grew with each corpus change, to 516 MiB after
    44 changes at 100k chunks, though its live objects did not (docs/benchmarks.md, issue 15).
    False where the C library has no ``malloc_trim`` (musl, macOS): nothing to do there."""
    trim = _malloc_trim()
    if trim is None:
        return False
    gc.collect()  # the old generation's reference cycles, so their memory is free to give back
    return bool(trim(0))


@cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class GenerationWatcher:
    """A daemon thread keeping ``app`` on the index's newest generation."""

    def __init__(self, app: FastAPI, poll_s: float) -> None:
        self.app = app
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nenqa-generations", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                serve_current_generation(self.app)
            except IndexUnavailableError as error:  # /readyz reports it; try again next time
                if not self._failing:
                    log.warning("cannot check the index for a new generation: %s", error)
                self._failing = True
            except Exception:  # the old service keeps answering; try again next time
                if not self._failing:
                    log.exception("loading the index's new generation failed")
                self._failing = True
            else:
                self._failing = False
