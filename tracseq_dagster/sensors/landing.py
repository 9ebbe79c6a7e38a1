"""Landing sensors: each new, finished LIMS export or lab document becomes a partition and a run."""

import hashlib
import json
from collections.abc import Sequence

import dagster as dg

from resources import LandingZoneResource
from tracseq_dagster import settings
from tracseq_dagster.export_kinds import DEFAULT_CONTRACT
from tracseq_dagster.export_pipelines import EXPORT_PIPELINES, ExportPipeline, pipeline_for
from tracseq_dagster.jobs import index_documents_job, ingest_document_job, ingest_lab_export_job, ingest_run_export_job
from tracseq_dagster.landing import LandingCursor, ScanResult, scan_landing
from tracseq_dagster.parsing import ExportParseError, detect_export_kind
from tracseq_dagster.partitions import SOURCE_PATH_TAG, document_partitions


@dg.sensor(
    jobs=[ingest_lab_export_job, ingest_run_export_job],
    minimum_interval_seconds=settings.sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the landing folder; each new, finished export becomes one partition and one run "
    "of its kind's job (sample exports: ingest_lab_export, sequencing run exports: ingest_run_export).",
)
def lab_export_sensor(context: dg.SensorEvaluationContext, landing_zone: LandingZoneResource) -> dg.SensorResult:
    """A file is picked up once it has stopped changing between two ticks.

    Its content hash is the partition key, so the same bytes dropped again (under any
    name) start nothing, and a changed file becomes a new partition. Its header's columns
    tell its kind; a file of no kind goes to the sample job, whose run fails naming the
    columns the file lacks for each kind.
    """
    scan = scan_landing(landing_zone.list_files(), LandingCursor.from_json(context.cursor), landing_zone.content_hash)
    new_keys = _new_partition_keys(context, scan, [p.partitions for p in EXPORT_PIPELINES], "file")
    routed: dict[str, ExportPipeline] = {key: _pipeline_of(context, path) for key, path in new_keys.items()}

    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(job_name=routed[key].ingest_job, partition_key=key, run_key=key, tags={SOURCE_PATH_TAG: path})
            for key, path in new_keys.items()
        ],
        dynamic_partitions_requests=[
            pipeline.partitions.build_add_request(keys)
            for pipeline in EXPORT_PIPELINES
            if (keys := [key for key, p in routed.items() if p is pipeline])
        ],
        cursor=scan.cursor.to_json(),
    )


def _pipeline_of(context: dg.SensorEvaluationContext, path: str) -> ExportPipeline:
    try:
        return pipeline_for(detect_export_kind(path))
    except (ExportParseError, OSError) as error:
        context.log.warning(f"{path}: kind not told ({error}); its {DEFAULT_CONTRACT.title} run will fail with the reason.")
        return pipeline_for(DEFAULT_CONTRACT)


def _new_partition_keys(
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


@dg.sensor(
    jobs=[ingest_document_job, index_documents_job],
    minimum_interval_seconds=settings.sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the documents folder: each new, finished document becomes one partition and one run; "
    "a deleted document starts a run of the index that removes its chunks.",
)
def documents_sensor(context: dg.SensorEvaluationContext, documents_landing: LandingZoneResource) -> dg.SensorResult:
    """Like lab_export_sensor: settled files only, keyed by content hash, same bytes start nothing.

    The cursor also keeps the folder's file list (a documents folder holds thousands of
    files, not the millions an export folder may): when a file disappears, the index job
    runs to drop its chunks.
    """
    state = json.loads(context.cursor) if context.cursor else {}
    files = documents_landing.list_files()
    scan: ScanResult = scan_landing(files, LandingCursor.from_json(state.get("scan")), documents_landing.content_hash)
    new_keys = _new_partition_keys(context, scan, [document_partitions], "document")
    run_requests = [
        dg.RunRequest(job_name=ingest_document_job.name, partition_key=key, run_key=key, tags={SOURCE_PATH_TAG: path})
        for key, path in new_keys.items()
    ]
    paths = sorted(f.path for f in files)
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    previous = set(state.get("paths_seen", []))
    if previous - set(paths):
        context.log.info(f"Document(s) removed from the folder: {', '.join(sorted(previous - set(paths))[:5])}")
        run_requests.append(dg.RunRequest(job_name=index_documents_job.name, run_key=f"removed-{digest}"))
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[document_partitions.build_add_request(list(new_keys))] if new_keys else [],
        cursor=json.dumps({"scan": scan.cursor.to_json(), "paths_seen": paths}),
    )
