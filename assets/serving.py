"""Serving assets: the champion packaged as a Bento, and the online feature store kept fresh.

The domain logic lives in :mod:`tracseq_dagster.serving`; these assets call it and describe
what they made.
"""

import time

import dagster as dg

from resources import LakeResource, MLflowResource, OnlineStoreResource
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.serving.bento_build import build_bento
from tracseq_dagster.serving.bundle import export_bundle
from tracseq_dagster.serving import SERVED_MODEL


@dg.asset(deps=["promotion_gate", "sample_features"], group_name="serving", kinds={"bentoml", "mlflow"})
def sample_quality_bento(
    context: dg.AssetExecutionContext, lake: LakeResource, mlflow_tracking: MLflowResource
) -> dg.MaterializeResult:
    """The MLflow champion (and challenger, for A/B) as a Bento of the sample_quality service.

    Exports the registered versions with the history snapshot of every accepted sample into
    the BentoML model store, then builds ``bentos/sample_quality`` around it. The Bento's
    version names the registered versions it serves (``v3`` or ``v3-c4``) plus a content
    hash. Serve it with ``bentoml serve sample_quality:<version>``, containerize it with
    ``bentoml containerize sample_quality:<version>``.
    """
    lake_ = lake.lake()
    started = time.perf_counter()
    bundle_dir = lake_.root / "serving" / context.run_id
    info = export_bundle(mlflow_tracking.registry(SERVED_MODEL), accepted_samples(lake_), lake_.read_features(), bundle_dir)
    bento = build_bento(bundle_dir, info)
    context.log.info(f"built {bento.tag} serving champion v{info.champion.version}")
    return dg.MaterializeResult(
        metadata={
            "bento": str(bento.tag),
            "champion_version": info.champion.version,
            "champion_family": info.champion.family,
            "challenger_version": info.challenger.version if info.challenger else "none",
            "history_samples": info.history_samples,
            "history_cutoff": info.history_cutoff,
            "build_seconds": round(time.perf_counter() - started, 2),
            "serve": dg.MetadataValue.md(f"`bentoml serve {bento.tag}`"),
        }
    )


@dg.asset(
    deps=["sample_features"],
    group_name="serving",
    kinds={"redis"},
    automation_condition=dg.AutomationCondition.eager(),
)
def online_sample_features(lake: LakeResource, online_store: OnlineStoreResource) -> dg.MaterializeResult:
    """The latest features of every known sample, published to Redis for ``GET /features``.

    Follows ``sample_features`` automatically. Without a Redis URL nothing is published and
    the service answers from the offline table.
    """
    store = online_store.store()
    if store is None:
        return dg.MaterializeResult(metadata={"published": 0, "store": "none configured: the service reads the offline table"})
    started = time.perf_counter()
    written = store.publish(lake.lake().read_features())
    return dg.MaterializeResult(
        metadata={"published": written, "store": store.prefix + "*", "seconds": round(time.perf_counter() - started, 2)}
    )
