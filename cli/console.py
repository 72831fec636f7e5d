"""The terminal of every ``nenqa`` command: messages on stderr, results on stdout."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and end the command with exit status ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
