"""Elapsed time as every layer reports it: milliseconds from a ``time.perf_counter()`` reading."""

from __future__ import annotations

import time


def elapsed_ms(started: float, ended: float | None = None, *, digits: int = 2) -> float:
    """Milliseconds from ``started`` to ``ended`` (or now), rounded to ``digits`` decimals."""
    return round(((ended if ended is not None else time.perf_counter()) - started) * 1000, digits)
