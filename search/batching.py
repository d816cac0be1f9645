"""Micro-batched text searches: concurrent searches run together on a few worker threads.

`BatchedSearches` hands whole searches to its workers; each takes the searches that arrived
within a few milliseconds of each other and runs them as one batch (`search.pipeline.
find_texts`): one CLAP text pass, one index call, one catalog session, one DiffATR pass per
list length. Each caller still gets the results its search gets alone.

Why whole searches and not only the model calls: on 2 cores with 32 concurrent requests,
batching only the CLAP and DiffATR calls left each request thread to search the index and
read the catalog itself, and the threads spent most of a request waiting for the GIL and for
the model thread. A worker doing all of a batch's work takes the GIL for all of it, and the
API's event loop awaits the result without holding a thread at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from core.batching import MicroBatcher

Request = TypeVar("Request")
Result = TypeVar("Result")


class BatchedSearches(Generic[Request, Result]):
    """`run(requests) -> results` over batches of the requests submitted from many threads or
    from the event loop."""

    def __init__(
        self,
        run: Callable[[list[Request]], Sequence[Result]],
        *,
        max_batch: int,
        max_wait_s: float,
        torch_threads: int | None = None,
        workers: int = 1,
    ) -> None:
        def start() -> None:
            if torch_threads:  # torch's thread count is set per thread that runs its ops
                import torch

                torch.set_num_threads(torch_threads)

        self.batcher: MicroBatcher[Request, Result] = MicroBatcher(
            run,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            name="foley-search-batcher",
            on_start=start,
            workers=workers,
        )

    def search(self, request: Request) -> Result:
        return self.batcher.submit(request)

    async def search_async(self, request: Request) -> Result:
        # No thread waits: a caller that goes away cancels its search if it has not started.
        return await asyncio.wrap_future(self.batcher.submit_async(request))

    def close(self) -> None:
        self.batcher.close()
