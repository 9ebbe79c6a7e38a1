"""Monitoring assets over the prediction log: feature drift (with its check) and the A/B report, per model.

Both are partitioned by catalog model (``MODEL_PARTITIONS``): a partition reads that model's
rows of the log window, judges them against that model's training rows and labels, writes the
report to ``<lake>/monitoring/<model>/`` and names the model in its metadata. The domain logic
lives in :mod:`tracseq_dagster.monitoring`.
"""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import pandas as pd

from assets.metadata import records_table
from assets.models.partitions import MODEL_PARTITIONS, label_source_deps
from resources import LakeResource, MLflowResource, PredictionLogResource
from tracseq_dagster import settings
from tracseq_dagster.models import get_model
from tracseq_dagster.monitoring import ab_report
from tracseq_dagster.monitoring.ab_report import ABSettings
from tracseq_dagster.monitoring.drift import DRIFT_CHECK_NAME, DriftThresholds, drift_against_training
from tracseq_dagster.monitoring.plots import ab_figure, drift_figure, log_report_figures
from tracseq_dagster.monitoring.watched import no_predictions_message
from tracseq_dagster.plots import markdown_png, png_bytes
from tracseq_dagster.serving.prediction_log import last_hours

#: Written by the prediction service, not by Dagster: declared so the lineage shows it.
prediction_log = dg.AssetSpec(
    "prediction_log",
    group_name="monitoring",
    kinds={"parquet", "postgres"},
    description="Every prediction of the prediction service, of every catalog model: request id, time, model, "
    "variant, model version, answered value, category, predicted class, latency and the sample feature vector "
    "(TRACSEQ_PREDICTION_LOG).",
)
#: What the models' labelled rows are read from (the drift reference, the A/B report's labels).
LABEL_SOURCES = label_source_deps()


class DriftConfig(dg.Config):
    """The window of predictions judged and the thresholds (defaults from DriftThresholds)."""

    window_hours: float = 24 * 7
    psi_threshold: float = DriftThresholds.psi
    ks_statistic_threshold: float = DriftThresholds.ks_statistic
    ks_alpha: float = DriftThresholds.ks_alpha
    min_rows: int = DriftThresholds.min_rows
    not_judged: list[str] = list(DriftThresholds.not_judged)


class ABConfig(dg.Config):
    """The window of predictions compared, evidence needed for a metric, the category cut-offs."""

    window_hours: float = 24 * 7
    min_labels: int = ABSettings.min_labels
    bootstrap: int = ABSettings.bootstrap
    confidence: float = ABSettings.confidence


@dg.asset(
    deps=[prediction_log, *LABEL_SOURCES],
    partitions_def=MODEL_PARTITIONS,
    group_name="monitoring",
    kinds={"pandas", "scipy"},
    # The hourly schedule refreshes it; several missed hours mean the daemon or the log stopped.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=settings.monitoring_freshness_hours())),
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_CHECK_NAME,
            asset="feature_drift_report",
            description="Fails (ERROR) when any feature of the partition's model passes its PSI or KS threshold "
            "over the window; the retraining sensor retrains that model on a failure.",
        )
    ],
)
def feature_drift_report(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    lake: LakeResource,
    prediction_log: PredictionLogResource,
    mlflow_tracking: MLflowResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """PSI and KS per feature of one model: its logged feature vectors in the window against its training rows.

    The reference is the model's labelled rows (its training set). Numeric PSI uses fixed bins
    at the reference deciles, categorical PSI the categories; missing values are a bin of their
    own; features the log does not carry are listed, not measured. A model without logged
    predictions passes with ``insufficient_data`` and says so. Written to
    <lake>/monitoring/<model>/feature_drift_report.json and .parquet; the reference-vs-current
    histograms of the most shifted features are an image here and, when there were predictions,
    in MLflow (a run of the model's experiment under this Dagster run's parent run).
    """
    lake_, spec = lake.lake(), get_model(context.partition_key)
    since, until = last_hours(config.window_hours)
    current = prediction_log.log().read(since, until, model=spec.name)
    if current.empty:
        context.log.info(no_predictions_message(spec.name, since))
    thresholds = DriftThresholds(
        psi=config.psi_threshold,
        ks_statistic=config.ks_statistic_threshold,
        ks_alpha=config.ks_alpha,
        min_rows=config.min_rows,
        not_judged=tuple(config.not_judged),
    )
    report = drift_against_training(current, lake_, spec, thresholds)
    table = report.table()
    payload = {"window_start": since.isoformat(), "window_end": until.isoformat(), **report.to_dict()}
    json_path = lake_.write_json(lake_.monitoring_path(f"{spec.name}/feature_drift_report.json"), payload)
    lake_.write_table(lake_.monitoring_path(f"{spec.name}/feature_drift_report.parquet"), table)
    context.log.info(report.summary())
    shown = (
        table[["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "current_missing", "drifted", "reason"]]
        if len(table)
        else table
    )
    figure = png_bytes(drift_figure(report))
    mlflow_run = _log_figures(
        context, mlflow_tracking, spec.name, "feature_drift_report", {"feature_drift.png": figure}, len(current)
    )
    yield dg.MaterializeResult(
        metadata={
            "model": spec.name,
            "verdict": report.verdict,
            "summary": report.summary(),
            "predictions": report.current_rows,
            "reference_rows": report.reference_rows,
            "window_start": since.isoformat(),
            "window_end": until.isoformat(),
            "drifted_features": ", ".join(report.drifted_features) or "none",
            "max_psi": float(table["psi"].max()) if len(table) else 0.0,
            "not_logged_features": ", ".join(report.unlogged) or "none",
            "features": dg.MetadataValue.md(shown.round(4).to_markdown(index=False) if len(shown) else "_(none)_"),
            "histograms": dg.MetadataValue.md(markdown_png(figure, f"{spec.name}: reference vs current per feature")),
            "mlflow_run_id": mlflow_run or "not logged",
            "path": dg.MetadataValue.path(str(json_path)),
        }
    )
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK_NAME,
        asset_key="feature_drift_report",
        passed=report.verdict != "drift",
        severity=dg.AssetCheckSeverity.ERROR,
        description=report.summary(),
        metadata={
            "model": spec.name,
            "verdict": report.verdict,
            "drifted_features": ", ".join(report.drifted_features) or "none",
            "psi_threshold": thresholds.psi,
            "ks_statistic_threshold": thresholds.ks_statistic,
            "ks_alpha": thresholds.ks_alpha,
            "predictions": report.current_rows,
        },
    )


@dg.asset(
    deps=[prediction_log, *LABEL_SOURCES, "promotion_gate"],
    partitions_def=MODEL_PARTITIONS,
    group_name="monitoring",
    kinds={"pandas", "mlflow"},
)
def ab_test_report(
    context: dg.AssetExecutionContext,
    config: ABConfig,
    lake: LakeResource,
    prediction_log: PredictionLogResource,
    mlflow_tracking: MLflowResource,
) -> dg.MaterializeResult:
    """One model's champion against its challenger on the traffic of the window.

    Per variant: predictions, answer quantiles and histogram, a classifier's category mix,
    latency. Both registered versions re-score every logged feature vector for their agreement
    (when the log carries all the model's features). Where the model's labels arrived later
    (joined from its labelled rows): ROC AUC, accuracy and Brier of a classifier, MAE, RMSE and
    interval coverage of a regressor, per variant with bootstrap intervals, and the
    challenger-minus-champion differences. Written to <lake>/monitoring/<model>/ab_test_report.json.
    """
    lake_, spec = lake.lake(), get_model(context.partition_key)
    since, until = last_hours(config.window_hours)
    log = prediction_log.log().read(since, until, model=spec.name)
    settings = ABSettings(min_labels=config.min_labels, bootstrap=config.bootstrap, confidence=config.confidence)
    models, labels, notes = None, None, []
    if len(log):  # nothing to compare otherwise: neither the registry nor the labels are opened
        registry = mlflow_tracking.registry(spec.name)
        versions = ab_report.versions_to_compare(log, registry)
        loaded = {v: ab_report.load_version(registry, v, spec) for v in set(versions.values())}
        models = {variant: loaded[v] for variant, v in versions.items()}
        labels, notes = ab_report.outcomes(lake_, spec)
    else:
        context.log.info(no_predictions_message(spec.name, since))
    report = ab_report.ab_test_report(log, labels if labels is not None else pd.Series(dtype="string"), spec, models, settings)
    report.notes[:0] = notes
    payload = {"window_start": since.isoformat(), "window_end": until.isoformat(), **report.to_dict()}
    json_path = lake_.write_json(lake_.monitoring_path(f"{spec.name}/ab_test_report.json"), payload)
    for name, table in ab_report.report_tables(report).items():
        lake_.write_table(lake_.monitoring_path(f"{spec.name}/ab_test_report.{name}.parquet"), table)
    for note in report.notes:
        context.log.info(note)
    agreement = report.agreement or {}
    figure = png_bytes(ab_figure(report))
    mlflow_run = _log_figures(context, mlflow_tracking, spec.name, "ab_test_report", {"ab_test_report.png": figure}, len(log))
    return dg.MaterializeResult(
        metadata={
            "model": spec.name,
            "task": report.task,
            "predictions": report.rows,
            "window_start": since.isoformat(),
            "window_end": until.isoformat(),
            "variants": _md(report.variants),
            "score_histogram": _md(report.score_histogram),
            "labelled_metrics": _md(report.labelled),
            "labelled_predictions": int(report.labelled["labelled"].sum()) if len(report.labelled) else 0,
            "challenger_minus_champion": _md(report.differences),
            "category_agreement": agreement.get("category_agreement"),
            "status_agreement": agreement.get("status_agreement"),
            "score_pearson": agreement.get("score_pearson"),
            "agreement": dg.MetadataValue.json({k: v for k, v in agreement.items() if k != "category_crosstab"}),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in report.notes) or "_none_"),
            "plot": dg.MetadataValue.md(markdown_png(figure, f"{spec.name}: A/B score distributions and metric intervals")),
            "mlflow_run_id": mlflow_run or "not logged",
            "path": dg.MetadataValue.path(str(json_path)),
        }
    )


def _log_figures(
    context: dg.AssetExecutionContext, mlflow_tracking: MLflowResource, model: str, role: str, figures: dict, predictions: int
) -> str | None:
    """The report's figures in MLflow; None (and a warning) without predictions or when MLflow cannot be reached.

    A report is still worth having without its MLflow copy: the image is in the metadata either way.
    """
    if not predictions:
        return None
    try:
        client = mlflow_tracking.client()
        experiment = mlflow_tracking.experiment_id(client, model)
        return log_report_figures(client, experiment, context.run_id, role, figures, {"model": model})
    except Exception as error:  # noqa: BLE001 - MLflow down must not fail a monitoring report
        context.log.warning(f"{model}: {role} figures not logged to MLflow ({type(error).__name__}: {error})")
        return None


def _md(frame: pd.DataFrame) -> dg.MetadataValue:
    return records_table(frame.round(4).to_dict("records")) if len(frame) else dg.MetadataValue.md("_(none)_")
