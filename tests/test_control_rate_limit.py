"""Per-token rate limits: 429 with Retry-After, counted per token, shared through Redis between processes' middlewares."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tracseq_dagster.control.auth_middleware import RoleAuthMiddleware
from tracseq_dagster.control.database import open_engine
from tracseq_dagster.control.rate_limit import RateLimitMiddleware
from tracseq_dagster.control.tokens import TokenStore

REDIS_URL = "redis://127.0.0.1:6379/0"


def _service(store: TokenStore, limit: str, redis_url: str | None, prefix: str) -> RoleAuthMiddleware:
    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/models", models), Route("/healthz", models)])
    return RoleAuthMiddleware(RateLimitMiddleware(app, limit, redis_url=redis_url, key_prefix=prefix), store)


async def _statuses(app, token: str, n: int, path: str = "/models") -> list[httpx.Response]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return [await client.get(path, headers={"Authorization": f"Bearer {token}"}) for _ in range(n)]


@pytest.mark.anyio
@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_each_token_gets_its_own_limit_and_a_retry_after(tmp_path: Path, shared: bool) -> None:
    store = TokenStore(open_engine(f"sqlite:///{tmp_path / 'control.db'}"))
    alice, bob = store.create("alice", "viewer", created_by="t"), store.create("bob", "viewer", created_by="t")
    prefix = f"tracseq-test:{uuid.uuid4().hex}"
    redis_url = REDIS_URL if shared else None
    first = _service(store, "3/minute", redis_url, prefix)
    answers = await _statuses(first, alice, 4)
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 60 and "alice" in answers[-1].json()["error"]
    assert [a.status_code for a in await _statuses(first, bob, 3)] == [200, 200, 200]  # bob is counted apart
    assert [a.status_code for a in await _statuses(first, alice, 3, "/healthz")] == [200] * 3  # probes never limited
    second = _service(store, "3/minute", redis_url, prefix)  # another worker or replica
    expected = 429 if shared else 200  # in memory, each process counts alone; Redis shares the count
    assert (await _statuses(second, alice, 1))[0].status_code == expected


@pytest.mark.anyio
async def test_without_a_token_the_address_is_counted() -> None:
    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = RateLimitMiddleware(Starlette(routes=[Route("/models", models)]), "2/second")  # no auth in front: no principal
    assert [a.status_code for a in await _statuses(app, "none", 3)] == [200, 200, 429]


@pytest.mark.anyio
async def test_a_redis_outage_lets_requests_through_uncounted_and_counting_resumes(tmp_path: Path) -> None:
    """The limiter's own Redis goes down: answers stay 200 (never a 500), and once it is back the limit holds again."""
    from degraded_support import RedisServer

    store = TokenStore(open_engine(f"sqlite:///{tmp_path / 'control.db'}"))
    alice = store.create("alice", "viewer", created_by="t")
    redis = RedisServer(tmp_path).start()
    try:
        limited = RateLimitMiddleware(
            Starlette(routes=[Route("/models", lambda request: JSONResponse({"ok": True}))]),
            "2/minute",
            redis_url=redis.url,
            key_prefix=f"tracseq-test:{uuid.uuid4().hex}",
        )
        app = RoleAuthMiddleware(limited, store)
        assert [a.status_code for a in await _statuses(app, alice, 3)] == [200, 200, 429]
        redis.stop()
        assert [a.status_code for a in await _statuses(app, alice, 3)] == [200, 200, 200]
        assert limited.uncounted == 3
        redis.start()
        assert [a.status_code for a in await _statuses(app, alice, 3)] == [200, 200, 429]
        assert limited.uncounted == 0
    finally:
        redis.stop()
