"""Lab exports (samples, sequencing runs): raw, validated and quarantined assets per export kind,
their contract checks, the ingest and audit jobs, the landing sensor, and the sensor re-validating
run exports whose samples arrived after them."""

import dagster as dg

from assets.lab_exports.jobs import audit_raw_export_job, audit_raw_run_export_job, ingest_lab_export_job, ingest_run_export_job
from assets.lab_exports.raw import raw_lab_exports, raw_rows_meet_contract, raw_run_exports, raw_run_rows_meet_contract
from assets.lab_exports.revalidation import run_revalidation_sensor
from assets.lab_exports.sensors import lab_export_sensor
from assets.lab_exports.validation import validate_lab_export, validate_run_export

defs = dg.Definitions(
    assets=[raw_lab_exports, validate_lab_export, raw_run_exports, validate_run_export],
    asset_checks=[raw_rows_meet_contract, raw_run_rows_meet_contract],
    jobs=[ingest_lab_export_job, audit_raw_export_job, ingest_run_export_job, audit_raw_run_export_job],
    sensors=[lab_export_sensor, run_revalidation_sensor],
)
