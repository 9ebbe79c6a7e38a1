"""Operations: the lab's storage, point in time. ``freezer_state`` (every freezer and box: occupied and
free positions, excursion history, the champion's excursion risk) and ``storage_utilisation``
(occupancy per freezer and rack, the day each freezer fills), written to the lake's operations
outputs; both follow the validated samples like the sample features do.

Thin over :mod:`tracseq_dagster.operations.freezer_state`, :mod:`~tracseq_dagster.operations.freezer_history`
and :mod:`~tracseq_dagster.operations.storage_utilisation`."""

import dagster as dg
import pandas as pd

from assets.features.sample_features import FEATURES_AUTOMATION
from assets.metadata import preview, records_table
from resources import LakeResource, MLflowResource
from tracseq_dagster.operations import outputs
from tracseq_dagster.operations.freezer_history import freezer_days
from tracseq_dagster.operations.freezer_state import freezer_state as build_freezer_state
from tracseq_dagster.operations.placement_risk import Champion, freezer_risk, model_source
from tracseq_dagster.operations.storage_utilisation import state_tables, utilisation, utilisation_figure
from tracseq_dagster.plots import markdown_image

RISK_MODEL = "freezer_excursion_risk"


def _champion(mlflow_tracking: MLflowResource) -> tuple[Champion | None, str]:
    """The registered champion of the risk model (it passed its gate), or None and why (never raises: no champion is normal)."""
    try:
        import mlflow

        from tracseq_dagster.registry import CHAMPION
        from tracseq_dagster.tracking import fluent_api

        client = mlflow_tracking.client()
        registry = mlflow_tracking.registry(RISK_MODEL, client)
        version = registry.version(CHAMPION)
        if version is None:
            return None, f"no {RISK_MODEL} champion registered: excursion_risk_30d from history, no model"
        with fluent_api(client):
            model = mlflow.sklearn.load_model(registry.model_uri(str(version.version)))
        return Champion(model, str(version.version)), f"{model_source(RISK_MODEL, version.version)} (the registered champion)"
    except Exception as error:  # noqa: BLE001 - a registry that is down must not fail the freezer view
        return None, f"{RISK_MODEL} champion not loaded ({type(error).__name__}: {error}): excursion_risk_30d from history"


@dg.asset(
    deps=["validated_samples"],
    group_name="operations",
    kinds={"pandas", "parquet"},
    automation_condition=FEATURES_AUTOMATION,
)
def freezer_state(context: dg.AssetExecutionContext, lake: LakeResource, mlflow_tracking: MLflowResource) -> dg.MaterializeResult:
    """Every freezer and box as of the last receipt: occupied and free positions (the latest claim of
    a position wins; positions claimed twice and locations that break the pattern are listed, not
    fatal), the excursion history (excursions per sample-day of exposure over 30 days, days since
    an excursion record, from records closed by then) and P(excursion in the next 30 days) per
    freezer: predicted by the freezer_excursion_risk champion when one is registered (it passed its
    gate), else the history rule, with ``excursion_risk_source`` saying which. Writes FREEZER_STATE and BOX_STATE."""
    lake_ = lake.lake()
    samples = lake_.read_validated()
    state = build_freezer_state(samples)
    history = freezer_days(samples, until=state.as_of) if len(samples) else None
    champion, risk_note = _champion(mlflow_tracking)
    report = freezer_risk(history, state.freezers["freezer_id"].astype(str).tolist(), state.as_of, champion)
    risk_note = "; ".join([risk_note, *[n for n in report.notes if not n.startswith("no ")]])
    risk = pd.Series({f: r.probability for f, r in report.risk.items()}, dtype="float64")
    sources = pd.Series({f: r.source for f, r in report.risk.items()}, dtype="object")
    freezers, boxes = state_tables(state, samples, risk, history, sources)
    freezer_path, box_path = lake_.operations_path(outputs.FREEZER_STATE), lake_.operations_path(outputs.BOX_STATE)
    lake_.write_table(freezer_path, freezers)
    lake_.write_table(box_path, boxes)
    if len(state.unparsable):
        context.log.warning(
            f"{len(state.unparsable)} samples have a storage location that breaks the pattern (listed in metadata)"
        )
    context.log.info(risk_note)
    shown = freezers.assign(as_of=freezers["as_of"].astype(str)).round(4)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(freezers),
            "as_of": str(state.as_of),
            **{name: int(value) for name, value in state.counts.items()},
            "excursion_risk": risk_note,
            "excursion_risk_source": report.source,
            "freezers": preview(shown, rows=len(shown)),
            "unparsable_locations_table": records_table(state.unparsable.head(20).to_dict("records")),
            "double_booked_table": records_table(state.double_booked.head(20).astype(str).to_dict("records")),
            "freezer_state_path": dg.MetadataValue.path(str(freezer_path)),
            "box_state_path": dg.MetadataValue.path(str(box_path)),
        }
    )


@dg.asset(
    deps=["freezer_state", "demand_forecast"],
    group_name="operations",
    kinds={"pandas", "parquet"},
    automation_condition=dg.AutomationCondition.eager(),
)
def storage_utilisation(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Occupancy per freezer and per rack and the day each fills: intake per day from the demand
    forecast when it is in the lake (each freezer's share of its sample types' recent intake),
    else the last 30 days' intake; a freezer with no intake has no fill date. The plot shows
    occupancy per freezer with its fill date. Writes STORAGE_UTILISATION."""
    lake_ = lake.lake()
    samples = lake_.read_validated()
    state = build_freezer_state(samples)
    forecast_path = lake_.operations_path(outputs.DEMAND_FORECAST)
    forecast = pd.read_parquet(forecast_path) if forecast_path.exists() else None
    table = utilisation(state, samples, forecast)
    path = lake_.operations_path(outputs.STORAGE_UTILISATION)
    lake_.write_table(path, table)
    freezers = table[table["level"] == "freezer"]
    source = str(table["intake_source"].iloc[0]) if len(table) else "no samples"
    context.log.info(f"{len(freezers)} freezers, intake from {source}")
    first_full = freezers.dropna(subset=["fills_on"]).sort_values("fills_on").head(1)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "as_of": str(state.as_of),
            "freezers": len(freezers),
            "positions": int(freezers["positions"].sum()) if len(freezers) else 0,
            "occupied": int(freezers["occupied"].sum()) if len(freezers) else 0,
            "intake_source": source,
            "first_to_fill": str(first_full["freezer_id"].iloc[0]) + " on " + str(first_full["fills_on"].iloc[0])
            if len(first_full)
            else "none fills at the current intake",
            "per_freezer": preview(freezers.astype(str), rows=len(freezers)),
            "plot": dg.MetadataValue.md(markdown_image(utilisation_figure(table), "freezer occupancy"))
            if len(freezers)
            else "no freezers",
            "path": dg.MetadataValue.path(str(path)),
        }
    )


storage_state_job = dg.define_asset_job(
    "storage_state", selection=[freezer_state, storage_utilisation], description="Freezer and box state and storage utilisation."
)

defs = dg.Definitions(assets=[freezer_state, storage_utilisation], jobs=[storage_state_job])
