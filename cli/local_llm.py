"""Starting the prepared local LLM for a command (``nenqa serve --llm local``, ``nenqa eval``)."""

from __future__ import annotations

import signal
from contextlib import ExitStack

from cli.console import console, fail
from nenqa.settings import Settings


def start_local_llm(
    stack: ExitStack, settings: Settings, *, sigterm_exit_code: int = 0
) -> Settings:
    """Start the prepared local model until ``stack`` closes; the settings that point at it."""
    from nenqa.models.llm_prep import LocalLLMError
    from nenqa.models.llm_server import local_llm

    # uvicorn re-raises a SIGTERM after its graceful shutdown; exiting through SystemExit
    # (instead of the default handler's immediate death) lets ``stack`` stop the model.
    # ``nenqa serve`` stopped this way exits 0; a terminated eval exits 143.
    def exit_through_stack(signum: int, frame: object) -> None:
        raise SystemExit(sigterm_exit_code)

    signal.signal(signal.SIGTERM, exit_through_stack)
    console.print("starting the local LLM (llama.cpp on 127.0.0.1; up to a minute) ...")
    try:
        server, local = stack.enter_context(local_llm(settings))
    except LocalLLMError as error:
        fail(str(error))
    console.print(
        f"local LLM {local.llm_model} at {server.base_url} (pid {server.pid}; "
        f"log {server.log_path})",
        highlight=False,
        soft_wrap=True,
    )
    return local
