"""Query embeddings for concurrent requests: a fair queue in front of the model, with batching.

Requests that arrive while every model slot is busy wait in arrival order (a plain semaphore
wakes waiters in any order, which stretched the latency tail) and are embedded a few at a time
in one forward pass. A lone request never waits: with a free slot it runs at once, as a batch
of one. Batching changes a vector only by float rounding (padding is masked out of attention
and pooling; measured max difference 1.3e-7).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


class QueryBatcher:
    """Runs ``embed`` on at most ``slots`` batches at a time, each of up to ``max_texts`` texts.

    A caller whose job has not been taken when a slot frees becomes that batch's leader: it
    takes every waiting job (oldest first, up to ``max_texts`` texts, always at least one
    job), runs the model once, and hands each job its rows. An error in the model reaches every
    caller of that batch.
    """

    def __init__(self, embed: EmbedFn, *, slots: int, max_texts: int = 2) -> None:
        if slots < 1 or max_texts < 1:
            raise ValueError("slots and max_texts must be at least 1")
        self._embed = embed
        self._slots = slots
        self._max_texts = max_texts
        self._busy = 0
        self._waiting: list[_Job] = []
        self._changed = threading.Condition()
        self.stats = _Stats()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        job = _Job(list(texts))
        with self._changed:
            self._waiting.append(job)
            while not job.done:
                if not job.taken and self._busy < self._slots:
                    # Lead the oldest waiting jobs; with many texts queued ahead this batch
                    # may not hold our own job yet, and the loop comes back for it.
                    batch = self._take_batch()
                    self._busy += 1
                    self._changed.release()
                    try:
                        self._run(batch)
                    finally:
                        self._changed.acquire()
                else:
                    self._changed.wait()
        return self._result(job)

    def _take_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        while self._waiting:
            nxt = self._waiting[0]
            if batch and size + len(nxt.texts) > self._max_texts:
                break
            batch.append(self._waiting.pop(0))
            nxt.taken = True
            size += len(nxt.texts)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        texts = [text for job in batch for text in job.texts]
        vectors: np.ndarray | None = None
        error: BaseException | None = None
        try:
            vectors = self._embed(texts)
        except BaseException as caught:  # handed to every caller of the batch, then re-raised
            error = caught
        with self._changed:  # the caller has released it
            start = 0
            for job in batch:
                if vectors is not None:
                    job.vectors = vectors[start : start + len(job.texts)]
                job.error = error
                job.done = True
                start += len(job.texts)
            self._busy -= 1
            self.stats.calls += 1
            self.stats.texts += len(texts)
            self.stats.largest = max(self.stats.largest, len(batch))
            self.stats.sizes[len(batch)] = self.stats.sizes.get(len(batch), 0) + 1
            self._changed.notify_all()

    @staticmethod
    def _result(job: _Job) -> np.ndarray:
        if job.error is not None:
            raise job.error
        assert job.vectors is not None
        return job.vectors
