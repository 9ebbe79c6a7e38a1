"""Per-pool concurrency limits of the production instance, and the one-shot step that sets them.

Dagster 1.13's ``dagster.yaml`` holds only ``concurrency: pools: default_limit`` and the
granularity; a limit for one named pool lives in the instance's storage (what
``dagster instance concurrency set POOL LIMIT`` and the UI's Concurrency page write). So the
Compose stack runs ``python -m tracseq_dagster.pool_limits`` once before the daemon starts
(service ``dagster-init``), and the native stack calls :func:`apply_pool_limits`.

With ``granularity: run`` (see dagster.yaml) a limit counts *runs*: the QueuedRunCoordinator
keeps a run queued while the pools of its assets are full.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

#: Runs in progress per pool. An AutoML family sweep and the refit each fill the machine's
#: cores for minutes, and parsing one document runs OCR and the embedder: one at a time.
#: The document index merges into one LanceDB table: one writer. Export parsing holds a
#: file in memory: two at a time (dagster.yaml's default_limit, stated here too so that a
#: changed default does not silently change it).
POOL_LIMITS: Mapping[str, int] = {
    "automl": 1,
    "documents": 1,
    "documents_index": 1,
    "lab_exports": 2,
}


def apply_pool_limits(instance: dg.DagsterInstance, limits: Mapping[str, int] = POOL_LIMITS) -> dict[str, int]:
    """Set every pool's limit on ``instance`` (idempotent); returns the limits now stored."""
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return stored_pool_limits(instance)


def stored_pool_limits(instance: dg.DagsterInstance) -> dict[str, int]:
    """The per-pool limits the instance's storage holds."""
    return {info.name: info.limit for info in instance.event_log_storage.get_pool_limits()}


if __name__ == "__main__":
    with dg.DagsterInstance.get() as current:
        applied = apply_pool_limits(current)
    print("pool limits: " + ", ".join(f"{pool}={limit}" for pool, limit in sorted(applied.items())))
