"""The real thing: a dagster-daemon process picks a dropped export up on its own.

Starts `dagster-daemon run` on the code location with a SQLite instance, drops an export
into the landing folder and waits for the sensor's run and the automation's
sample_features run, reading both back from the instance.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tracseq_dagster.generator import generate_exports
from tracseq_dagster.lake import Lake

pytestmark = pytest.mark.slow

DEADLINE_S = 240


def _wait_for(predicate, what: str, daemon: subprocess.Popen, log: Path):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert daemon.poll() is None, f"daemon exited:\n{log.read_text()[-3000:]}"
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def test_daemon_sensor_picks_up_a_dropped_export_and_automation_builds_features(tmp_path: Path) -> None:
    home, landing, lake_dir = tmp_path / "dagster_home", tmp_path / "landing", tmp_path / "lake"
    home.mkdir()
    landing.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TRACSEQ_LANDING_URL": str(landing),
        "TRACSEQ_LAKE_DIR": str(lake_dir),
        "TRACSEQ_SENSOR_INTERVAL_S": "3",
    }
    log = tmp_path / "daemon.log"
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    bin_dir = Path(sys.executable).parent
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        (export,) = generate_exports(500, "csv", tmp_path / "outbox", seed=21, messy=True)
        (landing / "arrived.csv.part").write_bytes(export.read_bytes())  # still being copied
        time.sleep(8)
        (landing / "arrived.csv.part").rename(landing / "arrived.csv")

        with dg.DagsterInstance.from_config(str(home)) as instance:
            ingest_run = _wait_for(
                lambda: next(
                    (r for r in instance.get_runs() if r.job_name == "ingest_lab_export" and r.is_finished), None
                ),
                "the sensor's ingest run",
                daemon,
                log,
            )
            assert ingest_run.is_success, log.read_text()[-3000:]
            assert ingest_run.tags["dagster/sensor_name"] == "lab_export_sensor"
            assert ingest_run.tags["tracseq/source_path"] == str(landing / "arrived.csv")
            assert len([r for r in instance.get_runs() if r.job_name == "ingest_lab_export"]) == 1

            features = _wait_for(
                lambda: instance.get_latest_materialization_event(dg.AssetKey("sample_features")),
                "sample_features from declarative automation",
                daemon,
                log,
            )
            assert features.asset_materialization.metadata["dagster/row_count"].value == 500
        assert len(Lake(lake_dir).read_features()) == 500
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
