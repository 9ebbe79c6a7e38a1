"""The online feature store kept fresh: the latest sample features published to Redis (hand-written).

Superseded by Feast's materialisation (``feast_online_features`` in ``assets/features``), which
the service reads with ``open_feature_store(..., feast=FeastSettings.from_environment())``. Kept
while the prediction service still reads these documents; remove it (and its resource) then.
"""

import time

import dagster as dg

from resources import LakeResource, OnlineStoreResource


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
