"""A Chroma server (``chroma run``) as a child process on loopback, for the server-mode tests.

The server is the ``chroma`` command that the ``chromadb`` package installs next to the
interpreter. ``stop()`` ends it by its PID and ``start()`` brings it back on the same port and
path, which is how the fault tests take it away and return it under a running API.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.browser_support import ProcessStartError, free_port, stop_process

CHROMA = Path(sys.executable).parent / "chroma"


@dataclass
class ChromaServer:
    """``chroma run --path path --host 127.0.0.1 --port port``; its output goes to ``log_path``."""

    path: Path
    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the Chroma server is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server (again) and wait for its heartbeat; raises ``ProcessStartError``."""
        if self.running:
            return
        command = [
            str(CHROMA), "run", "--path", str(self.path),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise ProcessStartError(f"chroma run exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise ProcessStartError(f"chroma run not up after {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL); the data under ``path`` stays."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)  # a paused process cannot exit
            stop_process(self.process)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its port and accepts connections but answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def chroma_missing_reason() -> str | None:
    """Why a Chroma server cannot be started here, or None."""
    if not os.access(CHROMA, os.X_OK):
        return f"{CHROMA} is missing: the chromadb package installs it (make install)"
    return None


def start_chroma_server(work_dir: Path) -> ChromaServer:
    """A Chroma server over ``work_dir/db`` on a free loopback port, started and answering."""
    server = ChromaServer(work_dir / "db", free_port(), work_dir / "chroma.log")
    server.start()
    return server
