"""Sensors: new LIMS exports in the landing folder become partitions and runs."""


import dagster as dg

from resources import LandingZoneResource
from tracseq_dagster import settings
from tracseq_dagster.jobs import ingest_lab_export_job
from tracseq_dagster.landing import LandingCursor, scan_landing
from tracseq_dagster.partitions import SOURCE_PATH_TAG, lab_export_partitions


@dg.sensor(
    job=ingest_lab_export_job,
    minimum_interval_seconds=settings.sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the landing folder; each new, finished export becomes one partition and one run.",
)
def lab_export_sensor(context: dg.SensorEvaluationContext, landing_zone: LandingZoneResource) -> dg.SensorResult:
    """A file is picked up once it has stopped changing between two ticks.

    Its content hash is the partition key, so the same bytes dropped again (under any
    name) start nothing, and a changed file becomes a new partition.
    """
    scan = scan_landing(landing_zone.list_files(), LandingCursor.from_json(context.cursor), landing_zone.content_hash)
    for error in scan.errors:
        context.log.warning(f"Cannot read {error}; retrying on the next tick.")
    if scan.waiting:
        context.log.info(f"Waiting for {len(scan.waiting)} file(s) to finish writing: {', '.join(scan.waiting[:5])}")

    new_keys: dict[str, str] = {}
    for ready in scan.ready:
        key = ready.content_hash
        if key in new_keys or context.instance.has_dynamic_partition(lab_export_partitions.name, key):
            context.log.info(f"{ready.file.path}: same bytes as an export already ingested ({key}); nothing to do.")
            continue
        new_keys[key] = ready.file.path

    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=key, run_key=key, tags={SOURCE_PATH_TAG: path}) for key, path in new_keys.items()
        ],
        dynamic_partitions_requests=[lab_export_partitions.build_add_request(list(new_keys))] if new_keys else [],
        cursor=scan.cursor.to_json(),
    )


# Declarative automation keeps sample_features fresh once new exports are validated.
features_automation_sensor = dg.AutomationConditionSensorDefinition(
    "features_automation",
    target=dg.AssetSelection.assets("sample_features", "online_sample_features"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval_s(),
)
