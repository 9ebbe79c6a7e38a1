"""sample_features: point-in-time features of every accepted sample (the offline store)."""

from datetime import timedelta

import dagster as dg

from assets.metadata import column_summary, preview
from resources import LakeResource
from tracseq_dagster import settings
from tracseq_dagster.feature_store import build_feature_table
from tracseq_dagster.features import FEATURE_CODE_VERSION, FEATURE_NAMES

# Recompute when new exports are validated: eager, except that a file that failed to parse
# (its partition stays missing for good) must not hold every later export back; and never
# past a failed blocking contract check, which needs a person to look.
FEATURES_AUTOMATION = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
) & ~dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.any_checks_match(dg.AutomationCondition.check_failed(), blocking_only=True)
)

# A lab exports at least daily: features older than this mean that exports, the sensor or
# the automation stopped. The UI shows the asset late (a warning at half the window); the
# daemon evaluates it (dagster.yaml: freshness enabled).
FEATURES_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=settings.features_freshness_hours()),
    warn_window=timedelta(hours=settings.features_freshness_hours() / 2),
)


@dg.asset(
    deps=["validated_samples"],
    group_name="features",
    kinds={"pandas", "parquet"},
    code_version=FEATURE_CODE_VERSION,
    automation_condition=FEATURES_AUTOMATION,
    freshness_policy=FEATURES_FRESHNESS,
)
def sample_features(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Every feature of DESIGN.md for every accepted sample, each as of its own latest event.

    This is the training view: each row is computed as of the moment just before its QC
    label became known, from samples labelled strictly earlier, so no label leaks from
    the future. The code version is a hash of the feature code, so changing it marks
    this asset stale in the UI. Serving imports the same function.
    """
    lake_ = lake.lake()
    features = build_feature_table(lake_)
    lake_.write_table(lake_.features_path, features)
    stats = column_summary(features, FEATURE_NAMES)
    context.log.info(f"{len(features)} samples, {len(FEATURE_NAMES)} features")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(features),
            "feature_code_version": FEATURE_CODE_VERSION,
            "labelled_rows": int(features["qc_status"].notna().sum()),
            "null_rates": dg.MetadataValue.json({r.column: r.null_rate for r in stats.itertuples()}),
            "feature_summary": dg.MetadataValue.md(stats.round(4).to_markdown(index=False)),
            "preview": preview(features),
            "path": dg.MetadataValue.path(str(lake_.features_path)),
        }
    )
