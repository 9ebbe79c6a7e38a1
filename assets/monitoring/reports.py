"""Monitoring assets over the prediction log: feature drift (with its check) and the A/B report.

The domain logic lives in :mod:`tracseq_dagster.monitoring`; these assets read the log window,
call it, write the report to ``<lake>/monitoring/`` and describe it in their metadata.
"""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import pandas as pd

from resources import LakeResource, MLflowResource, PredictionLogResource
from tracseq_dagster import settings
from assets.metadata import records_table
from tracseq_dagster.monitoring import ab_report
from tracseq_dagster.monitoring.ab_report import ABSettings, CategoryThresholds
from tracseq_dagster.monitoring.drift import DRIFT_CHECK_NAME, DriftThresholds, drift_against_training
from tracseq_dagster.serving.prediction_log import last_hours
from tracseq_dagster.serving import SERVED_MODEL

#: Written by the sample_quality service, not by Dagster: declared so the lineage shows it.
prediction_log = dg.AssetSpec(
    "prediction_log",
    group_name="monitoring",
    kinds={"parquet", "postgres"},
    description="Every prediction of the sample_quality service: request id, time, variant, model version, "
    "P(pass), category, predicted status, latency and the feature vector (TRACSEQ_PREDICTION_LOG).",
)


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
    high_threshold: float = CategoryThresholds.high
    medium_threshold: float = CategoryThresholds.medium


@dg.asset(
    deps=[prediction_log, "sample_features"],
    group_name="monitoring",
    kinds={"pandas", "scipy"},
    # The hourly schedule refreshes it; several missed hours mean the daemon or the log stopped.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=settings.monitoring_freshness_hours())),
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_CHECK_NAME,
            asset="feature_drift_report",
            description="Fails (ERROR) when any feature's PSI or KS passes its threshold over the window; "
            "the retraining sensor acts on a failure.",
        )
    ],
)
def feature_drift_report(
    context: dg.AssetExecutionContext, config: DriftConfig, lake: LakeResource, prediction_log: PredictionLogResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """PSI and KS per feature: the feature vectors the service saw in the window against the training features.

    The reference is the labelled rows of the offline store. Numeric PSI uses fixed bins at the
    reference deciles, categorical PSI the categories; missing values are a bin of their own.
    Written to <lake>/monitoring/feature_drift_report.json and .parquet.
    """
    lake_ = lake.lake()
    since, until = last_hours(config.window_hours)
    current = prediction_log.log().read(since, until)
    thresholds = DriftThresholds(
        psi=config.psi_threshold,
        ks_statistic=config.ks_statistic_threshold,
        ks_alpha=config.ks_alpha,
        min_rows=config.min_rows,
        not_judged=tuple(config.not_judged),
    )
    report = drift_against_training(current, lake_, thresholds)
    table = report.table()
    payload = {"window_start": since.isoformat(), "window_end": until.isoformat(), **report.to_dict()}
    json_path = lake_.write_json(lake_.monitoring_path("feature_drift_report.json"), payload)
    lake_.write_table(lake_.monitoring_path("feature_drift_report.parquet"), table)
    context.log.info(report.summary())
    shown = table[["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "current_missing", "drifted", "reason"]] if len(table) else table
    yield dg.MaterializeResult(
        metadata={
            "verdict": report.verdict,
            "summary": report.summary(),
            "predictions": report.current_rows,
            "reference_rows": report.reference_rows,
            "window_start": since.isoformat(),
            "window_end": until.isoformat(),
            "drifted_features": ", ".join(report.drifted_features) or "none",
            "max_psi": float(table["psi"].max()) if len(table) else 0.0,
            "features": dg.MetadataValue.md(shown.round(4).to_markdown(index=False) if len(shown) else "_(none)_"),
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
            "verdict": report.verdict,
            "drifted_features": ", ".join(report.drifted_features) or "none",
            "psi_threshold": thresholds.psi,
            "ks_statistic_threshold": thresholds.ks_statistic,
            "ks_alpha": thresholds.ks_alpha,
            "predictions": report.current_rows,
        },
    )


@dg.asset(deps=[prediction_log, "validated_samples", "promotion_gate"], group_name="monitoring", kinds={"pandas", "mlflow"})
def ab_test_report(
    context: dg.AssetExecutionContext,
    config: ABConfig,
    lake: LakeResource,
    prediction_log: PredictionLogResource,
    mlflow_tracking: MLflowResource,
) -> dg.MaterializeResult:
    """Champion against challenger on the traffic of the window: volumes, scores, agreement, labelled metrics.

    Per variant: predictions, P(pass) quantiles and histogram, category mix, latency. Both
    registered versions re-score every logged feature vector for their agreement. Where QC
    labels arrived later: ROC AUC, accuracy and Brier per variant with bootstrap intervals,
    and the challenger-minus-champion differences. Written to <lake>/monitoring/ab_test_report.json.
    """
    lake_ = lake.lake()
    since, until = last_hours(config.window_hours)
    log = prediction_log.log().read(since, until)
    settings = ABSettings(
        min_labels=config.min_labels,
        bootstrap=config.bootstrap,
        confidence=config.confidence,
        thresholds=CategoryThresholds(high=config.high_threshold, medium=config.medium_threshold),
    )
    models = None
    if len(log):  # nothing to re-score otherwise: the registry is not even opened
        registry = mlflow_tracking.registry(SERVED_MODEL)
        versions = ab_report.versions_to_compare(log, registry)
        loaded = {v: ab_report.load_version(registry, v) for v in set(versions.values())}
        models = {variant: loaded[v] for variant, v in versions.items()}
    report = ab_report.ab_test_report(log, ab_report.labels_from_lake(lake_), models, settings)
    payload = {"window_start": since.isoformat(), "window_end": until.isoformat(), **report.to_dict()}
    json_path = lake_.write_json(lake_.monitoring_path("ab_test_report.json"), payload)
    for name, table in ab_report.report_tables(report).items():
        lake_.write_table(lake_.monitoring_path(f"ab_test_report.{name}.parquet"), table)
    for note in report.notes:
        context.log.info(note)
    agreement = report.agreement or {}
    return dg.MaterializeResult(
        metadata={
            "predictions": report.rows,
            "window_start": since.isoformat(),
            "window_end": until.isoformat(),
            "variants": _md(report.variants),
            "score_histogram": _md(report.score_histogram),
            "labelled_metrics": _md(report.labelled),
            "challenger_minus_champion": _md(report.differences),
            "category_agreement": agreement.get("category_agreement"),
            "status_agreement": agreement.get("status_agreement"),
            "score_pearson": agreement.get("score_pearson"),
            "agreement": dg.MetadataValue.json({k: v for k, v in agreement.items() if k != "category_crosstab"}),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in report.notes) or "_none_"),
            "path": dg.MetadataValue.path(str(json_path)),
        }
    )


def _md(frame: pd.DataFrame) -> dg.MetadataValue:
    return records_table(frame.round(4).to_dict("records")) if len(frame) else dg.MetadataValue.md("_(none)_")
