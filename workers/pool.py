"""Celery's prefork pool, with pool processes that wait for a task without holding a lock.

On the embedded queue Celery hands tasks to its pool processes through one pipe that they all
read, under a lock shared between processes. billiard's pool process takes that lock and then
blocks reading the pipe until a task comes, so one idle process always holds it. When that
process is killed, the lock stays taken: the other processes and the one that replaces it
never get a task again, and the worker looks alive while every job stays queued. Here a
pool process waits for the pipe to have data before it takes the lock, and reads only while
data is there, so a killed idle process leaves the lock free. (With Redis, Celery gives each
pool process a pipe of its own and this path is not used.)
"""

from __future__ import annotations

from typing import Any

from billiard import pool as billiard_pool
from billiard.common import pickle_loads
from celery.concurrency import prefork


class Worker(billiard_pool.Worker):  # type: ignore[misc]
    def _make_recv_method(self, conn: Any) -> Any:
        reader = getattr(conn, "_reader", None)
        lock = getattr(conn, "_rlock", None)
        if reader is None or lock is None:
            return super()._make_recv_method(conn)

        def receive(timeout: float) -> tuple[bool, Any]:
            if not reader.poll(timeout):
                return False, None
            if not lock.acquire(timeout=timeout):
                return False, None
            try:
                if not reader.poll(0):  # another process took it first
                    return False, None
                return True, pickle_loads(reader.recv_bytes())
            finally:
                lock.release()

        return receive


class BlockingPool(billiard_pool.Pool):  # type: ignore[misc]
    Worker = Worker


class TaskPool(prefork.TaskPool):  # type: ignore[misc]
    BlockingPool = BlockingPool
