"""The bounded queue in front of search: past `FOLEY_SEARCH_QUEUE_SIZE` searches in flight,
a new one is answered at once with 503 and Retry-After rather than left to wait behind
the others until every caller times out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, Request

RETRY_AFTER_S = 1


class ServerBusyError(Exception):
    """Too many searches in flight; the client should retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SearchQueue:
    """Counts searches in flight. Only the event loop's thread touches it: no lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_flight = 0
        self.refused = 0

    def state(self) -> dict[str, int]:
        return {"in_flight": self.in_flight, "size": self.size, "refused": self.refused}


async def _search_slot(request: Request) -> AsyncIterator[None]:
    queue: SearchQueue = request.app.state.search_queue
    if queue.in_flight >= queue.size:
        queue.refused += 1
        raise ServerBusyError(
            f"{queue.in_flight} searches are already in flight (FOLEY_SEARCH_QUEUE_SIZE); "
            f"retry in {RETRY_AFTER_S} s"
        )
    queue.in_flight += 1
    try:
        yield
    finally:
        queue.in_flight -= 1


SearchSlot = Depends(_search_slot)
BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {"description": "too many searches in flight; retry after the seconds in Retry-After"}
}
