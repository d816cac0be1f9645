"""API keys: write endpoints need one of `FOLEY_API_KEYS`; reads need one only when
`FOLEY_READ_REQUIRES_KEY` is set.

A key comes in the `X-API-Key` header or as `Authorization: Bearer <key>`. No key: 401.
A key that is not in the set: 403. With no keys configured (the development default) every
endpoint is open, and the API logs a warning at start-up.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from core.config import Settings
from search.api.deps import FoleyDep

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="one of the keys in FOLEY_API_KEYS"
)
bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")

HeaderKey = Annotated[str | None, Security(api_key_header)]
BearerKey = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def check_key(settings: Settings, presented: str | None) -> None:
    keys = settings.api_key_set
    if not keys:
        return
    if not presented:
        raise HTTPException(
            401,
            "this endpoint needs an API key: send it in the X-API-Key header "
            "or as Authorization: Bearer <key>",
            headers={"WWW-Authenticate": 'Bearer realm="foley"'},
        )
    # Compare against every key in constant time, so timing does not reveal a prefix.
    matches = [hmac.compare_digest(presented.encode(), key.encode()) for key in keys]
    if not any(matches):
        raise HTTPException(403, "the API key is not one this server accepts")


def presented_key(header: str | None, token: HTTPAuthorizationCredentials | None) -> str | None:
    if header:
        return header
    return token.credentials if token is not None else None


async def require_write_key(foley: FoleyDep, header: HeaderKey, token: BearerKey) -> None:
    check_key(foley.settings, presented_key(header, token))


async def require_read_key(foley: FoleyDep, header: HeaderKey, token: BearerKey) -> None:
    if foley.settings.read_requires_key:
        check_key(foley.settings, presented_key(header, token))


# Both are `async def` (a comparison of a few strings): no trip through the thread pool.
WriteAccess = Depends(require_write_key)
ReadAccess = Depends(require_read_key)
