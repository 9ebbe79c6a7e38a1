"""Rate limiting per token, as a reusable ASGI middleware answering 429 with ``Retry-After``.

The counting is the ``limits`` library's moving window (exact: no burst of twice the rate at a
window's edge), through its asyncio API so a Redis round trip never blocks the event loop.
With a Redis URL the counters live in Redis (``limits``' own Lua scripts, keys under the
project's prefix), shared by every worker and replica, so the limit is per token and not per
process; without, in the process's memory.

Who is counted: the token's name that :class:`~tracseq_dagster.control.auth_middleware.RoleAuthMiddleware`
put on the request (so wrap this middleware *inside* the auth middleware), else the client's
address. Probes and metrics are never limited.

When the counters cannot be reached (Redis down), the request goes on uncounted and a warning is
logged once per outage: a limit protects the service, it must not turn an answer into a 500.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter

from tracseq_dagster.control.auth_middleware import OPEN_PATHS, principal_of
from tracseq_dagster.serving.http_answers import send_json

log = logging.getLogger(__name__)


def _storage(redis_url: str | None, key_prefix: str):  # type: ignore[no-untyped-def]
    if redis_url is None:
        from limits.aio.storage import MemoryStorage

        return MemoryStorage()
    from limits.aio.storage import RedisStorage

    scheme, rest = redis_url.split("://", 1)
    return RedisStorage(f"async+{scheme}://{rest}", implementation="redispy", key_prefix=key_prefix)


class RateLimitMiddleware:
    def __init__(
        self, app: Any, limit: str, *, redis_url: str | None = None, key_prefix: str = "tracseq:ratelimit",
        open_paths: frozenset[str] = OPEN_PATHS,
    ) -> None:  # fmt: skip
        self.app = app
        self.items: list[RateLimitItem] = parse_many(limit)
        self.limiter = MovingWindowRateLimiter(_storage(redis_url, key_prefix))
        self.open_paths = open_paths
        self.limit = limit
        #: Requests let through uncounted because the counters could not be reached.
        self.uncounted = 0

    def _who(self, scope: dict[str, Any]) -> str:
        principal = principal_of(scope)
        if principal is not None:
            return f"token:{principal.name}"
        client = scope.get("client") or ("unknown", 0)
        return f"address:{client[0]}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "") in self.open_paths:
            await self.app(scope, receive, send)
            return
        who = self._who(scope)
        try:
            exceeded = await self._exceeded(who)
        except Exception as error:  # the counters' store is down: serve uncounted
            if self.uncounted == 0:
                log.warning("rate limit not applied: its counters cannot be reached (%s); requests go on uncounted", error)
            self.uncounted += 1
            exceeded = None
        else:
            self.uncounted = 0
        if exceeded is not None:
            item, retry = exceeded
            message = f"rate limit of {item} exceeded for {who}: retry in {retry} s"
            await send_json(send, 429, {"error": message}, [(b"retry-after", str(retry).encode())])
            return
        await self.app(scope, receive, send)

    async def _exceeded(self, who: str) -> tuple[RateLimitItem, int] | None:
        """The first limit ``who`` is over, with the seconds until it may try again; None if within all."""
        for item in self.items:
            if not await self.limiter.hit(item, who):
                stats = await self.limiter.get_window_stats(item, who)
                return item, max(1, math.ceil(stats.reset_time - time.time()))
        return None
