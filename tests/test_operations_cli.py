"""``tracseq operations`` (what ``make demo`` runs last): every operations job on a freshly ingested
lab, in order, and the QC report of the latest week's busiest project, without Ollama."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracseq_dagster.cli import app
from tracseq_dagster.lake import Lake
from tracseq_dagster.operations import outputs

pytestmark = pytest.mark.slow


def test_operations_run_every_job_and_write_the_latest_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DAGSTER_HOME", "TRACSEQ_LAKE_DIR", "TRACSEQ_PREDICTION_LOG", "MLFLOW_TRACKING_URI", "TRACSEQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(tmp_path / "data"))
    with socket.socket() as probe:  # Ollama is not running here: the report says so and is complete
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{probe.getsockname()[1]}")
    landing = tmp_path / "landing"
    runner = CliRunner()
    for kind in ("samples", "runs"):
        made = runner.invoke(
            app, ["generate-exports", "--kind", kind, "--rows", "1500", "--files", "1", "--seed", "4", "--out", str(landing)]
        )
        assert made.exit_code == 0, made.output
    assert runner.invoke(app, ["ingest", str(landing)]).exit_code == 0

    result = runner.invoke(app, ["operations"])
    assert result.exit_code == 0, result.output
    for job in ("demand_forecast_job", "storage_state", "lab_alerts_job"):
        assert re.search(rf"{job}: ok \(run \w+; ", result.output), result.output
    lake = Lake(tmp_path / "data" / "lake")
    for name in (outputs.DEMAND_FORECAST, outputs.FREEZER_STATE, outputs.STORAGE_UTILISATION, outputs.ANOMALIES, outputs.ALERTS):
        assert lake.operations_path(name).exists(), name
    html, pdf = re.search(r"QC report \S+ \S+: (\S+\.html) and (\S+\.pdf) \(summary: (\w+)", result.output).groups()[:2]  # type: ignore[union-attr]
    assert Path(html).read_text().count("<h2") >= 5 and Path(pdf).read_bytes().startswith(b"%PDF")
    assert "summary: off" not in result.output  # Ollama was asked, and the report says it is not reachable
