"""The landing sensor of LIMS exports: each new, finished export becomes a partition and a run of its kind's job."""

import dagster as dg

from assets.lab_exports.jobs import ingest_lab_export_job, ingest_run_export_job
from assets.lab_exports.pipelines import EXPORT_PIPELINES, ExportPipeline, pipeline_for
from assets.new_files import SOURCE_PATH_TAG, new_partition_keys
from resources import LandingZoneResource
from tracseq_dagster import settings
from tracseq_dagster.export_kinds import DEFAULT_CONTRACT
from tracseq_dagster.landing import LandingCursor, scan_landing
from tracseq_dagster.parsing import ExportParseError, detect_export_kind


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
    new_keys = new_partition_keys(context, scan, [p.partitions for p in EXPORT_PIPELINES], "file")
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
