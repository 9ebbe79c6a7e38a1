"""Helpers shared by the tests that read a real Dagster instance."""

from __future__ import annotations

import dagster as dg


def latest_materialization(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> dg.AssetMaterialization:
    """The newest materialization of ``asset`` (of one partition when given); fails the test if none."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None), limit=1
    ).records
    assert records, f"no materialization of {asset} {partition or ''}"
    return records[0].asset_materialization
