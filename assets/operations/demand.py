"""demand_forecast: samples received per day per sample type and site for the next 14 days, and
the sequencing runs that implies per instrument and week; daily schedule.

Thin over :mod:`tracseq_dagster.operations.demand_forecast` and
:mod:`tracseq_dagster.operations.sequencing_capacity`; writes DEMAND_FORECAST and DEMAND_CAPACITY
(:mod:`tracseq_dagster.operations.outputs`), which the weekly QC report reads.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from assets.metadata import preview, records_table
from resources import LakeResource
from tracseq_dagster.operations import outputs
from tracseq_dagster.operations.demand_forecast import (
    HORIZON,
    LEVEL,
    TOTAL,
    DemandForecast,
    DemandInputError,
    forecast_demand,
    weekly_totals,
)
from tracseq_dagster.operations.sequencing_capacity import (
    CapacityInputError,
    capacity_plan,
    instrument_capacity,
    sequencing_ratio,
)
from tracseq_dagster.plots import markdown_image, new_figure

#: Days of history shown in the plot before the forecast.
PLOT_HISTORY_DAYS = 8 * 7


class DemandConfig(dg.Config):
    """``as_of``: forecast from this day (ISO date, UTC) instead of the last receipt, e.g. to replay a past day."""

    as_of: str | None = None


def _plot(result: DemandForecast) -> str:
    history = result.history[(result.history["sample_type"] == TOTAL) & (result.history["site"] == TOTAL)]
    history = history[history["ds"] > result.as_of - pd.Timedelta(days=PLOT_HISTORY_DAYS)]
    total = result.forecast[(result.forecast["sample_type"] == TOTAL) & (result.forecast["site"] == TOTAL)]
    figure = new_figure(8, 3.2)
    axes = figure.add_subplot()
    axes.plot(history["ds"], history["y"], color="black", linewidth=1, label="received")
    axes.plot(total["ds"], total["forecast"], color="tab:blue", label=f"forecast ({total['model'].iloc[0]})")
    axes.fill_between(total["ds"], total["lo"], total["hi"], color="tab:blue", alpha=0.25, label=f"{LEVEL} % interval")
    axes.axvline(result.as_of, color="grey", linestyle=":")
    axes.set_ylabel("samples per day (lab total)")
    axes.legend(fontsize=7, loc="upper left")
    axes.tick_params(axis="x", labelrotation=30, labelsize=7)
    return markdown_image(figure, "samples received per day, forecast and interval")


@dg.asset(
    deps=["validated_samples", "validated_runs"],
    group_name="operations",
    kinds={"statsforecast", "parquet"},
)
def demand_forecast(context: dg.AssetExecutionContext, config: DemandConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Samples received per day per sample type and site, forecast 14 days ahead with an 80 %
    interval (statsforecast; each series' model chosen by rolling cross-validation, a clear
    fallback for short or sparse series), and the sequencing runs per instrument and week it
    implies against each instrument's recent capacity (from the run history).

    With no validated samples the run fails with that message; with no validated runs the
    forecast is written and the capacity is skipped, said in the metadata.
    """
    lake_ = lake.lake()
    samples = lake_.read_validated(columns=["sample_id", "received_ts", "sample_type", "site"])
    try:
        as_of = pd.Timestamp(config.as_of) if config.as_of else None
    except ValueError:
        raise dg.Failure(
            description=f"demand_forecast: config as_of {config.as_of!r} is not an ISO date (e.g. 2025-12-31)"
        ) from None
    try:
        result = forecast_demand(samples, as_of=as_of)
    except DemandInputError as error:
        raise dg.Failure(description=f"demand_forecast: {error}") from None
    forecast_path = lake_.operations_path(outputs.DEMAND_FORECAST)
    lake_.write_table(forecast_path, result.forecast.assign(ds=result.forecast["ds"].dt.date))

    weekly = weekly_totals(result.forecast)
    capacity_path = lake_.operations_path(outputs.DEMAND_CAPACITY)
    runs = lake_.read_validated_runs()
    capacity_note, plan, capacity = "", None, None
    try:
        if runs.empty:
            raise CapacityInputError("no validated sequencing runs yet: capacity not computed")
        capacity = instrument_capacity(runs, result.as_of)
        ratio = sequencing_ratio(samples, runs, result.as_of)
        plan = capacity_plan(weekly, capacity, ratio)
        lake_.write_table(capacity_path, plan)
        capacity_note = f"{ratio:.3f} libraries per received sample"
    except CapacityInputError as error:
        capacity_note = str(error)
        capacity_path.unlink(missing_ok=True)  # a plan from an older forecast would be read as this one's
        context.log.warning(f"demand_forecast: {error}")

    pairs = result.models[result.models["sample_type"] != TOTAL]
    totals = (
        result.forecast.groupby(["sample_type", "site"])[["forecast", "lo", "hi"]].sum().round(1).reset_index().to_dict("records")
    )
    metadata = {
        "as_of": str(result.as_of.date()),
        "horizon_days": HORIZON,
        "level_pct": LEVEL,
        "series": len(result.models),
        "models_chosen": dg.MetadataValue.json(pairs["model"].value_counts().to_dict()),
        "model_per_series": records_table(
            result.models.assign(cv_mae=result.models["cv_mae"].astype(str))[
                ["sample_type", "site", "model", "days", "samples", "cv_mae"]
            ].to_dict("records")
        ),
        "totals_14d": records_table(totals),
        "lab_total_per_week": records_table(weekly.assign(week_start=weekly["week_start"].dt.date).round(1).to_dict("records")),
        "plot": dg.MetadataValue.md(_plot(result)),
        "path": dg.MetadataValue.path(str(forecast_path)),
        "capacity": capacity_note,
    }
    if plan is not None and capacity is not None:
        metadata |= {
            "capacity_plan": preview(plan, rows=len(plan)),
            "instrument_capacity": preview(capacity, rows=len(capacity)),
            "capacity_path": dg.MetadataValue.path(str(capacity_path)),
            "instrument_weeks_over_capacity": int(((plan["instrument_id"] != "all") & (plan["status"] == "over capacity")).sum()),
        }
    context.log.info(f"{len(result.models)} series forecast {HORIZON} days from {result.as_of.date()}; {capacity_note}")
    return dg.MaterializeResult(metadata=metadata)


demand_forecast_job = dg.define_asset_job(
    "demand_forecast_job",
    selection=dg.AssetSelection.assets(demand_forecast),
    description="The 14-day demand forecast and the sequencing capacity it implies.",
)


@dg.schedule(
    name="demand_forecast_daily",
    job=demand_forecast_job,
    cron_schedule="30 5 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The demand forecast every morning at 05:30 UTC, from the samples received up to the day before.",
)
def demand_forecast_schedule(context: dg.ScheduleEvaluationContext, lake: LakeResource) -> dg.RunRequest | dg.SkipReason:
    """Skipped, with the reason, until some sample export has been accepted."""
    if not lake.lake().current_records():
        return dg.SkipReason("no accepted sample export yet: ingest one first (tracseq ingest)")
    moment = context.scheduled_execution_time or datetime.now(UTC)
    return dg.RunRequest(run_key=f"demand_forecast:{moment:%Y%m%d}")


defs = dg.Definitions(assets=[demand_forecast], jobs=[demand_forecast_job], schedules=[demand_forecast_schedule])
