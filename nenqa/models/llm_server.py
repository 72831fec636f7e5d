"""The prepared local LLM as a loopback server: ``python -m llama_cpp.server`` stopped by PID.

``nenqa serve --llm local`` and ``nenqa eval`` start it themselves (``local_llm``); by hand:
``python -m nenqa.models.llm_server serve [--port N]`` (prepare it first with
``python -m nenqa.models.llm_prep prepare``).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx

from nenqa.models.llm_prep import (
    MODEL_ALIAS,
    MODEL_FILENAME,
    LocalLLMError,
    check_local_llm_ready,
)

if TYPE_CHECKING:
    from nenqa.settings import Settings

# What the llm mode asks of the local model: answers of one to three sentences fit in 256
# tokens (~40 s at 6 tokens/s on 2 cores), and a request may wait behind another for minutes.
LOCAL_MAX_TOKENS = 256
LOCAL_TIMEOUT_S = 600.0


class LocalLLMServerError(LocalLLMError):
    """The llama.cpp server process did not come up, or died while starting."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _temporary_log_path() -> Path:
    fd, name = tempfile.mkstemp(prefix="nenqa-llm-", suffix=".log")
    os.close(fd)
    return Path(name)


class LocalLLMServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 as a context manager, stopped by PID on exit.

    The chat template is the one stored in the GGUF (Qwen2.5's ChatML with its default system
    prompt) unless ``chat_format`` names another. ``base_url`` ends in ``/v1`` and suits the
    ``openai`` client and ``langchain_openai.ChatOpenAI``; the model is served as ``MODEL_ALIAS``.
    The server's stdout/stderr go to ``log_path`` (a temporary file unless given).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        python: Path | None = None,
        port: int | None = None,
        n_ctx: int = 4096,
        n_threads: int = 2,
        chat_format: str | None = None,
        startup_timeout_s: float = 180.0,
        log_path: Path | None = None,
    ) -> None:
        self.model_path = model_path
        self.python = python or Path(sys.executable)
        self.port = port or free_loopback_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.chat_format = chat_format
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or _temporary_log_path()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible root, e.g. ``http://127.0.0.1:8123/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server process id while it runs, else None."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True while the server process started by ``start`` has not exited."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        command = [
            str(self.python),
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads),
            # The server's default (true) computes vocabulary logits for every prompt token and
            # keeps an n_ctx x 151,936 float array; only logprobs need it.
            "--logits_all",
            "false",
        ]
        if self.chat_format:
            command += ["--chat_format", self.chat_format]
        return command

    def start(self) -> Self:
        """Start the process and wait until ``GET /v1/models`` answers 200.

        Raises ``LocalLLMServerError`` (with the log's tail) when the process exits early or does
        not answer within ``startup_timeout_s``; the process is stopped first.
        """
        if not self.model_path.is_file():
            raise LocalLLMServerError(
                f"{self.model_path} does not exist; run `python -m nenqa.models.llm_prep prepare`"
            )
        # Passive OpenMP waits: with spinning threads, decoding on 2 busy cores fell from
        # 4.6 to 0.7 tokens/s. CONFIG_FILE would make llama_cpp.server ignore our arguments.
        env = {k: v for k, v in os.environ.items() if k != "CONFIG_FILE"}
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_terminate_with_parent if sys.platform == "linux" else None,
            )
        try:
            self._wait_until_ready()
        except BaseException:  # Ctrl-C or SIGTERM while waiting: no server left behind
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise LocalLLMServerError(
                    f"llama_cpp.server exited with code {code} while starting:\n{self._log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise LocalLLMServerError(
            f"llama_cpp.server did not answer {self.base_url}/models within "
            f"{self.startup_timeout_s:.0f} s:\n{self._log_tail()}"
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """Send SIGTERM to the server's PID, then SIGKILL after ``grace_s``; wait for it to go."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as error:
            return f"(log {self.log_path} unreadable: {error})"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, so a killed parent leaves no
    server behind (Linux ``prctl(PR_SET_PDEATHSIG)``; the parent is the starting thread)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def local_llm_settings(settings: Settings, base_url: str) -> Settings:
    """``settings`` with the llm mode (and the LLM judge) pointed at a local server.

    The answer length is capped at ``LOCAL_MAX_TOKENS`` and the timeout raised to
    ``LOCAL_TIMEOUT_S``: on 2 cores one answer takes 20-90 s.
    """
    return settings.model_copy(
        update={
            "llm_base_url": base_url,
            "llm_model": MODEL_ALIAS,
            "llm_max_tokens": min(settings.llm_max_tokens, LOCAL_MAX_TOKENS),
            "llm_timeout_s": max(settings.llm_timeout_s, LOCAL_TIMEOUT_S),
        }
    )


@contextmanager
def local_llm(
    settings: Settings, *, log_path: Path | None = None, n_threads: int = 2
) -> Iterator[tuple[LocalLLMServer, Settings]]:
    """Start the prepared local model on a free loopback port; yield it and the settings that
    point the llm mode at it; stop it (by PID) on exit.

    Raises ``LocalLLMError`` when it is not prepared or does not start.
    """
    model_path = check_local_llm_ready(settings.model_cache_dir)
    with LocalLLMServer(model_path, n_threads=n_threads, log_path=log_path) as server:
        yield server, local_llm_settings(settings, server.base_url)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``serve``: run the prepared model on 127.0.0.1 until Ctrl-C or ``kill PID``."""
    from nenqa.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m nenqa.models.llm_server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the model on 127.0.0.1 (OpenAI API)")
    serve.add_argument("--port", type=int, default=None, help="default: a free port")
    serve.add_argument("--n-threads", type=int, default=2)
    serve.add_argument("--n-ctx", type=int, default=4096)
    args = parser.parse_args(argv)

    model_path = get_settings().model_cache_dir / "llm" / MODEL_FILENAME
    server = LocalLLMServer(model_path, port=args.port, n_threads=args.n_threads, n_ctx=args.n_ctx)
    # Ctrl-C or `kill PID` stop the server too (a background job may inherit SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with server:
            print(f"serving {MODEL_ALIAS} at {server.base_url} (pid {server.pid})")
            print(f"log: {server.log_path}")
            print("Ctrl-C to stop", flush=True)
            try:
                while server.is_running():
                    time.sleep(1.0)
            except KeyboardInterrupt:
                return 0
    except LocalLLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"error: the server exited; see {server.log_path}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
