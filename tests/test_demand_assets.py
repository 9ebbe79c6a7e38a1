"""The demand_forecast asset materialized on an embedded Dagster instance over a generated lake:
the two output tables, the metadata (models, totals, plot, capacity), no runs yet, no samples
yet, and the daily schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.operations.demand import demand_forecast, demand_forecast_schedule
from resources import LakeResource
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import RUNS, Lake
from tracseq_dagster.operations import outputs
from tracseq_dagster.operations.demand_forecast import FORECAST_COLUMNS, HORIZON
from tracseq_dagster.operations.sequencing_capacity import PLAN_COLUMNS
from tracseq_dagster.run_generator import generate_runs

AS_OF = "2025-11-30"


def lake_with(root: Path, rows: int, runs: bool) -> Lake:
    lake = Lake(root)
    samples = generate_samples(rows, seed=3)
    lake.write_record("a" * 16, "samples.csv", len(samples))
    lake.write_table(lake.validated_path("a" * 16), samples)
    if runs:
        run_rows = generate_runs(samples, seed=3)
        lake.write_record("b" * 16, "runs.csv", len(run_rows), kind=RUNS)
        lake.write_table(lake.validated_path("b" * 16), run_rows)
    return lake


def materialize(lake: Lake, as_of: str | None = AS_OF) -> dg.ExecuteInProcessResult:
    config = {"ops": {"demand_forecast": {"config": {"as_of": as_of}}}}
    return dg.materialize(
        [demand_forecast],
        resources={"lake": LakeResource(root=str(lake.root))},
        run_config=config,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


@pytest.mark.slow
def test_forecast_and_capacity_are_written_with_their_metadata(tmp_path: Path) -> None:
    lake = lake_with(tmp_path / "lake", 1200, runs=True)
    result = materialize(lake)
    assert result.success
    forecast = pd.read_parquet(lake.operations_path(outputs.DEMAND_FORECAST))
    assert list(forecast.columns) == FORECAST_COLUMNS
    total = forecast[(forecast["sample_type"] == "all") & (forecast["site"] == "all")]
    assert len(total) == HORIZON and str(total["ds"].min()) == "2025-12-01"
    # Whole-number bounds for whole-number counts; the lab total's (some samples a day) holds its mean. A sparse
    # pair's may not: with 0.3 samples a day, [0, 0] is the 80 % interval (no sample on 74 % of days).
    assert (forecast["lo"] <= forecast["hi"]).all() and (forecast[["lo", "hi"]] % 1 == 0).all().all()
    assert (total["lo"] <= total["forecast"]).all() and (total["forecast"] <= total["hi"]).all()
    # 1,200 samples a year is about 3.3 a day: the lab total's two weeks hold some tens of samples.
    assert 20 < total["forecast"].sum() < 150
    plan = pd.read_parquet(lake.operations_path(outputs.DEMAND_CAPACITY))
    assert list(plan.columns) == PLAN_COLUMNS
    assert set(plan["instrument_id"]) >= {"SEQ-01", "all"} and plan["week"].nunique() == 2
    assert (plan.loc[plan["instrument_id"] == "all", "runs_needed"] > 0).all()

    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["as_of"].value == AS_OF and metadata["series"].value == len(forecast.groupby(["sample_type", "site"]))
    assert metadata["plot"].value.startswith("![samples received per day") and "data:image/png;base64," in metadata["plot"].value
    chosen = metadata["models_chosen"].value
    assert sum(chosen.values()) == metadata["series"].value - 1  # every pair, the total aside
    assert "| all" in metadata["totals_14d"].value and "SEQ-01" in metadata["capacity_plan"].value
    assert "libraries per received sample" in metadata["capacity"].value


@pytest.mark.slow
def test_without_runs_the_forecast_is_written_and_capacity_is_said_missing(tmp_path: Path) -> None:
    lake = lake_with(tmp_path / "lake", 600, runs=False)
    stale = lake.operations_path(outputs.DEMAND_CAPACITY)
    lake.write_table(stale, pd.DataFrame({"week": ["old"]}))
    result = materialize(lake, as_of=None)
    assert result.success
    assert lake.operations_path(outputs.DEMAND_FORECAST).exists()
    assert not stale.exists()  # an older plan is not left to be read as this forecast's
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["capacity"].value == "no validated sequencing runs yet: capacity not computed"


def test_no_samples_fails_with_the_reason_and_the_schedule_skips(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    result = materialize(lake, as_of=None)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "no validated sample with a received_ts" in failure.event_specific_data.error.message
    bad_day = materialize(lake, as_of="yesterday")
    failure = next(e for e in bad_day.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "config as_of 'yesterday' is not an ISO date" in failure.event_specific_data.error.message

    moment = datetime(2026, 1, 5, 5, 30, tzinfo=UTC)
    with dg.build_schedule_context(
        resources={"lake": LakeResource(root=str(lake.root))}, scheduled_execution_time=moment
    ) as context:
        skipped = demand_forecast_schedule(context)
    assert isinstance(skipped, dg.SkipReason) and "no accepted sample export" in skipped.skip_message
    lake.write_record("c" * 16, "samples.csv", 1)
    with dg.build_schedule_context(
        resources={"lake": LakeResource(root=str(lake.root))}, scheduled_execution_time=moment
    ) as context:
        request = demand_forecast_schedule(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == "demand_forecast:20260105"
