"""A failed blocking check explains itself: file, rule, column and the first offending lines.

The blocking check ``accepted_rows_meet_contract`` fails only when something slipped past the
quarantine. Two realistic ways, both provoked here on a real Dagster instance:

* two exports sharing sample ids are accepted at the same moment (two runs in parallel, each
  read the accepted ids before the other wrote its rows): simulated by letting the second run
  see the accepted ids as they were before the first one's rows landed;
* a row rule that lets bad rows through (a defect the GX suite exists to catch): simulated by
  validating without the ``range:storage_temp_c`` rule.

The explanation must reach the check's result, the Dagster step (so the run, whether started
by the sensor, the UI or the CLI, fails with it) and the ``tracseq ingest`` table.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import assets.lab_exports.validation as validation_asset
from tests.test_landing import SensorHarness
from tracseq_dagster.cli import app
from tracseq_dagster.contract_failures import explain_contract_failure, failure_message
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.generator import generate_exports
from tracseq_dagster.ingest import ingest_folder
from tracseq_dagster.lake import Lake
from tracseq_dagster.rules import RULES

CHECK = dg.AssetCheckKey(dg.AssetKey("validated_samples"), "accepted_rows_meet_contract")


def _first_export(folder: Path, rows: int = 30) -> Path:
    (path,) = generate_exports(rows, "csv", folder, seed=7)
    return path


def _resent(original: Path, folder: Path, rows: int = 6) -> Path:
    """A second export re-sending the first rows of ``original`` (same sample ids)."""
    resent = folder / "resent_from_site_b.csv"
    pd.read_csv(original).head(rows).to_csv(resent, index=False)
    return resent


@pytest.fixture
def accepted_at_the_same_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second run read the accepted ids before the first run's rows were written."""
    monkeypatch.setattr(Lake, "accepted_sample_ids", lambda self, exclude_source=None: pd.Index([], dtype=str))


def _failed_check(instance: dg.DagsterInstance, run_id: str):  # type: ignore[no-untyped-def]
    evaluations = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.asset_check_key == CHECK
    ]
    (evaluation,) = evaluations
    assert not evaluation.passed
    return evaluation


def _step_failure(instance: dg.DagsterInstance, run_id: str) -> str:
    (failure,) = [e.dagster_event for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    return failure.step_failure_data.user_failure_data.description


def test_sensor_run_with_ids_accepted_twice_fails_naming_file_rule_column_and_lines(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    original = _first_export(landing)
    defs = build_definitions(lake_dir=str(tmp_path / "lake"), landing_url=str(landing))
    (first,) = ingest_folder(landing, defs=defs, instance=sqlite_instance)
    assert first.status == "ingested" and first.rows_accepted == 30

    # The second export arrives; the sensor launches its run, which races the first one.
    harness = SensorHarness(landing, sqlite_instance)
    harness.tick()
    harness.tick()
    resent = _resent(original, landing)
    harness.tick()
    (request,) = harness.tick().run_requests
    assert request.tags["tracseq/source_path"].endswith(resent.name)
    monkeypatch.setattr(Lake, "accepted_sample_ids", lambda self, exclude_source=None: pd.Index([], dtype=str))
    result = defs.resolve_job_def("ingest_lab_export").execute_in_process(
        instance=sqlite_instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
    )
    assert not result.success

    message = _step_failure(sqlite_instance, result.run_id)
    assert resent.name in message
    assert "rule unique_across_exports:sample_id" in message and "column sample_id" in message
    assert "lines 2, 3, 4, 5, 6 (of 6 rows)" in message
    first_id = pd.read_csv(original)["sample_id"].iloc[0]
    assert f"{first_id} also accepted from {original.name} line 2" in message
    assert "tracseq ingest --force" in message
    assert "blocking asset check failed" not in message

    evaluation = _failed_check(sqlite_instance, result.run_id)
    assert evaluation.description == message
    assert "unique_across_exports:sample_id" in evaluation.metadata["failures"].value

    # The run's own failure event carries it too (what the UI and run-failure sensors show).
    run = sqlite_instance.get_run_by_id(result.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE


def test_a_row_rule_that_lets_bad_rows_through_is_named_with_its_lines(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    export = _first_export(landing, rows=20)
    frame = pd.read_csv(export)
    frame.loc[[3, 11], "storage_temp_c"] = 55.0  # lines 5 and 13 of the file
    frame.to_csv(export, index=False)

    broken_rules = tuple(rule for rule in RULES if rule.name != "range:storage_temp_c")
    real = validation_asset.validate_samples
    monkeypatch.setattr(validation_asset, "validate_samples", lambda *a, **k: real(*a, **k, rules=broken_rules))
    defs = build_definitions(lake_dir=str(tmp_path / "lake"), landing_url=str(landing))
    (outcome,) = ingest_folder(landing, defs=defs, instance=sqlite_instance)

    assert outcome.status == "failed"
    message = outcome.error
    assert export.name in message
    assert "lines 5, 13" in message and "column storage_temp_c" in message and "rule range:storage_temp_c" in message
    assert "storage_temp_c = 55" in message
    assert _failed_check(sqlite_instance, outcome.run_id).description == message


def test_ingest_cli_table_shows_why_the_check_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accepted_at_the_same_moment: None
) -> None:
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    original = _first_export(landing)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(landing), "--lake", str(lake), "--no-features"])
    assert first.exit_code == 0, first.output
    _resent(original, landing)

    second = runner.invoke(app, ["ingest", str(landing), "--lake", str(lake), "--no-features"], terminal_width=400)
    assert second.exit_code == 1, second.output
    output = " ".join(second.output.split())
    assert "resent_from_site_b.csv" in output and "failed" in output
    assert "rule unique_across_exports:sample_id" in output and "column sample_id" in output
    assert "lines 2, 3, 4, 5, 6" in output
    assert "DagsterAssetCheckFailedError" not in output


# -- the explanation itself, without Dagster -------------------------------------------------------
def test_empty_cells_that_broke_an_integer_column_are_located() -> None:
    """The GX type check names no values; the empty cells of the column are the likely cause."""
    accepted = pd.DataFrame(
        {
            "sample_id": ["TS-2025-000001", "TS-2025-000002", "TS-2025-000003"],
            "box_occupancy": [12.0, np.nan, 40.0],
            "_source_file": "export.csv",
            "_row_number": [2, 7, 9],
        }
    )
    result = {
        "rule": "type:box_occupancy",
        "expectation_type": "expect_column_values_to_be_of_type",
        "column": "box_occupancy",
        "success": False,
        "unexpected_count": None,
        "partial_unexpected_list": [],
        "observed_value": "float64",
        "exception": None,
    }
    (failure,) = explain_contract_failure("export.csv", accepted, [result], pd.DataFrame(columns=["sample_id"]))
    message = failure_message("export.csv", [failure], "accepted_rows_meet_contract")
    assert "export.csv: line 7, column box_occupancy: rule type:box_occupancy" in message
    assert "float64" in message and "empty cells" in message


def test_ids_already_duplicated_between_other_exports_are_named() -> None:
    accepted = pd.DataFrame({"sample_id": ["TS-2025-000009"], "_row_number": [2]})
    others = pd.DataFrame(
        {"sample_id": ["TS-2025-000001", "TS-2025-000001"], "_source_file": ["a.csv", "b.csv"], "_row_number": [2, 5]}
    )
    (failure,) = explain_contract_failure("c.csv", accepted, [], others)
    assert failure.rule == "unique_across_exports:sample_id"
    assert "TS-2025-000001 in a.csv line 2 and b.csv line 5" in failure.detail


def test_nothing_to_explain_when_nothing_failed() -> None:
    accepted = pd.DataFrame({"sample_id": ["TS-2025-000009"], "_row_number": [2]})
    others = pd.DataFrame({"sample_id": ["TS-2025-000001"], "_source_file": ["a.csv"], "_row_number": [2]})
    assert explain_contract_failure("c.csv", accepted, [], others) == []
