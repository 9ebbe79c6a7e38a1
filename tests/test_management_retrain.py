"""POST /models/{name}/retrain against a real dagster-webserver on the project's workspace: the
runs are launched through Dagster's GraphQL client with the retraining sensor's tags."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
from conftest import fresh_postgres_database
from dagster_ui import dagster_webserver, write_instance_config
from fastapi.testclient import TestClient

from tracseq_dagster.control.api import ControlPlane, create_app
from tracseq_dagster.control.audit import ParquetAuditLog
from tracseq_dagster.control.database import open_engine
from tracseq_dagster.control.promotions import PromotionRequests
from tracseq_dagster.control.tokens import TokenStore
from tracseq_dagster.models import get_model
from tracseq_dagster.monitoring.retraining import RETRAIN_BATCH_TAG, RETRAIN_MODEL_TAG, RETRAIN_REASON_TAG


@pytest.mark.slow  # starts dagster-webserver on the workspace (a minute or more on a busy machine)
def test_retrain_launches_the_sweeps_on_dagster(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    write_instance_config(home)
    family = get_model("sample_quality").swept_families()[0]
    with fresh_postgres_database() as pg_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACSEQ_", "MLFLOW_", "DAGSTER_"))}
        env |= {"DAGSTER_HOME": str(home), "DAGSTER_PG_URL": pg_url, "TRACSEQ_DATA_DIR": str(tmp_path / "data")}
        with dagster_webserver(env, tmp_path / "webserver.log") as web:
            engine = open_engine(f"sqlite:///{tmp_path / 'control.db'}")
            tokens = TokenStore(engine)
            secret = tokens.create("ops", "operator", created_by="test")
            audit = ParquetAuditLog(tmp_path / "audit")
            plane = ControlPlane(
                tokens=tokens,
                audit=audit,
                requests=PromotionRequests(engine),
                mlflow=lambda: None,  # type: ignore[arg-type,return-value]
                dagster_url=web.url,
            )
            client = TestClient(create_app(plane), headers={"Authorization": f"Bearer {secret}"})
            answer = client.post(
                "/models/sample_quality/retrain", json={"reason": "new labels from the LIMS", "families": [family]}
            )
            assert answer.status_code == 202, answer.text
            launched = answer.json()
            assert launched["families"] == [family] and len(launched["runs"]) == 1
        os.environ["DAGSTER_PG_URL"], previous = pg_url, os.environ.get("DAGSTER_PG_URL")
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                run = instance.get_run_by_id(launched["runs"][0])
        finally:
            os.environ.pop("DAGSTER_PG_URL") if previous is None else os.environ.__setitem__("DAGSTER_PG_URL", previous)
    assert run is not None and run.job_name == "automl_sweep"
    assert run.tags[RETRAIN_BATCH_TAG] == launched["batch"] and run.tags[RETRAIN_MODEL_TAG] == "sample_quality"
    assert run.tags[RETRAIN_REASON_TAG] == "new labels from the LIMS (by ops)"
    assert run.tags["dagster/partition"] == f"{family}|sample_quality"
    [entry] = audit.entries(action="retrain")
    assert entry.outcome == "launched" and entry.actor == "ops"
