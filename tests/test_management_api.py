"""The management API against a real MLflow registry (SQLite), the control database and the audit log:
listings, metrics, promotion requests with and without approval, four eyes, rollback, retraining
without Dagster, validation naming the field, and every route x role."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from control_support import add_version, registry_copy, template_registry
from fastapi.testclient import TestClient

from tracseq_dagster.control.api import ControlPlane, create_app
from tracseq_dagster.control.audit import ParquetAuditLog
from tracseq_dagster.control.database import open_engine
from tracseq_dagster.control.promotions import PromotionRequests
from tracseq_dagster.control.roles import ROLES
from tracseq_dagster.control.tokens import TokenStore
from tracseq_dagster.models import catalog
from tracseq_dagster.registry import ModelRegistry

MODEL = "sample_quality"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template_registry(tmp_path_factory.mktemp("mlflow-template"))


class World:
    def __init__(self, template: Path, folder: Path, **plane: object) -> None:
        self.client = registry_copy(template, folder)
        self.v1 = add_version(self.client, MODEL, folder, gate="promote", metrics={"holdout_score": 0.81, "log_loss": 0.42})
        self.v2 = add_version(self.client, MODEL, folder, gate="promote", metrics={"holdout_score": 0.86, "log_loss": 0.37})
        self.v3 = add_version(self.client, MODEL, folder, gate="reject", metrics={"holdout_score": 0.70})
        self.registry = ModelRegistry(self.client, MODEL)
        self.registry.promote(self.v1, "first model")
        engine = open_engine(f"sqlite:///{folder / 'control.db'}")
        self.tokens = TokenStore(engine)
        self.secret = {role: self.tokens.create(f"{role}-token", role, created_by="test") for role in ROLES}
        self.secret["approver2"] = self.tokens.create("second-approver", "approver", created_by="test")
        self.audit = ParquetAuditLog(folder / "audit")
        self.plane = ControlPlane(
            tokens=self.tokens, audit=self.audit, requests=PromotionRequests(engine), mlflow=lambda: self.client, **plane
        )  # type: ignore[arg-type]
        self.http = TestClient(create_app(self.plane))

    def call(self, method: str, path: str, role: str | None, body: object = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.secret[role]}"} if role else {}
        return self.http.request(method, path, headers=headers, json=body)

    def champion(self) -> str:
        return str(self.registry.version("champion").version)  # type: ignore[union-attr]


@pytest.fixture
def world(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.delenv("TRACSEQ_APPROVAL_REQUIRED", raising=False)
    return World(template, tmp_path)


def test_models_listing_and_version_metrics(world: World) -> None:
    listing = {m["name"]: m for m in world.call("GET", "/models", "viewer").json()}
    assert set(listing) == set(catalog())
    quality = listing[MODEL]
    assert (quality["champion"], quality["challenger"]) == (world.v1, world.v3)
    assert [v["version"] for v in quality["versions"]] == [world.v1, world.v2, world.v3]
    assert quality["versions"][1]["metrics"] == {"holdout_score": 0.86, "log_loss": 0.37}
    assert quality["versions"][0]["aliases"] == ["champion"] and quality["versions"][2]["gate_decision"] == "reject"
    assert listing["turnaround_hours"]["versions"] == [] and listing["turnaround_hours"]["champion"] is None
    one = world.call("GET", f"/models/{MODEL}/versions/{world.v2}/metrics", "viewer").json()
    assert one["metrics"]["holdout_score"] == 0.86 and one["gate_decision"] == "promote"
    assert world.call("GET", f"/models/{MODEL}/versions/99/metrics", "viewer").status_code == 404
    bad = world.call("GET", f"/models/{MODEL}/versions/abc/metrics", "viewer")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "version"]
    unknown = world.call("GET", "/models/no_such_model", "viewer")
    assert unknown.status_code == 404 and "sample_quality" in unknown.json()["detail"]


def test_a_promotion_waits_for_another_approver_when_the_policy_asks(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACSEQ_APPROVAL_REQUIRED", MODEL)
    world = World(template, tmp_path)
    assert world.call("GET", f"/models/{MODEL}", "viewer").json()["approval_required"] is True
    refused = world.call("POST", f"/models/{MODEL}/promotions", "operator", {"version": int(world.v3), "reason": "try"})
    assert refused.status_code == 409 and "did not pass the promotion gate" in refused.json()["detail"]
    assert (
        world.call("POST", f"/models/{MODEL}/promotions", "operator", {"version": int(world.v1), "reason": "x"}).status_code
        == 409
    )  # champion
    made = world.call("POST", f"/models/{MODEL}/promotions", "admin", {"version": int(world.v2), "reason": "better log loss"})
    assert made.status_code == 201 and made.json()["status"] == "pending" and world.champion() == world.v1
    request_id = made.json()["id"]
    again = world.call("POST", f"/models/{MODEL}/promotions", "operator", {"version": int(world.v2), "reason": "again"})
    assert again.status_code == 409 and "pending" in again.json()["detail"]
    own = world.call("POST", f"/promotions/{request_id}/approve", "admin", {"reason": "mine"})
    assert own.status_code == 403 and "four eyes" in own.json()["detail"] and world.champion() == world.v1
    approved = world.call("POST", f"/promotions/{request_id}/approve", "approver", {"reason": "checked the slices"})
    assert (
        approved.status_code == 200
        and approved.json()["status"] == "approved"
        and approved.json()["decided_by"] == "approver-token"
    )
    assert world.champion() == world.v2
    twice = world.call("POST", f"/promotions/{request_id}/approve", "approver2", {"reason": "late"})
    assert twice.status_code == 409 and "approved" in twice.json()["detail"]
    back = world.call(
        "POST", f"/models/{MODEL}/promotions", "operator", {"version": int(world.v1), "reason": "v1 was steadier"}
    ).json()
    rejected = world.call("POST", f"/promotions/{back['id']}/reject", "approver", {"reason": "no evidence"})
    assert rejected.json()["status"] == "rejected" and world.champion() == world.v2
    assert [p["status"] for p in world.call("GET", "/promotions", "viewer").json()] == ["approved", "rejected"]
    assert world.call("GET", "/promotions?status=pending", "viewer").json() == []
    history = world.registry.history()[-1]
    assert history.version == world.v2 and f"promotion request {request_id}" in history.reason
    audit = [(e.actor, e.action, e.version, e.outcome) for e in world.audit.entries()]
    assert audit == [
        ("operator-token", "promotion.request", world.v3, "refused"),
        ("operator-token", "promotion.request", world.v1, "refused"),
        ("admin-token", "promotion.request", world.v2, "pending"),
        ("operator-token", "promotion.request", world.v2, "refused"),
        ("admin-token", "promotion.approve", world.v2, "refused"),
        ("approver-token", "promotion.approve", world.v2, "promoted"),
        ("operator-token", "promotion.request", world.v1, "pending"),
        ("approver-token", "promotion.reject", world.v1, "rejected"),
    ]
    assert [e["action"] for e in world.call("GET", "/audit?action=promotion.approve", "admin").json()] == [
        "promotion.approve"
    ] * 2


def test_without_an_approval_policy_a_request_promotes_at_once_and_rolls_back(world: World) -> None:
    made = world.call("POST", f"/models/{MODEL}/promotions", "operator", {"version": int(world.v2), "reason": "better"})
    assert made.status_code == 201 and made.json()["status"] == "promoted" and world.champion() == world.v2
    back = world.call("POST", f"/models/{MODEL}/rollback", "operator", {"reason": "complaints from the lab"})
    assert back.status_code == 200 and back.json()["champion"] == world.v1 and back.json()["previous"] == world.v2
    assert world.champion() == world.v1
    nowhere = world.call("POST", f"/models/{MODEL}/rollback", "operator", {"reason": "again"})
    assert nowhere.status_code == 409 and "no previous champion" in nowhere.json()["detail"]
    assert [(e.action, e.outcome) for e in world.audit.entries()][-3:] == [
        ("promotion.promote", "promoted"),
        ("rollback", "ok"),
        ("rollback", "refused"),
    ]


def test_retraining_without_a_dagster_webserver_is_an_honest_503(world: World) -> None:
    answer = world.call("POST", f"/models/{MODEL}/retrain", "operator", {"reason": "drift"})
    assert answer.status_code == 503 and "TRACSEQ_DAGSTER_URL" in answer.json()["detail"]
    wrong = world.call("POST", f"/models/{MODEL}/retrain", "operator", {"reason": "drift", "families": ["nope"]})
    assert (
        wrong.status_code == 422
        and wrong.json()["detail"][0]["loc"] == ["body", "families"]
        and "nope" in wrong.json()["detail"][0]["msg"]
    )
    [entry] = world.audit.entries(action="retrain")
    assert entry.outcome == "unavailable" and entry.actor == "operator-token"
    world.plane.dagster_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    refused = world.call("POST", f"/models/{MODEL}/retrain", "operator", {"reason": "drift"})
    assert refused.status_code == 503 and "cannot be reached" in refused.json()["detail"]


def test_every_body_is_validated_naming_the_field(world: World) -> None:
    path = f"/models/{MODEL}/promotions"
    for body, field in (({"version": 2}, "reason"), ({"reason": "x"}, "version"), ({"version": 0, "reason": "x"}, "version"),
                        ({"version": 2, "reason": ""}, "reason"), ({"version": 2, "reason": "x", "extra": 1}, "extra")):  # fmt: skip
        answer = world.call("POST", path, "operator", body)
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", field], body
    garbled = world.http.post(
        path,
        content=b"{not json",
        headers={"Authorization": f"Bearer {world.secret['operator']}", "content-type": "application/json"},
    )
    assert garbled.status_code == 422 and garbled.json()["detail"][0]["type"] == "json_invalid"
    assert world.call("POST", "/promotions/0/approve", "approver", {"reason": "x"}).json()["detail"][0]["loc"] == [
        "path",
        "request_id",
    ]
    assert world.call("POST", "/promotions/999/approve", "approver", {"reason": "x"}).status_code == 404
    assert world.call("GET", "/features", "viewer").status_code == 503  # no Feast repository configured here


#: Every route: (method, template, path called, body, roles allowed, the allowed answer's status in this world).
ROUTES = [
    ("GET", "/models", "/models", None, set(ROLES), 200),
    ("GET", "/models/{name}", f"/models/{MODEL}", None, set(ROLES), 200),
    ("GET", "/models/{name}/versions/{version}/metrics", f"/models/{MODEL}/versions/1/metrics", None, set(ROLES), 200),
    ("POST", "/models/{name}/retrain", f"/models/{MODEL}/retrain", {"reason": "r"}, {"operator", "admin"}, 503),
    (
        "POST",
        "/models/{name}/promotions",
        f"/models/{MODEL}/promotions",
        {"version": 3, "reason": "r"},
        {"operator", "admin"},
        409,
    ),
    ("POST", "/models/{name}/rollback", f"/models/{MODEL}/rollback", {"reason": "r"}, {"operator", "admin"}, 409),
    ("GET", "/promotions", "/promotions", None, set(ROLES), 200),
    ("GET", "/promotions/{request_id}", "/promotions/1", None, set(ROLES), 404),
    ("POST", "/promotions/{request_id}/approve", "/promotions/1/approve", {"reason": "r"}, {"approver", "admin"}, 404),
    ("POST", "/promotions/{request_id}/reject", "/promotions/1/reject", {"reason": "r"}, {"approver", "admin"}, 404),
    ("GET", "/deployments", "/deployments", None, set(ROLES), 200),
    (
        "POST",
        "/deployments/{deployment}/rollback",
        f"/deployments/{MODEL}:1/rollback",
        {"reason": "r"},
        {"operator", "admin"},
        409,
    ),
    ("GET", "/audit", "/audit", None, {"admin"}, 200),
    ("GET", "/features", "/features", None, set(ROLES), 503),
    ("GET", "/features/{name}/stats", "/features/purity_score/stats", None, set(ROLES), 503),
    (
        "POST",
        "/features/online",
        "/features/online",
        {"features": "sample_quality", "entities": [{"sample_id": "TS-2025-000001"}]},
        set(ROLES),
        503,
    ),
    (
        "POST",
        "/features/historical",
        "/features/historical",
        {"features": "sample_quality", "entities": [{"sample_id": "TS-2025-000001"}]},
        set(ROLES),
        503,
    ),
]


def test_every_route_by_every_role(world: World) -> None:
    documented = {(m.upper(), p) for p, item in world.http.get("/openapi.json").json()["paths"].items() for m in item}
    assert documented - {("GET", "/healthz")} == {(m, t) for m, t, *_ in ROUTES}  # a new route must join this table
    for method, _, path, body, allowed, status in ROUTES:
        assert world.call(method, path, None, body).status_code == 401, (method, path)
        for role in ROLES:
            answer = world.call(method, path, role, body)
            expected = status if role in allowed else 403
            assert answer.status_code == expected, (method, path, role, answer.text)
    assert world.http.get("/healthz").status_code == 200 and world.http.get("/openapi.json").status_code == 200


def test_deployments_show_the_champion_moves_and_roll_back_the_current_one(world: World) -> None:
    world.call("POST", f"/models/{MODEL}/promotions", "operator", {"version": int(world.v2), "reason": "better"})
    listing = world.call("GET", "/deployments", "viewer").json()
    assert listing["prediction_service"].startswith("not configured")
    quality = next(d for d in listing["deployments"] if d["model"] == MODEL)
    assert quality["current"]["id"] == f"{MODEL}:2" and quality["current"]["version"] == world.v2
    assert [(h["id"], h["action"], h["version"]) for h in quality["history"]] == [
        (f"{MODEL}:2", "promote", world.v2),
        (f"{MODEL}:1", "promote", world.v1),
    ]
    old = world.call("POST", f"/deployments/{MODEL}:1/rollback", "operator", {"reason": "x"})
    assert old.status_code == 409 and "not the current one" in old.json()["detail"]
    assert world.call("POST", f"/deployments/{MODEL}:9/rollback", "operator", {"reason": "x"}).status_code == 404
    assert world.call("POST", "/deployments/nope:1/rollback", "operator", {"reason": "x"}).status_code == 404
    assert world.call("POST", "/deployments/garbage/rollback", "operator", {"reason": "x"}).json()["detail"][0]["loc"] == [
        "path",
        "deployment",
    ]
    back = world.call("POST", f"/deployments/{MODEL}:2/rollback", "operator", {"reason": "alarms in the lab"})
    assert back.status_code == 200 and back.json() == {
        **back.json(),
        "champion": world.v1,
        "previous": world.v2,
        "deployment": f"{MODEL}:3",
    }
    assert world.champion() == world.v1 and world.audit.entries(action="rollback")[-1].actor == "operator-token"


def test_in_service_compares_the_champion_with_what_the_prediction_service_serves(world: World) -> None:
    from tracseq_dagster.control.deployments import model_deployments, served_versions

    # The shape of the prediction service's GET /models (ServedCatalog.listing).
    answer = {"models": [{"name": MODEL, "versions": [{"version": world.v1, "alias": "champion"}, {"version": world.v3, "alias": "challenger"}]}],
              "not_served": ["turnaround_hours"]}  # fmt: skip
    served = served_versions(answer)
    assert served == {MODEL: {"champion": world.v1, "challenger": world.v3}}
    assert model_deployments(world.registry, served)["in_service"] is True
    world.registry.promote(world.v2, "newer")
    lagging = model_deployments(world.registry, served)
    assert (
        lagging["in_service"] is False and lagging["served"]["champion"] == world.v1 and lagging["current"]["version"] == world.v2
    )
    assert "in_service" not in model_deployments(world.registry, None)


def test_a_registry_that_does_not_answer_is_a_503_naming_it(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    world = World(template, tmp_path)
    down = MlflowClient(tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")  # nothing listens there
    world.plane.__dict__["client"] = down  # the plane's cached client, as if the server had gone away
    for method, path, body in (("GET", "/models", None), ("GET", f"/models/{MODEL}/versions/1/metrics", None),
                               ("POST", f"/models/{MODEL}/rollback", {"reason": "r"}), ("GET", "/deployments", None),
                               ("POST", f"/deployments/{MODEL}:1/rollback", {"reason": "r"})):  # fmt: skip
        answer = world.call(method, path, "admin", body)
        assert answer.status_code == 503 and "MLFLOW_TRACKING_URI" in answer.json()["detail"], (path, answer.text)
