"""``nenqa serve --workers N``: the service loads once, then N forked workers serve one socket.

uvicorn's own ``workers=N`` spawns fresh interpreters, each importing torch and loading the
model, its tokenizer, jieba's dictionary and the searcher again: about 1 GiB private per worker
at 100k chunks. Here the parent binds the socket, loads the whole service once
(``load_for_workers``), freezes what it loaded out of the garbage collector's walks
(``gc.freeze``: a collection in a worker then never writes to those objects' pages), and forks
the workers; their pages stay shared until a worker writes to them. Each worker
(``prepare_worker``) opens its own connection to the Chroma server, sets its torch threads and
runs a ``uvicorn.Server`` over the inherited socket; its app starts its own generation watcher
(threads do not survive a fork), so each worker still swaps to a new generation by itself.

Hazards, and how they are kept away:
- torch's OpenMP thread pool: a worker whose parent ran the model on more than one thread
  hangs at its first inference. The parent loads (and embeds any new sentences) on one
  thread, which starts no pool; each worker sets ``Settings.torch_threads`` after the fork.
- threads in the parent: only the forking thread survives a fork, and a lock another thread
  held stays locked. The parent serves nothing and starts no thread; tqdm's monitor thread,
  which loading the model's weights would start, is turned off before the load.
- connections: a Chroma client made in the parent would share its pooled socket with every
  worker; each worker forgets chromadb's cached client and opens its own.
- signals: SIGINT or SIGTERM to the parent stops every worker (SIGKILL after
  ``STOP_TIMEOUT_S``); a worker that dies is reported and replaced by a new fork of the loaded
  service, unless it died within ``START_GRACE_S`` of its start, which would only repeat; a
  worker whose parent is gone stops (``stop_when_orphaned``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn

from nenqa.settings import Settings
from retriever.embeddings import ChromaEmbeddingFunction, set_torch_threads
from retriever.search import HybridSearcher
from retriever.store import ChunkStore, IndexUnavailableError, IndexUnreachableError
from server.app import create_app
from server.state import LOAD_RETRY_S, ServiceState, load_when_reachable

log = logging.getLogger("uvicorn.error")  # uvicorn's own supervisors log here too

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_TIMEOUT_S = 30.0  # a worker still finishing its requests after this is killed
START_GRACE_S = 10.0  # a worker dying sooner after its start would die again if restarted
POLL_S = 0.2  # how often the parent looks for a worker that has exited
ORPHAN_CHECK_S = 1.0  # how often a worker checks that the parent is still there


def serve_workers(
    settings: Settings, *, workers: int, host: str, port: int, log_level: str = "info"
) -> int:
    """Bind ``host:port``, load the service once, fork ``workers`` workers serving it and
    supervise them until SIGINT or SIGTERM; returns the exit code (0 after a signal, 1 when the
    service cannot load or a worker dies at its start)."""
    if not settings.chroma_url:
        raise ValueError("forked workers need a Chroma server (NENQA_CHROMA_URL)")
    # A config for uvicorn's logging and its socket binding; each worker makes its own.
    config = uvicorn.Config(app=create_app, host=host, port=port, log_level=log_level)
    listening = config.bind_socket()  # refused connections, not a hang, until a worker listens
    try:
        log.info("loading the index and the model once for %d workers", workers)
        try:
            service = load_for_workers(settings)
        except Exception as error:  # no worker could serve without it
            expected = isinstance(error, IndexUnavailableError)  # the message says what to do
            log.error("cannot load the service: %s", error, exc_info=not expected)
            return 1
        log.info("loaded in %.1f s; forking %d workers", service.load_seconds, workers)

        parent = os.getpid()

        def run_worker() -> int:
            prepare_worker(service)
            app = create_app(settings, service=service)
            server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
            stop_when_orphaned(server, parent)
            server.run(sockets=[listening])
            return 0 if server.started else 3  # 3: uvicorn's code for a failed start

        return Supervisor(run_worker, workers).run()
    finally:
        listening.close()


def load_for_workers(settings: Settings) -> ServiceState:
    """The whole service, loaded in the parent so that every forked worker shares it: on one
    torch thread (any inference here, such as embedding a new generation's sentences, then
    starts no thread pool that a worker would hang on), waiting for a Chroma server that is not
    up yet; without tqdm's monitor thread. The service keeps ``settings`` as given."""
    waited: list[str] = []

    def waiting(problem: str | None) -> None:
        if problem is not None and not waited:
            log.warning(problem)
            waited.append(problem)

    _no_progress_monitor()
    service = load_when_reachable(settings.model_copy(update={"torch_threads": 1}), waiting)
    set_torch_threads(1)
    service.settings = settings
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:  # each would be missing in every worker, with any lock it held locked
        log.warning("threads running in the parent before the fork: %s", ", ".join(others))
    return service


def prepare_worker(service: ServiceState) -> None:
    """What a freshly forked worker does before serving ``service``: its own torch threads and
    its own Chroma connection."""
    # The parent's tokenizer may have used its thread pool; the child must not (and need not
    # say so in a warning on every worker's first question).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_torch_threads(service.settings.torch_threads)
    own_connection(service.searcher)


def own_connection(searcher: HybridSearcher) -> None:
    """Give ``searcher``, in a forked process, a Chroma client of its own (tried again while
    the server does not answer)."""
    from chromadb.api.shared_system_client import SharedSystemClient

    # chromadb hands every client of one server the same cached system, whose HTTP session
    # (and pooled socket) came from the parent: forget it so this process opens its own.
    SharedSystemClient.clear_system_cache()
    store = searcher.store
    while True:
        try:
            searcher.store = ChunkStore(
                store.settings, ChromaEmbeddingFunction(searcher.embedder), store.model_id
            )
            return
        except IndexUnreachableError as error:
            log.warning("worker %d waiting for the index: %s", os.getpid(), error)
            time.sleep(LOAD_RETRY_S)


def stop_when_orphaned(server: uvicorn.Server, parent: int) -> None:
    """Shut ``server`` down once the process that forked this worker is gone (killed, say,
    by the out-of-memory killer): an orphan would keep the port, and ``nenqa serve`` could
    not start again until it was found and stopped."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        log.warning("worker %d: the server process %d is gone; stopping", os.getpid(), parent)
        server.should_exit = True

    threading.Thread(target=watch, name="nenqa-parent-watch", daemon=True).start()


@dataclass
class Supervisor:
    """The parent's side: ``count`` forked workers, each running ``run_worker`` (its exit
    code), kept running until SIGINT or SIGTERM."""

    run_worker: Callable[[], int]
    count: int
    started: dict[int, float] = field(default_factory=dict)  # PID -> monotonic start time
    stopping: bool = False
    failed: bool = False
    _kill_at: float = 0.0

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self.stop) for sig in STOP_SIGNALS}
        try:
            gc.freeze()  # what is loaded now is shared; collections in workers skip it
            for _ in range(self.count):
                self.fork()
            log.info("workers %s serving (parent %d)", sorted(self.started), os.getpid())
            while self.started:
                self._reap()
                if self.stopping and time.monotonic() > self._kill_at:
                    for pid in self.started:
                        log.warning("worker %d did not stop; killing it", pid)
                        _signal(pid, signal.SIGKILL)
                    self._kill_at = float("inf")
                time.sleep(POLL_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else 0

    def fork(self) -> int | None:
        """Start one worker; its PID (``None`` once stopping)."""
        if self.stopping:
            return None
        # Blocked across the fork: a stop signal arriving in between would otherwise run the
        # parent's handler in the child, or reach the parent before it knows the new PID.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own to shut down
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                code = self.run_worker()
            except BaseException:  # a worker never returns into the parent's code
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.started[pid] = time.monotonic()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid

    def stop(self, signum: int | None = None, frame: object = None) -> None:
        """Ask every worker to finish its requests and stop (the handler of SIGINT/SIGTERM)."""
        if not self.stopping:
            self.stopping = True
            self._kill_at = time.monotonic() + STOP_TIMEOUT_S
        for pid in self.started:
            _signal(pid, signal.SIGTERM)

    def _reap(self) -> None:
        for pid in list(self.started):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone all the same
                done, status = pid, 0
            if not done:
                continue
            lived = time.monotonic() - self.started.pop(pid)
            if self.stopping:
                continue
            log.error("worker %d %s after %.0f s", pid, _ended(status), lived)
            if lived < START_GRACE_S:
                log.error("a worker that dies at its start would die again: stopping")
                self.failed = True
                self.stop()
            else:
                log.warning("worker %d started in its place", self.fork())


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _no_progress_monitor() -> None:
    # tqdm's monitor thread (which the model's "Loading weights" bar would start) would not
    # survive the fork, and could hold tqdm's lock when it happens; 0 is tqdm's "no monitor".
    from tqdm import tqdm

    tqdm.monitor_interval = 0
