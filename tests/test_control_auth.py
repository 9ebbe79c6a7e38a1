"""Tokens stored hashed (SQLite file and PostgreSQL), the role policy, and the reusable ASGI middleware."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tracseq_dagster.control.auth_middleware import RoleAuthMiddleware
from tracseq_dagster.control.database import open_engine
from tracseq_dagster.control.roles import ROLES, Authorizer, UnknownRole
from tracseq_dagster.control.tokens import TokenError, TokenStore, digest


def _store_checks(store: TokenStore) -> None:
    secret = store.create("lims", "predictor", created_by="test")
    principal = store.authenticate(secret)
    assert principal is not None and (principal.name, principal.role) == ("lims", "predictor")
    assert store.authenticate(secret + "x") is None
    assert store.authenticate("not-a-token") is None
    with pytest.raises(TokenError, match="exists already"):
        store.create("lims", "viewer", created_by="test")
    with pytest.raises(UnknownRole, match="viewer, predictor"):
        store.create("bob", "superuser", created_by="test")
    store.revoke("lims")
    assert store.authenticate(secret) is None  # the revocation cleared this process's cache
    with pytest.raises(TokenError, match="no active token"):
        store.revoke("lims")
    [info] = store.list()
    assert info.revoked_at is not None and info.role == "predictor"


def test_tokens_in_a_sqlite_file_are_stored_hashed(tmp_path: Path) -> None:
    store = TokenStore(open_engine(f"sqlite:///{tmp_path / 'control.db'}"))
    secret = store.create("alice", "approver", created_by="test")
    raw = (tmp_path / "control.db").read_bytes()
    assert secret.encode() not in raw and secret[4:].encode() not in raw
    rows = sqlite3.connect(tmp_path / "control.db").execute("select name, role, digest from tracseq_tokens").fetchall()
    assert rows == [("alice", "approver", digest(secret))]
    store.revoke("alice")
    _store_checks(store_without(store, "alice"))


def store_without(store: TokenStore, name: str) -> TokenStore:
    """The same database without the token ``name`` (so the shared checks start from an empty list)."""
    from tracseq_dagster.control.tokens import TOKENS

    with store.engine.begin() as connection:
        connection.execute(TOKENS.delete().where(TOKENS.c.name == name))
    return TokenStore(store.engine)


def test_tokens_in_postgresql(postgres_url: str) -> None:
    _store_checks(TokenStore(open_engine(postgres_url)))


def test_the_role_policy() -> None:
    policy = Authorizer()
    expected = {  # (method, path): the roles allowed
        ("GET", "/models"): set(ROLES),
        ("GET", "/models/sample_quality/versions/3/metrics"): set(ROLES),
        ("POST", "/models/sample_quality/predict"): {"predictor", "admin"},
        ("POST", "/predict"): {"predictor", "admin"},
        ("POST", "/ask"): {"predictor", "admin"},
        ("POST", "/models/sample_quality/rollback"): {"operator", "admin"},
        ("POST", "/models/sample_quality/retrain"): {"operator", "admin"},
        ("POST", "/promotions/4/approve"): {"approver", "admin"},
        ("POST", "/promotions/4/reject"): {"approver", "admin"},
        ("GET", "/audit"): {"admin"},
        ("DELETE", "/models/sample_quality"): {"admin"},
    }
    for _ in ("decided by casbin", "from the decision cache"):
        for (method, path), allowed in expected.items():
            assert {r for r in ROLES if policy.allows(r, method, path)} == allowed, (method, path)


def _app(store: TokenStore) -> RoleAuthMiddleware:
    async def whoami(request: Request) -> JSONResponse:
        principal = request.state.principal
        return JSONResponse({"name": principal.name, "role": principal.role})

    async def probe(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[
        Route("/models", whoami), Route("/models/{name}/rollback", whoami, methods=["POST"]), Route("/healthz", probe),
        Route("/metrics", probe),
    ])  # fmt: skip
    return RoleAuthMiddleware(app, store)


@pytest.mark.anyio
async def test_middleware_answers_401_403_and_lets_probes_through(tmp_path: Path) -> None:
    store = TokenStore(open_engine(f"sqlite:///{tmp_path / 'control.db'}"))
    viewer = store.create("dashboard", "viewer", created_by="test")
    operator = store.create("ops", "operator", created_by="test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(store)), base_url="http://t") as client:
        for path in ("/healthz", "/metrics"):
            assert (await client.get(path)).status_code == 200
        missing = await client.get("/models")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/models", headers={"Authorization": "Bearer tsq_wrong"})).status_code == 401
        assert (await client.get("/models", headers={"Authorization": f"Basic {viewer}"})).status_code == 401
        ok = await client.get("/models", headers={"Authorization": f"Bearer {viewer}"})
        assert ok.status_code == 200 and ok.json() == {"name": "dashboard", "role": "viewer"}
        refused = await client.post("/models/sample_quality/rollback", headers={"Authorization": f"Bearer {viewer}"})
        assert refused.status_code == 403 and "viewer" in refused.json()["error"]
        allowed = await client.post("/models/sample_quality/rollback", headers={"Authorization": f"Bearer {operator}"})
        assert allowed.status_code == 200 and allowed.json()["name"] == "ops"
        store.revoke("ops")
        assert (await client.get("/models", headers={"Authorization": f"Bearer {operator}"})).status_code == 401


@pytest.mark.anyio
async def test_middleware_switched_off_lets_everyone_through_as_anonymous() -> None:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"name": request.state.principal.name})

    app = RoleAuthMiddleware(Starlette(routes=[Route("/models", whoami)]), None, enabled=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/models")).json() == {"name": "anonymous"}


def test_a_lab_policy_file_replaces_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracseq_dagster.control.roles import POLICY

    lab = tmp_path / "policy.csv"
    lab.write_text(POLICY + "\n# the lab lets its QC leads approve\np, viewer, /promotions/:id/approve, ^POST$\n")
    monkeypatch.setenv("TRACSEQ_POLICY_FILE", str(lab))
    assert Authorizer().allows("viewer", "POST", "/promotions/7/approve")
    assert not Authorizer().allows("viewer", "POST", "/promotions/7/reject")
    monkeypatch.delenv("TRACSEQ_POLICY_FILE")
    assert not Authorizer().allows("viewer", "POST", "/promotions/7/approve")
