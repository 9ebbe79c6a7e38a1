"""The documents folder's sensors: new documents become partitions; automation carries them into the index."""

import hashlib
import json

import dagster as dg

from assets.documents.jobs import index_documents_job, ingest_document_job
from assets.documents.partitions import document_partitions
from assets.new_files import SOURCE_PATH_TAG, new_partition_keys
from resources import LandingZoneResource
from tracseq_dagster import settings
from tracseq_dagster.landing import LandingCursor, ScanResult, scan_landing


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
    new_keys = new_partition_keys(context, scan, [document_partitions], "document")
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


# New document chunks reach the index (and submission forms the submission table) on their own.
documents_automation_sensor = dg.AutomationConditionSensorDefinition(
    "documents_automation",
    target=dg.AssetSelection.assets("document_index", "submission_metadata"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval_s(),
)
