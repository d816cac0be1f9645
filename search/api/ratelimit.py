"""Rate limits: a budget per API key, or per client address for requests without a valid key.

Three budgets, each its own setting: `search` (text and audio search), `uploads` (uploads
and library scans: work that adds sounds) and `generation` (jobs that run a generative model
on demand: captioning a sound again, and generating sounds). Counts live in memory in the
embedded deployment and in Redis when scaled out, so every API process shares them. Over a
budget: 429 with `Retry-After` (whole seconds until the next request of that budget counts).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import math
import time

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from core.config import Settings
from search.api.security import BearerKey, HeaderKey, presented_key

log = logging.getLogger(__name__)


class Budget(enum.StrEnum):
    search = "search"
    uploads = "uploads"
    generation = "generation"


class RateLimits:
    """The API's limiter: one storage, one set of limits per budget."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits: dict[Budget, list[RateLimitItem]] = {
            budget: parse_many(text)
            for budget, text in (
                (Budget.search, settings.rate_limit_search),
                (Budget.uploads, settings.rate_limit_uploads),
                (Budget.generation, settings.rate_limit_generation),
            )
            if text.strip()
        }
        self.storage: Storage = _storage(settings)
        self.limiter = MovingWindowRateLimiter(self.storage)

    def retry_after(self, budget: Budget, client: str) -> int | None:
        """Count one request of `client` against `budget`: None if allowed, else the seconds
        to wait. A storage that cannot be reached lets the request through (and logs it):
        an outage of the counter must not become an outage of the API."""
        wait: int | None = None
        for item in self.limits.get(budget, []):
            try:
                if self.limiter.hit(item, budget.value, client):
                    continue
                reset = self.limiter.get_window_stats(item, budget.value, client).reset_time
            except Exception:  # redis-py raises its own connection errors
                log.warning("rate-limit storage unavailable; %s request let through", budget)
                return None
            wait = max(wait or 0, max(1, math.ceil(reset - time.time())))
        return wait


def _storage(settings: Settings) -> Storage:
    url = settings.rate_limit_storage_url
    if url.startswith(("redis://", "rediss://")):
        return RedisStorage(url, key_prefix=f"{settings.broker_key_prefix}foley-limits")
    return MemoryStorage()


def client_identity(request: Request, settings: Settings, key: str | None) -> str:
    """Whose budget a request spends: a valid key's (hashed: keys never reach the store), or
    the client address's. An invalid key counts against the address, so inventing keys
    buys no fresh budget."""
    if key:
        for known in settings.api_key_set:
            if hmac.compare_digest(key.encode(), known.encode()):
                return "key:" + hashlib.sha256(known.encode()).hexdigest()[:32]
    host = request.client.host if request.client else "unknown"
    return f"addr:{host}"


def _limit(budget: Budget):  # noqa: ANN202 - a FastAPI dependency factory
    # `async def`: counting in memory takes microseconds, and a plain `def` dependency would
    # cost every request a round trip through the thread pool. Only Redis leaves the loop.
    async def check(request: Request, header: HeaderKey, token: BearerKey) -> None:
        limits: RateLimits = request.app.state.rate_limits
        if not limits.limits.get(budget):
            return  # no limit on this budget: nothing to count
        client = client_identity(request, limits.settings, presented_key(header, token))
        if isinstance(limits.storage, MemoryStorage):
            wait = limits.retry_after(budget, client)
        else:
            wait = await run_in_threadpool(limits.retry_after, budget, client)
        if wait is not None:
            raise HTTPException(
                429,
                f"too many {budget.value} requests; retry in {wait} s "
                f"(limit {limits.settings.rate_limit_for(budget.value)})",
                headers={"Retry-After": str(wait)},
            )

    return check


SearchLimit = Depends(_limit(Budget.search))
UploadLimit = Depends(_limit(Budget.uploads))
# Called directly where a request only sometimes generates (search's generate_if_missing).
spend_generation = _limit(Budget.generation)
GenerationLimit = Depends(spend_generation)
