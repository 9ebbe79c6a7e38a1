"""feast_online_features: Feast's materialisation into the online store, with feature statistics."""

import time

import dagster as dg
import pandas as pd

from assets.metadata import records_table
from resources.feast import FeastResource
from tracseq_dagster.feature_repo.materialization import materialize_with_statistics


@dg.asset(
    deps=["sample_features", "feast_entity_tables", "feast_registry"],
    group_name="features",
    kinds={"feast", "redis"},
    automation_condition=dg.AutomationCondition.eager(),
)
def feast_online_features(context: dg.AssetExecutionContext, feast: FeastResource) -> dg.MaterializeResult:
    """Every feature view materialised into the online store (Redis when configured), after the feature tables.

    The online store the prediction service reads through Feast's feature server (``/features``
    and the history aggregates): the latest row of every sample, operator, site, freezer and
    instrument is loaded by Feast. At each materialisation the statistics of every
    feature (count, nulls, quantiles, histogram) are computed and kept under the view's
    registry version.
    """
    started = time.perf_counter()
    report = materialize_with_statistics(feast.store(), feast.settings().folder)
    context.log.info(f"materialised {len(report.rows)} views in {time.perf_counter() - started:.1f} s")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(report.rows.values()),
            "online_store": "redis" if feast.redis_url else "sqlite",
            "materialized_until": pd.Timestamp(report.end).isoformat(),
            "views": records_table(
                [
                    {"view": v, "version": report.versions[v], "rows": n, "statistics": str(report.statistics[v])}
                    for v, n in report.rows.items()
                ]
            ),  # fmt: skip
            "waiting_for_tables": ", ".join(report.waiting) or "none",
            "feature_statistics": records_table(list(report.summary)),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
