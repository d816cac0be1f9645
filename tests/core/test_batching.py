"""The micro-batcher, with real threads: each caller gets its own result, in order."""

from __future__ import annotations

import threading
import time

import pytest

from core.batching import BatcherClosedError, MicroBatcher


def wait_until(condition, what: str, limit_s: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.005)


def test_concurrent_callers_each_get_their_own_results_in_order() -> None:
    batches: list[list[tuple[int, int]]] = []
    started, release = threading.Event(), threading.Event()

    def run(items: list[tuple[int, int]]) -> list[str]:
        if not batches:
            started.set()
            release.wait()  # hold the first batch so the others pile up behind it
        batches.append(items)
        return [f"caller {c} call {n}" for c, n in items]

    batcher: MicroBatcher[tuple[int, int], str] = MicroBatcher(run, max_batch=64, max_wait_s=0)
    results: dict[int, list[str]] = {}

    def caller(c: int) -> None:
        results[c] = [batcher.submit((c, n)) for n in range(5)]

    first = threading.Thread(target=caller, args=(0,))
    first.start()
    wait_until(started.is_set, "the first batch")
    others = [threading.Thread(target=caller, args=(c,)) for c in range(1, 24)]
    for thread in others:
        thread.start()
    wait_until(lambda: len(batcher._pending) == 23, "23 callers waiting")
    release.set()
    for thread in [first, *others]:
        thread.join()
    batcher.close()

    assert results == {c: [f"caller {c} call {n}" for n in range(5)] for c in range(24)}
    # The 23 callers that waited behind the first batch shared the second one.
    assert set(range(1, 24)) <= {c for c, _ in batches[1]}
    assert sum(len(b) for b in batches) == 24 * 5 == batcher.items
    assert len(batches) == batcher.batches < 24 * 5


def test_a_failed_batch_fails_its_own_callers_only() -> None:
    def run(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("a bad item")
        return [2 * i for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=1, max_wait_s=0)
    with pytest.raises(ValueError, match="a bad item"):
        batcher.submit(-1)
    assert [batcher.submit(i) for i in range(3)] == [0, 2, 4]
    batcher.close()
    with pytest.raises(BatcherClosedError):
        batcher.submit(1)


def test_a_batch_never_exceeds_its_size_and_flush_runs_what_waits() -> None:
    sizes: list[int] = []
    batcher: MicroBatcher[int, int] = MicroBatcher(
        lambda items: sizes.append(len(items)) or items, max_batch=4, max_wait_s=3600
    )
    futures = [batcher.submit_async(i) for i in range(10)]
    wait_until(lambda: sum(sizes) == 8, "two full batches")  # the last 2 wait for more
    batcher.flush()
    assert [f.result() for f in futures] == list(range(10))
    assert sizes == [4, 4, 2]
    batcher.close()


def test_two_workers_run_batches_side_by_side() -> None:
    # The first batch is held until a second batch is running on the other worker: with one
    # worker this would never happen (the test would time out in wait_until).
    running: list[str] = []
    both = threading.Event()
    lock = threading.Lock()

    def run(items: list[int]) -> list[int]:
        with lock:
            running.append(threading.current_thread().name)
            if len(set(running)) == 2:
                both.set()
        both.wait(timeout=60)
        return [i + 1 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(
        run, max_batch=1, max_wait_s=0, name="pair", workers=2
    )
    first = batcher.submit_async(1)
    wait_until(lambda: len(running) == 1, "the first batch")
    second = batcher.submit_async(2)
    wait_until(both.is_set, "a second batch beside the first")
    assert (first.result(), second.result()) == (2, 3)
    assert sorted(set(running)) == ["pair-0", "pair-1"]
    assert (batcher.batches, batcher.items) == (2, 2)
    batcher.close()
    assert not any(t.is_alive() for t in batcher._threads)  # close stops every worker
    with pytest.raises(ValueError, match="workers"):
        MicroBatcher(run, workers=0)
