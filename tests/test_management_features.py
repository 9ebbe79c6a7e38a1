"""The management API's feature routes over a real Feast store (file registry, Redis online store,
materialised from a generated lake): listings, statistics, online features, time travel."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from feast_support import clear_project, materialized_store

from tracseq_dagster.control.api import ControlPlane, create_app
from tracseq_dagster.control.audit import ParquetAuditLog
from tracseq_dagster.control.database import open_engine
from tracseq_dagster.control.promotions import PromotionRequests
from tracseq_dagster.control.tokens import TokenStore


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("features-api")
    lake, settings, store = materialized_store(root, rows=300, seed=5)
    engine = open_engine(f"sqlite:///{root / 'control.db'}")
    tokens = TokenStore(engine)
    secret = tokens.create("dashboard", "viewer", created_by="test")
    plane = ControlPlane(
        tokens=tokens,
        audit=ParquetAuditLog(root / "audit"),
        requests=PromotionRequests(engine),
        mlflow=lambda: None,
        feast=lambda: (store, settings.folder),
    )  # type: ignore[arg-type,return-value]
    client = TestClient(create_app(plane), headers={"Authorization": f"Bearer {secret}"})
    yield client, lake
    clear_project(settings)


def test_listing_and_statistics(api) -> None:  # type: ignore[no-untyped-def]
    client, lake = api
    listing = client.get("/features").json()
    views = {v["name"]: v for v in listing["views"]}
    assert "sample_features" in views and views["sample_features"]["owner"] and views["sample_features"]["versions"]
    assert {s["name"] for s in listing["services"]} >= {"sample_quality", "sequencing_success"}
    stats = client.get("/features/freeze_thaw_cycles/stats").json()
    table = lake.read_features()
    assert stats["count"] == table["freeze_thaw_cycles"].notna().sum() and stats["version"] == "v0"
    assert client.get("/features/freeze_thaw_cycles/stats?version=v0").json()["count"] == stats["count"]
    assert client.get("/features/freeze_thaw_cycles/stats?version=latest").status_code == 422
    ambiguous = client.get("/features/operator_failure_rate/stats")
    assert ambiguous.status_code == 404 and "several views hold" in ambiguous.json()["detail"]


def test_online_and_historical_features(api) -> None:  # type: ignore[no-untyped-def]
    client, lake = api
    table = lake.read_features().set_index("sample_id")
    ids = list(table.index[:20]) + ["TS-2099-999999"]
    rows = client.post(
        "/features/online", json={"features": "sample_quality", "entities": [{"sample_id": i} for i in ids]}
    ).json()
    assert [r["sample_id"] for r in rows] == ids and rows[-1]["purity_score"] is None
    assert rows[0]["purity_score"] == pytest.approx(table.loc[ids[0], "purity_score"])
    history = pd.read_parquet(lake.root / "feast" / "operator_history.parquet")
    operator = history["operator_id"].value_counts().index[0]
    own = history[history["operator_id"] == operator].sort_values("event_timestamp")
    moment = own["event_timestamp"].iloc[len(own) // 2]
    body = {
        "features": ["operator_history:operator_failure_rate"],
        "entities": [{"operator_id": operator}],
        "as_of": moment.isoformat(),
    }
    (row,) = client.post("/features/historical", json=body).json()
    assert row["operator_failure_rate"] == pytest.approx(own["operator_failure_rate"].iloc[len(own) // 2])
    before = {**body, "as_of": (own["event_timestamp"].iloc[0] - pd.Timedelta(days=1)).isoformat()}
    assert client.post("/features/historical", json=before).json()[0]["operator_failure_rate"] is None
    no_time = client.post("/features/historical", json={"features": "sample_quality", "entities": [{"sample_id": ids[0]}]})
    assert no_time.status_code == 422 and "as_of" in no_time.json()["detail"]
    unknown = client.post("/features/online", json={"features": ["no_such_feature"], "entities": [{"sample_id": ids[0]}]})
    assert unknown.status_code == 404
    assert client.post("/features/online", json={"features": "sample_quality", "entities": []}).json()["detail"][0]["loc"] == [
        "body",
        "entities",
    ]
