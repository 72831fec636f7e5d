"""Query embeddings for concurrent requests: a fair queue in front of the model, with batching.

Requests that arrive while every model slot is busy wait in arrival order (a plain semaphore
wakes waiters in any order, which stretched the latency tail) and are embedded a few at a time
in one forward pass. A lone request never waits: with a free slot it runs at once, as a batch
of one. Batching changes a vector only by float rounding (padding is masked out of attention
and pooling; measured max difference 1.3e-7).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

EmbedFn = Callable[[Sequence[str]], np.ndarray]


@dataclass
class _Job:
    texts: list[str]
    vectors: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False
    taken: bool = False


@dataclass
class _Stats:
    calls: int = 0
    texts: int = 0
    largest: int = 0  # jobs in the largest batch


class QueryBatcher:
    """Runs ``embed`` on at most ``slots`` batches at a time, each of up to ``max_texts`` texts.

    A caller whose job has not been taken when a slot frees becomes that batch's leader: it
    takes the oldest waiting jobs (up to ``max_texts`` texts, always at least one job), runs
    the model once without holding the lock, and hands each job its rows. An error in the model
    reaches every caller of that batch.
    """

    def __init__(self, embed: EmbedFn, *, slots: int, max_texts: int = 2) -> None:
        if slots < 1 or max_texts < 1:
            raise ValueError("slots and max_texts must be at least 1")
        self._embed = embed
        self._slots = slots
        self._max_texts = max_texts
        self._busy = 0
        self._waiting: deque[_Job] = deque()
        self._changed = threading.Condition()
        self.stats = _Stats()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        job = _Job(list(texts))
        with self._changed:
            self._waiting.append(job)
            while not job.done:
                if job.taken or self._busy >= self._slots:
                    self._changed.wait()
                    continue
                # Lead the oldest waiting jobs; with many texts queued ahead this batch may
                # not hold our own job yet, and the loop comes back for it.
                batch = self._take_batch()
                self._busy += 1
                self._changed.release()
                try:
                    vectors, error = self._call(batch)
                finally:
                    self._changed.acquire()
                self._hand_out(batch, vectors, error)
        if job.error is not None:
            raise job.error
        assert job.vectors is not None
        return job.vectors

    def _take_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        while self._waiting and (
            not batch or size + len(self._waiting[0].texts) <= self._max_texts
        ):
            job = self._waiting.popleft()
            job.taken = True
            batch.append(job)
            size += len(job.texts)
        return batch

    def _call(self, batch: list[_Job]) -> tuple[np.ndarray | None, BaseException | None]:
        try:
            return self._embed([text for job in batch for text in job.texts]), None
        except BaseException as error:  # handed to every caller of the batch, then re-raised
            return None, error

    def _hand_out(
        self, batch: list[_Job], vectors: np.ndarray | None, error: BaseException | None
    ) -> None:
        """Under the lock: each job its rows (or the error), the slot freed, waiters woken."""
        start = 0
        for job in batch:
            if vectors is not None:
                job.vectors = vectors[start : start + len(job.texts)]
            job.error = error
            job.done = True
            start += len(job.texts)
        self._busy -= 1
        self.stats.calls += 1
        self.stats.texts += start
        self.stats.largest = max(self.stats.largest, len(batch))
        self._changed.notify_all()
