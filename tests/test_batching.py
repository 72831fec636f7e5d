"""QueryBatcher: concurrent query embeddings share model calls and each caller gets its rows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from server.batching import QueryBatcher


def row(text: str) -> np.ndarray:
    return np.array([len(text), sum(map(ord, text))], dtype=np.float32)


class GatedModel:
    """An embed function whose first call blocks until released; records every batch."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.first_call_started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def __call__(self, texts):
        with self._lock:
            first = not self.batches
            self.batches.append(list(texts))
        if first:
            self.first_call_started.set()
            assert self.release.wait(10)
        if self.fail_on in texts:
            raise RuntimeError(f"model failed on {self.fail_on}")
        return np.stack([row(t) for t in texts])


def wait_for_waiters(batcher: QueryBatcher, count: int) -> None:
    for _ in range(1000):
        with batcher._changed:
            if len(batcher._waiting) >= count:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{count} callers never queued")


def test_a_lone_query_runs_at_once_as_a_batch_of_one():
    model = GatedModel()
    model.release.set()
    batcher = QueryBatcher(model, slots=2)
    vectors = batcher.embed(["依维莫司", "PRRT"])
    np.testing.assert_array_equal(vectors, np.stack([row("依维莫司"), row("PRRT")]))
    assert model.batches == [["依维莫司", "PRRT"]]
    assert (batcher.stats.calls, batcher.stats.texts) == (1, 2)


def test_queries_arriving_while_the_slot_is_busy_share_one_call_and_get_their_own_rows():
    model = GatedModel()
    batcher = QueryBatcher(model, slots=1, max_texts=16)
    questions = [f"question {i} " + "x" * i for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = pool.submit(batcher.embed, [questions[0]])
        assert model.first_call_started.wait(10)
        rest = [pool.submit(batcher.embed, [q]) for q in questions[1:]]
        wait_for_waiters(batcher, 5)
        model.release.set()
        results = [first.result(10), *(f.result(10) for f in rest)]
    for question, vectors in zip(questions, results, strict=True):
        np.testing.assert_array_equal(vectors, row(question)[None, :])
    assert model.batches[0] == [questions[0]]
    assert sorted(model.batches[1]) == sorted(questions[1:])
    assert len(model.batches) == 2
    assert batcher.stats.largest == 5


def test_a_batch_holds_at_most_max_texts_but_a_larger_single_request_still_runs():
    model = GatedModel()
    batcher = QueryBatcher(model, slots=1, max_texts=3)
    with ThreadPoolExecutor(max_workers=5) as pool:
        first = pool.submit(batcher.embed, ["a"])
        assert model.first_call_started.wait(10)
        waiting = [pool.submit(batcher.embed, texts) for texts in (["b", "c"], ["d", "e"])]
        wait_for_waiters(batcher, 2)
        big = pool.submit(batcher.embed, ["f", "g", "h", "i"])
        wait_for_waiters(batcher, 3)
        model.release.set()
        assert first.result(10).shape == (1, 2)
        assert [w.result(10).shape for w in waiting] == [(2, 2), (2, 2)]
        assert big.result(10).shape == (4, 2)
    assert [len(b) for b in model.batches] == [1, 2, 2, 4]


def test_a_model_error_reaches_every_caller_of_its_batch_and_the_batcher_recovers():
    model = GatedModel(fail_on="bad")
    batcher = QueryBatcher(model, slots=1)
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(batcher.embed, ["fine"])
        assert model.first_call_started.wait(10)
        doomed = [pool.submit(batcher.embed, [t]) for t in ("bad", "innocent")]
        wait_for_waiters(batcher, 2)
        model.release.set()
        assert first.result(10).shape == (1, 2)
        for future in doomed:
            with pytest.raises(RuntimeError, match="model failed on bad"):
                future.result(10)
    np.testing.assert_array_equal(batcher.embed(["again"]), row("again")[None, :])


def test_slots_bound_the_concurrent_model_calls():
    running = 0
    most = 0
    lock = threading.Lock()

    def slow(texts):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.02)
        with lock:
            running -= 1
        return np.stack([row(t) for t in texts])

    batcher = QueryBatcher(slow, slots=2, max_texts=4)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: batcher.embed([f"q{i}"]), range(40)))
    assert most == 2
    assert all(r.shape == (1, 2) for r in results)
    assert batcher.stats.texts == 40
    assert batcher.stats.calls < 40  # queued requests were merged


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        QueryBatcher(lambda texts: np.zeros((len(texts), 2)), slots=0)


def test_a_leader_whose_job_is_queued_behind_a_full_batch_runs_that_batch_then_its_own():
    model = GatedModel()
    batcher = QueryBatcher(model, slots=1, max_texts=2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(batcher.embed, ["a"])
        assert model.first_call_started.wait(10)
        early = [pool.submit(batcher.embed, [t]) for t in ("b", "c")]
        wait_for_waiters(batcher, 2)
        late = pool.submit(batcher.embed, ["d"])
        wait_for_waiters(batcher, 3)
        model.release.set()
        results = [first.result(10), *(f.result(10) for f in early), late.result(10)]
    for text, vectors in zip("abcd", results, strict=True):
        np.testing.assert_array_equal(vectors, row(text)[None, :])
    assert model.batches[0] == ["a"]
    assert sorted(model.batches[1]) == ["b", "c"]
    assert model.batches[2] == ["d"]
