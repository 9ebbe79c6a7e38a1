"""End to end on a real Dagster instance: dropped files → sensor → runs → features.

These start real Dagster runs (in process) against real instances, SQLite and the
PostgreSQL server on 127.0.0.1:5432, and read the results back from the instance.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_helpers import latest_materialization
from typer.testing import CliRunner

from assets.lab_exports.partitions import lab_export_partitions
from tests.test_landing import SensorHarness
from tracseq_dagster.cli import app
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.feature_store import features_as_of
from tracseq_dagster.features import FEATURE_CODE_VERSION, FEATURE_NAMES, compute_features
from tracseq_dagster.generator import generate_exports
from tracseq_dagster.ingest import build_features, ingest_folder
from tracseq_dagster.lake import Lake

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "exports"

pytestmark = pytest.mark.slow


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _landing(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    generate_exports(1500, "csv", landing, seed=1, files=2, messy=True)
    generate_exports(800, "parquet", landing, seed=2, id_offset=100_000)
    generate_exports(700, "jsonl", landing, seed=3, id_offset=200_000)
    for example in EXAMPLES.glob("lims_*.csv"):  # the sample examples (the run example has its own tests)
        shutil.copy(example, landing / example.name)
    return landing


def test_sensor_to_features_on_a_real_instance(tmp_path: Path, sqlite_instance: dg.DagsterInstance) -> None:
    landing, lake_dir = _landing(tmp_path), tmp_path / "lake"
    before = {p.name: _sha(p) for p in landing.iterdir()}
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing), chunk_rows=500)
    harness = SensorHarness(landing, sqlite_instance)
    assert harness.tick().run_requests == []  # files must settle first
    requests = harness.tick().run_requests
    assert len(requests) == len(before) == 6

    job = defs.resolve_job_def("ingest_lab_export")
    results = {
        Path(r.tags["tracseq/source_path"]).name: job.execute_in_process(
            instance=sqlite_instance, partition_key=r.partition_key, tags=r.tags, raise_on_error=False
        )
        for r in requests
    }
    broken = results.pop("lims_export_without_received_ts.csv")
    assert not broken.success
    failure = next(e for e in broken.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "lims_export_without_received_ts.csv" in message and "line 1" in message and "received_ts" in message
    assert all(r.success for r in results.values()), "one bad file must not block the others"

    assert build_features(defs=defs, instance=sqlite_instance).success
    lake = Lake(lake_dir)
    features = lake.read_features()
    accepted = sum(
        int(latest_materialization(sqlite_instance, "validated_samples", r.partition_key).metadata["dagster/row_count"].value)
        for r in requests
        if Path(r.tags["tracseq/source_path"]).name in results
    )
    assert len(features) == accepted >= 3000
    assert set(FEATURE_NAMES) <= set(features.columns)

    materialization = latest_materialization(sqlite_instance, "sample_features")
    assert materialization.metadata["dagster/row_count"].value == accepted
    assert materialization.metadata["feature_code_version"].value == FEATURE_CODE_VERSION
    assert materialization.tags["dagster/code_version"] == FEATURE_CODE_VERSION

    # The manual-entry file: two good rows, six that each break one rule, nothing lost.
    manual = next(r for r in requests if r.tags["tracseq/source_path"].endswith("lims_manual_entries.csv"))
    quarantined = pd.read_parquet(lake.quarantine_path(manual.partition_key))
    assert len(quarantined) == 6
    assert len(pd.read_parquet(lake.validated_path(manual.partition_key))) == 2
    assert quarantined["_row_number"].tolist() == [4, 5, 6, 7, 8, 9]
    reasons = " | ".join(quarantined["_reasons"])
    for field in ("storage_temp_c", "sample_type", "rin", "collection_ts", "sample_id", "concentration_ng_ul"):
        assert field in reasons

    # The blocking contract check ran on every accepted partition and passed.
    check_key = dg.AssetCheckKey(dg.AssetKey("validated_samples"), "accepted_rows_meet_contract")
    for r in requests:
        if Path(r.tags["tracseq/source_path"]).name in results:
            run = sqlite_instance.get_run_by_id(results[Path(r.tags["tracseq/source_path"]).name].run_id)
            evaluations = [
                e.dagster_event.event_specific_data
                for e in sqlite_instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            ]
            assert any(e.asset_check_key == check_key and e.passed for e in evaluations)
    assert (lake.gx_dir).exists() and list(lake.gx_dir.rglob("index.html")), "Data Docs were written"

    # Raw exports are never modified or deleted.
    assert {p.name: _sha(p) for p in landing.iterdir()} == before


def test_fixed_file_dropped_again_supersedes_the_old_version(tmp_path: Path, sqlite_instance: dg.DagsterInstance) -> None:
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    export = landing / "manual.csv"
    shutil.copy(EXAMPLES / "lims_manual_entries.csv", export)
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing))
    first = ingest_folder(landing, defs=defs, instance=sqlite_instance)
    assert first[0].rows_accepted == 2 and first[0].rows_quarantined == 6

    text = export.read_text().replace(",55,", ",-20,")  # the lab corrects the 55 °C typo
    export.write_text(text)
    second = ingest_folder(landing, defs=defs, instance=sqlite_instance)
    assert second[0].file_hash != first[0].file_hash
    assert second[0].rows_accepted == 3, "accepted rows of the old version must not count as duplicates"
    assert ingest_folder(landing, defs=defs, instance=sqlite_instance)[0].status == "unchanged"
    assert sorted(Lake(lake_dir).accepted_sample_ids()) == ["TS-2025-900001", "TS-2025-900002", "TS-2025-900003"]


def test_duplicate_sample_ids_across_files_are_quarantined(tmp_path: Path, sqlite_instance: dg.DagsterInstance) -> None:
    landing = tmp_path / "landing"
    generate_exports(300, "csv", landing, seed=5)
    copy = pd.read_csv(next(landing.glob("*.csv"))).head(20)
    copy.to_csv(landing / "resent_rows.csv", index=False)
    defs = build_definitions(lake_dir=str(tmp_path / "lake"), landing_url=str(landing))
    outcomes = {Path(o.path).name: o for o in ingest_folder(landing, defs=defs, instance=sqlite_instance)}
    resent = outcomes.pop("resent_rows.csv")
    (original,) = outcomes.values()
    assert original.rows_accepted == 300
    assert resent.rows_accepted == 0 and resent.rows_quarantined == 20
    quarantined = pd.read_parquet(Lake(tmp_path / "lake").quarantine_path(resent.file_hash))
    assert quarantined["_rules"].str.contains("unique_across_exports").all()


def test_full_spine_on_postgres_through_the_cli(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the production config, as shipped
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)
    monkeypatch.setenv("TRACSEQ_LAKE_DIR", str(tmp_path / "lake"))
    landing = tmp_path / "landing"
    runner = CliRunner()
    generated = runner.invoke(app, ["generate-exports", "--rows", "1200", "--files", "2", "--messy", "--out", str(landing)])
    assert generated.exit_code == 0, generated.output
    ingested = runner.invoke(app, ["ingest", str(landing)])
    assert ingested.exit_code == 0, ingested.output

    with dg.DagsterInstance.get() as instance:
        assert "Postgres" in type(instance.run_storage).__name__
        partitions = instance.get_dynamic_partitions(lab_export_partitions.name)
        assert len(partitions) == 2
        accepted = sum(
            int(latest_materialization(instance, "validated_samples", p).metadata["dagster/row_count"].value) for p in partitions
        )
        assert accepted == 1200
        assert latest_materialization(instance, "sample_features").metadata["dagster/row_count"].value == 1200
        runs = instance.get_runs()
        assert len(runs) == 3 and all(r.is_success for r in runs)

    again = runner.invoke(app, ["ingest", str(landing)])
    assert again.exit_code == 0 and "unchanged" in again.output


def test_offline_feature_store_reads_any_ids_as_of_any_time(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    generate_exports(600, "parquet", landing, seed=7)
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing))
    ingest_folder(landing, defs=defs, instance=sqlite_instance)
    lake = Lake(lake_dir)
    samples = lake.read_validated()
    middle = samples["received_ts"].sort_values().iloc[300]
    ids = samples.sort_values("received_ts")["sample_id"].iloc[[10, 200, 500]].tolist()

    frame = features_as_of(lake, ids, middle)
    assert sorted(frame["sample_id"]) == sorted(ids[:2]), "a sample received after as_of does not exist yet"
    expected = compute_features(samples[samples["sample_id"].isin(ids)], samples, as_of=middle).reset_index()
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), expected.reset_index(drop=True))

    monkeypatch.setenv("TRACSEQ_LAKE_DIR", str(lake_dir))
    shown = CliRunner().invoke(app, ["features", "--ids", ",".join(ids), "--as-of", middle.isoformat(), "--output", "csv"])
    assert shown.exit_code == 0, shown.output
    assert ids[0] in shown.output and ids[1] in shown.output and ids[2] not in shown.output.split("not known")[0]


def test_raw_export_audit_writes_data_docs_of_what_arrived(tmp_path: Path, sqlite_instance: dg.DagsterInstance) -> None:
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    shutil.copy(EXAMPLES / "lims_manual_entries.csv", landing)
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing))
    (outcome,) = ingest_folder(landing, defs=defs, instance=sqlite_instance)
    ingest_checks = sqlite_instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert [e.dagster_event.event_specific_data.check_name for e in ingest_checks] == ["accepted_rows_meet_contract"]

    audit = defs.resolve_job_def("audit_raw_export").execute_in_process(
        instance=sqlite_instance,
        partition_key=outcome.file_hash,
        tags={"tracseq/source_path": outcome.path},
        raise_on_error=False,
    )
    (evaluation,) = audit.get_asset_check_evaluations()
    assert evaluation.check_name == "raw_rows_meet_contract" and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    failed = evaluation.metadata["failed_expectations"].value
    for rule in ("range:storage_temp_c", "enum:sample_type", "rin_only_rna", "pattern:sample_id"):
        assert rule in failed
    docs = Path(evaluation.metadata["data_docs"].value.removeprefix("file://"))
    assert docs.exists() and "lab_export_contract" in docs.read_text()


def test_validated_exports_request_sample_features_through_automation(
    tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    landing = tmp_path / "landing"
    generate_exports(200, "jsonl", landing, seed=9)
    # A file that fails leaves its partition missing for good: it must not hold features back.
    shutil.copy(EXAMPLES / "lims_export_without_received_ts.csv", landing)
    defs = build_definitions(lake_dir=str(tmp_path / "lake"), landing_url=str(landing))
    before = dg.evaluate_automation_conditions(defs=defs, instance=sqlite_instance)
    assert before.total_requested == 0, "nothing validated yet: nothing to compute"
    ingest_folder(landing, defs=defs, instance=sqlite_instance)
    after = dg.evaluate_automation_conditions(defs=defs, instance=sqlite_instance, cursor=before.cursor)
    assert after.get_num_requested(dg.AssetKey("sample_features")) == 1
