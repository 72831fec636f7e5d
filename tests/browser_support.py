"""Processes for the browser tests: the API under uvicorn, a host page on another origin, Chromium.

Everything listens on loopback only. The API server and chromedriver are child processes
stopped by their PID; the host page server is a thread in the test process. Chromium is
Debian's ``/usr/bin/chromium`` driven through ``/usr/bin/chromedriver``
(``scripts/ensure_chromium.sh`` installs both).
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

if TYPE_CHECKING:
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.remote.webdriver import WebDriver

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
# The host page is served from this address, so it is a different origin from the API's.
HOST_PAGE_ADDRESS = "127.0.0.2"


class ProcessStartError(RuntimeError):
    """A helper process did not start; the message includes the end of its log."""


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop one child process by its PID: SIGTERM, then SIGKILL if it has not exited in time."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


def _log_tail(path: Path, chars: int = 4000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return ""


@dataclass
class ApiServer:
    """The nenqa API running under uvicorn on loopback; ``stop()`` ends the process."""

    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        return _log_tail(self.log_path)


def start_api_server(
    env: Mapping[str, str],
    log_dir: Path,
    app_factory: str = "server.app:app_from_environment",
    ready_path: str = "/readyz",
    timeout_s: float = 180.0,
) -> ApiServer:
    """Start ``uvicorn --factory app_factory`` on a free 127.0.0.1 port; wait until it is ready.

    ``env`` is added to this process's environment (settings are ``NENQA_*`` variables).
    Raises ``ProcessStartError`` with the server's log if it exits or is not ready in time.
    """
    port = free_port()
    log_path = log_dir / f"uvicorn-{port}.log"
    command = [
        sys.executable, "-m", "uvicorn", "--factory", app_factory,
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ApiServer(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.running:
            raise ProcessStartError(
                f"uvicorn exited with {process.returncode}:\n{server.log_tail()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + ready_path, timeout=2.0).status_code == 200:
                return server
        time.sleep(0.25)
    server.stop()
    raise ProcessStartError(f"uvicorn not ready after {timeout_s:.0f} s:\n{server.log_tail()}")


HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Partner site</title>
{style}
<script>
  {reset}
  window.__nenqa = {{ requests: [], events: [], updates: [] }};
  const slowMs = {slow_ms};
  const originalFetch = window.fetch;
  // Re-delivers a response body in 48-byte pieces, slowMs apart, like a slow link would
  // (pieces split SSE events and UTF-8 characters); aborting the request errors the body.
  const trickle = (response, signal) => {{
    const reader = response.body.getReader();
    const body = new ReadableStream({{
      start(controller) {{
        if (signal) signal.addEventListener("abort", () => controller.error(signal.reason));
      }},
      async pull(controller) {{
        const {{ value, done }} = await reader.read();
        if (done) return controller.close();
        for (let i = 0; i < value.length; i += 48) {{
          await new Promise((resolve) => setTimeout(resolve, slowMs));
          if (signal && signal.aborted) return;
          controller.enqueue(value.slice(i, i + 48));
        }}
      }},
    }});
    const {{ status, statusText, headers }} = response;
    return new Response(body, {{ status, statusText, headers }});
  }};
  window.fetch = function (resource, init) {{
    window.__nenqa.requests.push({{ url: String(resource), body: (init && init.body) || null }});
    const response = originalFetch.apply(this, arguments);
    return slowMs ? response.then((r) => (r.body ? trickle(r, init && init.signal) : r)) : response;
  }};
  for (const name of ["answer", "error", "open", "close"]) {{
    document.addEventListener("nenqa:" + name, (event) =>
      window.__nenqa.events.push({{ type: name, detail: event.detail }}));
  }}
</script>
</head><body>
<h1>A partner hospital's intranet page</h1>
<p>Text of the host page. <a href="#top">A link before the widget</a></p>
{script_tag}
<script>
  // Records the last assistant message after every DOM change, to see text arrive in pieces.
  const root = document.querySelector("nenqa-chat").shadowRoot;
  new MutationObserver(() => {{
    const bodies = root.querySelectorAll(".msg.assistant .body");
    const last = bodies[bodies.length - 1];
    if (last) window.__nenqa.updates.push(last.textContent);
  }}).observe(root, {{ subtree: true, childList: true, characterData: true }});
</script>
</body></html>
"""


HOSTILE_STYLE = """<style>
  /* Host styles that would wreck the widget if they reached into it. */
  * { color: rgb(255, 0, 0) !important; font-family: serif !important; }
  button { display: none !important; }
  div, p, section { font-size: 40px !important; border: 5px dotted lime !important; }
</style>"""
PLAIN_STYLE = """<style>
  body { margin: 0; padding: 24px 32px; font: 16px/1.6 Georgia, serif; color: #333;
         background: #fafaf7; }
</style>"""


def render_host_page(
    widget_src: str,
    attributes: Mapping[str, str],
    reset_session: bool = False,
    hostile: bool = False,
    slow_ms: int = 0,
) -> str:
    """A third-party page that embeds the widget with one script tag and records what it does.

    ``window.__nenqa`` collects the widget's fetch calls, its ``nenqa:*`` events and the text of
    the last assistant message after each DOM mutation. ``hostile`` adds page CSS that would
    hide and repaint the widget if it were not isolated; ``slow_ms`` > 0 makes every response
    body arrive in small pieces that far apart.
    """
    attrs = "".join(
        f' data-{html.escape(name, quote=True)}="{html.escape(value, quote=True)}"'
        for name, value in attributes.items()
    )
    script_tag = f'<script src="{html.escape(widget_src, quote=True)}"{attrs}></script>'
    reset = "sessionStorage.clear();" if reset_session else ""
    style = HOSTILE_STYLE if hostile else PLAIN_STYLE
    return HOST_PAGE.format(script_tag=script_tag, reset=reset, style=style, slow_ms=int(slow_ms))


@dataclass
class HostPageServer:
    """Serves ``/embed?api=URL&lang=&key=&fresh=1&hostile=1&slow=MS`` from ``HOST_PAGE_ADDRESS``."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    url: str

    def page_url(self, api: str, **params: str) -> str:
        """The host page embedding the widget for ``api``; params: lang key fresh hostile slow."""
        return f"{self.url}/embed?{urlencode({'api': api, **params})}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_host_page_server() -> HostPageServer:
    """Start the host page server on a free port of ``HOST_PAGE_ADDRESS``."""

    class HostPageHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/embed":
                self.send_error(404)
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            api = query.pop("api")
            attributes = {"api": api}
            if "lang" in query:
                attributes["lang"] = query["lang"]
            if "key" in query:
                attributes["api-key"] = query["key"]
            page = render_host_page(
                api + "/widget.js",
                attributes,
                reset_session=query.get("fresh") == "1",
                hostile=query.get("hostile") == "1",
                slow_ms=int(query.get("slow", "0")),
            )
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

    port = free_port(HOST_PAGE_ADDRESS)
    server = ThreadingHTTPServer((HOST_PAGE_ADDRESS, port), HostPageHandler)
    thread = threading.Thread(target=server.serve_forever, name="host-page", daemon=True)
    thread.start()
    return HostPageServer(server, thread, f"http://{HOST_PAGE_ADDRESS}:{port}")


@dataclass
class Browser:
    """A headless Chromium session; ``quit()`` ends it and its processes by PID."""

    driver: WebDriver
    service: Service
    profile_dir: Path
    chromedriver_pid: int
    browser_pids: list[int] = field(default_factory=list)

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()
        with contextlib.suppress(Exception):
            self.service.stop()
        for pid in [*self.browser_pids, self.chromedriver_pid]:
            # Only a leftover of this session: a PID may have been reused once its process ended.
            command_line = _command_line(pid)
            if self.profile_dir.name in command_line or command_line.startswith(str(CHROMEDRIVER)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.profile_dir, ignore_errors=True)


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium and chromedriver exist."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: run scripts/ensure_chromium.sh (Debian chromium packages)"
    return None


def _command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    return ""


def _child_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    with contextlib.suppress(OSError):
        pids = [int(pid) for pid in children.read_text().split()]
        return [descendant for pid in pids for descendant in (pid, *_child_pids(pid))]
    return []


def start_browser(lang: str = "en-US") -> Browser:
    """Start headless Chromium with a fresh profile; ``lang`` is its UI and navigator language."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = chromium_missing_reason()
    if reason:
        raise ProcessStartError(reason)
    profile_dir = Path(tempfile.mkdtemp(prefix="nenqa-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--lang={lang}")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except Exception:
        with contextlib.suppress(Exception):
            service.stop()
        shutil.rmtree(profile_dir, ignore_errors=True)
        raise
    pid = service.process.pid
    return Browser(driver, service, profile_dir, pid, _child_pids(pid))


@contextlib.contextmanager
def running_browser(lang: str = "en-US") -> Iterator[Browser]:
    """``start_browser`` as a context manager that always quits."""
    browser = start_browser(lang)
    try:
        yield browser
    finally:
        browser.quit()
