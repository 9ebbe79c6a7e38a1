"""New files in a landing folder as partition keys: what the landing sensors of every domain share."""

from collections.abc import Sequence

import dagster as dg

from tracseq_dagster.landing import ScanResult

# Run tag through which a sensor tells a run which file a partition came from.
SOURCE_PATH_TAG = "tracseq/source_path"


def new_partition_keys(
    context: dg.SensorEvaluationContext,
    scan: ScanResult,
    partitions: Sequence[dg.DynamicPartitionsDefinition],
    noun: str,
) -> dict[str, str]:
    """Content hash → path of the finished files whose bytes no partition (of ``partitions``) holds yet (logging the rest)."""
    for error in scan.errors:
        context.log.warning(f"Cannot read {error}; retrying on the next tick.")
    if scan.waiting:
        context.log.info(f"Waiting for {len(scan.waiting)} {noun}(s) to finish writing: {', '.join(scan.waiting[:5])}")
    new_keys: dict[str, str] = {}
    for ready in scan.ready:
        key = ready.content_hash
        if key in new_keys or any(context.instance.has_dynamic_partition(p.name, key) for p in partitions):
            context.log.info(f"{ready.file.path}: same bytes as a {noun} already ingested ({key}); nothing to do.")
            continue
        new_keys[key] = ready.file.path
    return new_keys
