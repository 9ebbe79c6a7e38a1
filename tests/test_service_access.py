"""The prediction service and /ask choose their access control from TRACSEQ_SERVICE_AUTH: the
management API's roles and rate limits, the shared token of the first release, or none."""

from __future__ import annotations

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
from tracseq_dagster.control.service_access import service_auth_mode, service_middlewares
from tracseq_dagster.control.tokens import TokenStore
from tracseq_dagster.serving.auth import BearerTokenMiddleware
from tracseq_dagster.settings import ConfigurationError


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TRACSEQ_SERVICE_AUTH", "TRACSEQ_API_TOKEN", "TRACSEQ_RATE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRACSEQ_CONTROL_DB", f"sqlite:///{tmp_path / 'control.db'}")


def test_unset_keeps_what_the_services_did_before_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (service_auth_mode(), service_middlewares()) == ("off", [])
    monkeypatch.setenv("TRACSEQ_API_TOKEN", "s3cret")
    assert service_auth_mode() == "token"
    assert [m for m, _ in service_middlewares()] == [BearerTokenMiddleware]


def test_roles_put_authentication_outside_the_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACSEQ_SERVICE_AUTH", "roles")
    assert [m for m, _ in service_middlewares()] == [RoleAuthMiddleware]
    monkeypatch.setenv("TRACSEQ_RATE_LIMIT", "5/second")
    assert [m for m, _ in service_middlewares()] == [RoleAuthMiddleware, RateLimitMiddleware]


@pytest.mark.parametrize(
    ("value", "token", "words"),
    [("sometimes", None, "is not one of roles, token, off"), ("token", None, "needs TRACSEQ_API_TOKEN")],
)
def test_a_wrong_setting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, value: str, token: str | None, words: str) -> None:
    monkeypatch.setenv("TRACSEQ_SERVICE_AUTH", value)
    with pytest.raises(ConfigurationError, match=words):
        service_auth_mode()


@pytest.mark.anyio
async def test_with_roles_a_viewer_reads_but_only_a_predictor_predicts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The middlewares as the Bento stacks them (outermost first), around routes of the prediction service."""
    monkeypatch.setenv("TRACSEQ_SERVICE_AUTH", "roles")

    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app: object = Starlette(
        routes=[Route("/models", answer), Route("/models/{name}/predict", answer, methods=["POST"]), Route("/readyz", answer)]
    )
    for middleware, options in reversed(service_middlewares()):
        app = middleware(app, **options)
    store = TokenStore(open_engine(f"sqlite:///{tmp_path / 'control.db'}"))
    viewer, predictor = store.create("dash", "viewer", created_by="t"), store.create("lims", "predictor", created_by="t")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:  # type: ignore[arg-type]

        async def status(method: str, path: str, token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return (await client.request(method, path, headers=headers, json={})).status_code

        assert await status("GET", "/readyz", None) == 200  # probes stay open
        assert await status("POST", "/models/sample_quality/predict", None) == 401
        assert await status("GET", "/models", viewer) == 200
        assert await status("POST", "/models/sample_quality/predict", viewer) == 403
        assert await status("POST", "/models/sample_quality/predict", predictor) == 200
