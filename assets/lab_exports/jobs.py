"""Each export kind's jobs, built by one factory from its :class:`ExportPipeline`."""

import dagster as dg

from assets.lab_exports.pipelines import RUN_PIPELINE, SAMPLE_PIPELINE, ExportPipeline


def build_ingest_job(pipeline: ExportPipeline):  # -> an unresolved asset job (not exported by dagster)
    """One export file of a kind: parse, validate, quarantine, and the blocking contract check.

    The raw-rows check is left out: it re-runs the whole suite on what arrived (as long again as
    the blocking check) and the quarantined asset already lists every violation; a person runs
    it with the audit job (from the UI's Jobs page) to get Data Docs of a raw file.
    """
    return dg.define_asset_job(
        pipeline.ingest_job,
        selection=dg.AssetSelection.assets(
            pipeline.raw_asset, pipeline.validated_asset, pipeline.quarantined_asset
        ).without_checks()
        | dg.AssetSelection.checks_for_assets(pipeline.validated_asset),
        partitions_def=pipeline.partitions,
        description=f"Parse, validate and quarantine one {pipeline.contract.title} (one partition per file).",
    )


def build_audit_job(pipeline: ExportPipeline):  # -> an unresolved asset job (not exported by dagster)
    """Re-parse one export and run its raw-rows check with Data Docs.

    Parsing again is idempotent (same bytes, same table) and lets the job carry the partition:
    Dagster cannot launch a partitioned run of checks alone.
    """
    return dg.define_asset_job(
        pipeline.audit_job,
        selection=dg.AssetSelection.assets(pipeline.raw_asset),
        partitions_def=pipeline.partitions,
        description=f"Re-parse one {pipeline.contract.title} and run the Great Expectations suite with Data Docs on its raw rows.",
    )


ingest_lab_export_job = build_ingest_job(SAMPLE_PIPELINE)
audit_raw_export_job = build_audit_job(SAMPLE_PIPELINE)
ingest_run_export_job = build_ingest_job(RUN_PIPELINE)
audit_raw_run_export_job = build_audit_job(RUN_PIPELINE)
