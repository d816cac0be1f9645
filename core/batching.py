"""Micro-batching: many threads' small model calls become one call over a batch.

Callers block in `submit` (or await `submit_async`'s future) while a worker thread runs the
call: it takes whatever is waiting (up to `max_batch` items), gives the first item's
stragglers `max_wait_s` to arrive, runs one call over all of them and hands each caller its
own result. While that call runs, the next requests pile up and form the next batch, so under
load batches grow on their own and the wait only matters when a worker was idle. With one
worker (the default) one batch runs at a time; with `workers=N`, up to N batches run side by
side, each on its own thread (the call must then be safe to run from several threads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosedError(RuntimeError):
    """The batcher was stopped; nothing more is run."""


class MicroBatcher(Generic[T, R]):
    """Run `run(items) -> results` (same length, same order) over batches of submitted items."""

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.002,
        name: str = "batcher",
        on_start: Callable[[], None] | None = None,
        workers: int = 1,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0 or workers < 1:
            raise ValueError("max_batch and workers must be at least 1, max_wait_s at least 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_start = on_start
        self._pending: list[tuple[T, Future[R]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._flush = False
        self.batches = 0  # how many batches ran (and `items`, over how many items)
        self.items = 0
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: T) -> R:
        """The result of `run` for this item, computed in some batch; its exception if it failed."""
        return self.submit_async(item).result()

    def submit_async(self, item: T) -> Future[R]:
        future: Future[R] = Future()
        with self._cond:
            if self._closed:
                raise BatcherClosedError("the batcher is stopped")
            self._pending.append((item, future))
            self._cond.notify()
        return future

    def flush(self) -> None:
        """Run what is waiting now, without waiting for stragglers (a caller that knows no
        one else is coming)."""
        with self._cond:
            self._flush = True
            self._cond.notify_all()

    def close(self, timeout_s: float = 10.0) -> None:
        """Run what is waiting, then stop the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _next_batch(self) -> list[tuple[T, Future[R]]]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            deadline = time.monotonic() + self.max_wait_s
            while len(self._pending) < self.max_batch and not (self._closed or self._flush):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._flush = False
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            return batch

    def _loop(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while True:
            batch = self._next_batch()
            if not batch:
                return  # closed and drained
            # A caller that gave up (cancelled its future) costs nothing.
            live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = self._run([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(live)}")
            except BaseException as exc:  # every caller of this batch sees the failure
                log.debug("a batch of %d failed: %s", len(live), exc)
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            with self._cond:
                self.batches += 1
                self.items += len(live)
            for (_, fut), result in zip(live, results, strict=True):
                fut.set_result(result)
