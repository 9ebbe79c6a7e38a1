"""Run exports validated before their samples arrived are validated again once they have.

A run export that lands before the sample export holding its samples (two files dropped
together, picked up in either order) has those rows quarantined as ``unknown_sample``.
Validation reads the raw table and the accepted samples, so validating the partition again
after the samples are accepted moves the rows: each row ends in exactly one of the two tables,
as on any validation, and doing it twice changes nothing more.

Only the validation step runs (``validated_runs`` and ``quarantined_runs`` with their blocking
check): the raw table is already in the lake, so the landing file need not still be there and
the export's parse record is not rewritten. The sensor and ``tracseq ingest`` ask
:func:`~tracseq_dagster.awaiting_samples.run_exports_awaiting_samples` which partitions that
would change, and re-validate those only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pyarrow.parquet as pq

from assets.lab_exports.jobs import ingest_run_export_job
from assets.lab_exports.pipelines import RUN_PIPELINE, SAMPLE_PIPELINE
from assets.new_files import SOURCE_PATH_TAG
from resources import LakeResource
from tracseq_dagster import settings
from tracseq_dagster.awaiting_samples import AwaitingExport, run_exports_awaiting_samples
from tracseq_dagster.lake import Lake

#: The assets a re-validation materializes (the blocking check on the accepted rows comes with them).
REVALIDATED_ASSETS: tuple[dg.AssetKey, ...] = (
    dg.AssetKey(RUN_PIPELINE.validated_asset),
    dg.AssetKey(RUN_PIPELINE.quarantined_asset),
)
#: Tag on a re-validation run: why it ran (the landing sensor's runs do not carry it).
REVALIDATION_TAG = "tracseq/revalidation"
AWAITING_SAMPLES = "awaiting_samples"


def revalidation_tags(export: AwaitingExport) -> dict[str, str]:
    return {SOURCE_PATH_TAG: export.source, REVALIDATION_TAG: AWAITING_SAMPLES}


@dg.asset_sensor(
    asset_key=dg.AssetKey(SAMPLE_PIPELINE.validated_asset),
    job=ingest_run_export_job,
    minimum_interval_seconds=settings.sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When validated_samples is materialized, re-validates each run export whose rows were "
    "quarantined as unknown_sample and whose samples are now accepted (one ingest_run_export run per "
    "export, validation step only).",
)
def run_revalidation_sensor(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, lake: LakeResource
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    """Called with the newest materialization of validated_samples since the last tick.

    The lake, not the event, says what to re-validate: several sample exports materialized
    between two ticks are one evaluation. The run key names the run that materialized the
    samples, so each partition is requested at most once per sample materialization the sensor
    sees; a partition whose rows were already moved is not listed again.
    """
    awaiting = run_exports_awaiting_samples(lake.lake())
    if not awaiting:
        yield dg.SkipReason("no quarantined run row names a sample accepted since it was validated")
    for export in awaiting:
        context.log.info(f"{export.source}: {export.rows} quarantined rows name samples accepted since; re-validating")
        yield dg.RunRequest(
            partition_key=export.file_hash,
            run_key=f"{export.file_hash}:{asset_event.run_id}",
            asset_selection=list(REVALIDATED_ASSETS),
            tags=revalidation_tags(export),
        )


@dataclass(frozen=True)
class Revalidation:
    """What re-validating one run export did (``tracseq ingest``)."""

    export: AwaitingExport
    success: bool
    rows_reaccepted: int  # accepted after minus accepted before
    run_id: str
    error: str | None = None


def revalidate_awaiting_run_exports(
    *, defs: dg.Definitions, instance: dg.DagsterInstance, log_level: str = "DEBUG"
) -> list[Revalidation]:
    """In this process, what the sensor requests: one run of the validation step per run export
    whose quarantined rows' samples have been accepted since (for ``tracseq ingest``)."""
    # Imported here: tracseq_dagster.ingest imports assets.lab_exports, whose __init__ imports this module.
    from tracseq_dagster.ingest import console_log_level, failure_message  # noqa: PLC0415

    lake: Lake = defs.resources["lake"].lake()
    job = defs.resolve_job_def(RUN_PIPELINE.ingest_job)
    outcomes = []
    for export in run_exports_awaiting_samples(lake):
        before = _accepted_rows(lake, export.file_hash)
        # Known to this instance even when another one ingested the export into the same lake.
        instance.add_dynamic_partitions(RUN_PIPELINE.partitions.name, [export.file_hash])
        result = job.execute_in_process(
            run_config=console_log_level(log_level),
            instance=instance,
            partition_key=export.file_hash,
            asset_selection=list(REVALIDATED_ASSETS),
            tags=revalidation_tags(export),
            raise_on_error=False,
        )
        outcomes.append(
            Revalidation(
                export,
                result.success,
                _accepted_rows(lake, export.file_hash) - before,
                result.run_id,
                None if result.success else failure_message(result),
            )
        )
    return outcomes


def _accepted_rows(lake: Lake, file_hash: str) -> int:
    path = lake.validated_path(file_hash)
    return pq.read_metadata(path).num_rows if path.exists() else 0
