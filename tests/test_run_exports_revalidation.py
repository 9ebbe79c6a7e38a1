"""A run export that lands before its samples is accepted once they arrive.

Lake level (fast): which run exports :func:`run_exports_awaiting_samples` lists, and how many
rows each: only ``unknown_sample`` rows whose sample is now accepted count, in the current
version of each run export.

Dagster level (slow): the lab's two example files dropped in the wrong order. The run export is
validated first (every row an unknown sample); once the sample export is materialized, the
sensor requests that partition alone, its run moves exactly those rows (ending as if the files
had come in the right order), a second evaluation requests nothing, a second run changes
nothing, and the row whose sample never arrives stays quarantined. ``tracseq ingest`` does the
same across two invocations.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from typer.testing import CliRunner

from assets.lab_exports.revalidation import REVALIDATION_TAG, run_revalidation_sensor
from tests.test_lab_export_hardening import sample  # a clean sample row, sample_id TS-2025-7000ii
from tests.test_run_exports import NOW, run, sample_id
from tracseq_dagster.awaiting_samples import AwaitingExport, run_exports_awaiting_samples
from tracseq_dagster.cli import app
from tracseq_dagster.contract import FILE_HASH, ROW_NUMBER, SOURCE_FILE
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.ingest import ingest_folder
from tracseq_dagster.lake import RUNS, Lake
from tracseq_dagster.landing import content_hash
from tracseq_dagster.run_contract import RUN_CONTRACT
from tracseq_dagster.validation import validate_samples

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "exports"
RUN_FILE, SAMPLE_FILE = "run_manual_entries.csv", "lims_manual_entries.csv"
NEVER_ARRIVES = "TS-2099-999999"  # the example run row whose sample is in no export
CHECK = dg.AssetCheckKey(dg.AssetKey("validated_runs"), "accepted_rows_meet_contract")


# -- which exports await their samples (no Dagster) -----------------------------------------------


def _validate_into(lake: Lake, file_hash: str, source: str, rows: list[dict]) -> None:
    """What the validation asset writes for one run export, against the samples accepted now."""
    frame = pd.DataFrame(rows).assign(**{FILE_HASH: file_hash, SOURCE_FILE: source, ROW_NUMBER: range(2, len(rows) + 2)})
    lake.write_record(file_hash, source, len(frame), kind=RUNS)
    result = validate_samples(frame, contract=RUN_CONTRACT, accepted_samples=lake.accepted_samples(), now=NOW)
    lake.write_table(lake.validated_path(file_hash), result.valid)
    lake.write_table(lake.quarantine_path(file_hash), result.quarantined)


def _accept_samples(lake: Lake, file_hash: str, ids: range) -> None:
    """A sample export's accepted rows, as far as run validation reads them."""
    lake.write_record(file_hash, f"samples_{file_hash}.csv", len(ids))
    received = pd.to_datetime([sample(i)["received_ts"] for i in ids], utc=True)
    accepted = pd.DataFrame({"sample_id": [sample_id(i) for i in ids], "received_ts": received})
    lake.write_table(lake.validated_path(file_hash), accepted)


def _mixed_runs() -> list[dict]:
    """One run export of samples 0 (accepted before it), 1 to 3 (arriving after it) and 8 (never)."""
    return [
        run(0),                                   # accepted at once
        run(1, run_id="RUN-2025-00043"),          # unknown sample until sample 1 arrives
        run(2),                                   # unknown sample until sample 2 arrives
        run(3, run_status="maybe"),               # unknown sample and a bad status: stays quarantined for the status
        run(8),                                   # its sample never arrives
        run(1, run_id="RUN-25-1"),                # unknown sample and a malformed run id
    ]  # fmt: skip


def test_only_unknown_sample_rows_whose_sample_arrived_are_counted(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    assert run_exports_awaiting_samples(lake) == []  # an empty lake

    _accept_samples(lake, "s1", range(1))
    _validate_into(lake, "r_mixed", "runs_mixed.csv", _mixed_runs())
    _validate_into(lake, "r_never", "runs_never.csv", [run(9), run(10)])
    _validate_into(lake, "r_old", "runs_fixed.csv", [run(1, run_id="RUN-2025-00050")])
    _validate_into(lake, "r_new", "runs_fixed.csv", [run(0, run_id="RUN-2025-00050")])  # the same file, fixed: supersedes r_old
    assert lake.read_quarantine(RUNS)["_rules"].str.contains("unknown_sample").sum() == 7
    assert run_exports_awaiting_samples(lake) == []  # their samples are still unknown

    _accept_samples(lake, "s2", range(1, 4))
    # Rows 1, 2, 3 and RUN-25-1 of r_mixed; not sample 8's, not r_never's, not the superseded r_old's.
    assert run_exports_awaiting_samples(lake) == [AwaitingExport("r_mixed", "runs_mixed.csv", 4)]

    # Validated again against the samples accepted now: nothing is left to do for that export.
    _validate_into(lake, "r_mixed", "runs_mixed.csv", _mixed_runs())
    assert run_exports_awaiting_samples(lake) == []
    rules = lake.read_quarantine(RUNS).set_index(FILE_HASH)["_rules"]
    assert sorted(rules.loc[["r_mixed"]]) == ["enum:run_status", "pattern:run_id", "unknown_sample"]
    assert len(lake.read_table(lake.validated_path("r_mixed"))) == 3


# -- on a real Dagster instance ------------------------------------------------------------------


def _drop(landing: Path, name: str) -> Path:
    landing.mkdir(exist_ok=True)
    path = landing / name
    path.write_bytes((EXAMPLES / name).read_bytes())
    return path


def _latest_materialization_run(instance: dg.DagsterInstance, asset: str) -> str:
    (record,) = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return record.run_id


def _lake_state(lake: Lake, file_hash: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return lake.read_table(lake.validated_path(file_hash)), lake.read_table(lake.quarantine_path(file_hash))


def _assert_as_if_dropped_in_order(lake: Lake, file_hash: str) -> None:
    """The example's outcome when its samples come first (test_run_exports): 2 accepted, 6 quarantined, one per rule."""
    validated, quarantined = _lake_state(lake, file_hash)
    assert validated[ROW_NUMBER].tolist() == [2, 3] and quarantined[ROW_NUMBER].tolist() == [4, 5, 6, 7, 8, 9]
    assert quarantined["_rules"].tolist() == [
        "unknown_sample", "after_receipt:library_prep_ts", "order:run_start_ts<=run_end_ts", "range:q30_pct",
        "enum:run_status", "pattern:run_id",
    ]  # fmt: skip
    assert quarantined.loc[quarantined["_rules"] == "unknown_sample", "sample_id"].tolist() == [NEVER_ARRIVES]


@pytest.mark.slow
def test_sensor_revalidates_the_run_export_that_landed_before_its_samples(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    runs_path = _drop(landing, RUN_FILE)
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing))
    (sensor,) = [s for s in defs.sensors if s.name == "run_revalidation_sensor"]  # registered in the code location
    assert sensor is run_revalidation_sensor and sensor.job_name == "ingest_run_export"
    lake, runs_key = Lake(lake_dir), content_hash(str(runs_path))

    def tick(cursor: str | None) -> dg.SensorExecutionData:
        """One evaluation as the daemon runs it: requests resolved against the code location and the instance's partitions."""
        context = dg.build_sensor_context(
            instance=sqlite_instance, cursor=cursor, definitions=defs, resources={"lake": defs.resources["lake"]}
        )
        with dg.partition_loading_context(dynamic_partitions_store=sqlite_instance):
            return sensor.evaluate_tick(context)

    # The run export first: every row names a sample nobody accepted yet.
    (runs_outcome,) = ingest_folder(landing, defs=defs, instance=sqlite_instance)
    assert (runs_outcome.rows_accepted, runs_outcome.rows_quarantined) == (0, 8)
    assert lake.read_quarantine(RUNS)["_rules"].str.split(";").map(lambda rules: "unknown_sample" in rules).all()
    assert tick(None).run_requests == []  # no sample export materialized yet

    _drop(landing, SAMPLE_FILE)
    outcomes = {Path(o.path).name: o.status for o in ingest_folder(landing, defs=defs, instance=sqlite_instance)}
    assert outcomes == {SAMPLE_FILE: "ingested", RUN_FILE: "unchanged"}  # the run export is not ingested again
    assert _lake_state(lake, runs_key)[0].empty  # ... so its rows still wait

    evaluation = tick(None)
    (request,) = evaluation.run_requests
    assert request.partition_key == runs_key
    assert request.asset_selection == [dg.AssetKey("validated_runs"), dg.AssetKey("quarantined_runs")]
    assert {"tracseq/source_path": str(runs_path), REVALIDATION_TAG: "awaiting_samples"}.items() <= request.tags.items()
    samples_run = _latest_materialization_run(sqlite_instance, "validated_samples")
    assert request.run_key == f"{runs_key}:{samples_run}"  # once per materialization of the samples
    assert tick(evaluation.cursor).run_requests == []  # the same materialization is not seen twice

    # The run the daemon would launch: the job's validation step only (the raw table is in the lake).
    job = defs.resolve_job_def(sensor.job_name)
    raw_before = lake.read_table(lake.raw_path(runs_key))
    result = job.execute_in_process(
        instance=sqlite_instance, partition_key=request.partition_key, tags=request.tags, asset_selection=request.asset_selection
    )
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        "validated_runs",
        "quarantined_runs",
    }
    checks = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert [(c.asset_check_key, c.passed) for c in checks] == [(CHECK, True)]
    _assert_as_if_dropped_in_order(lake, runs_key)
    # Nothing lost, duplicated or altered: the two tables together are the raw rows, each once.
    validated, quarantined = _lake_state(lake, runs_key)
    together = pd.concat([validated, quarantined[list(raw_before.columns)]]).sort_values(ROW_NUMBER, ignore_index=True)
    pd.testing.assert_frame_equal(together, raw_before, check_dtype=False)
    assert lake.read_table(lake.raw_path(runs_key)).equals(raw_before)  # the raw table is not rewritten

    # Another sample export later: the sensor fires, but nothing waits any more; the last row's sample never came.
    pd.DataFrame([sample(i) for i in range(2)]).to_csv(landing / "more_samples.csv", index=False)
    outcomes = {Path(o.path).name: o.status for o in ingest_folder(landing, defs=defs, instance=sqlite_instance)}
    assert outcomes["more_samples.csv"] == "ingested"
    later = tick(evaluation.cursor)
    assert later.run_requests == [] and "no quarantined run row" in later.skip_message

    # Re-validating again changes nothing (idempotent).
    again_before = _lake_state(lake, runs_key)
    assert job.execute_in_process(
        instance=sqlite_instance, partition_key=runs_key, tags=request.tags, asset_selection=request.asset_selection
    ).success
    for before, after in zip(again_before, _lake_state(lake, runs_key)):
        pd.testing.assert_frame_equal(before, after)
    assert len(lake.read_validated_runs()) == 2


@pytest.mark.slow
def test_tracseq_ingest_revalidates_a_run_export_an_earlier_invocation_ingested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(tmp_path))
    runner = CliRunner()

    def ingest() -> str:
        result = runner.invoke(app, ["ingest", str(landing), "--lake", str(lake_dir), "--no-features"], terminal_width=200)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    runs_key = content_hash(str(_drop(landing, RUN_FILE)))
    assert "re-validated" not in ingest()
    _drop(landing, SAMPLE_FILE)
    assert "run exports re-validated now that their samples are accepted: 1, run rows re-accepted: 2" in ingest()
    _assert_as_if_dropped_in_order(Lake(lake_dir), runs_key)
    assert "re-validated" not in ingest()  # nothing waits any more: nothing runs
