"""raw_lab_exports: one partition per LIMS export file, parsed into the lake."""


import dagster as dg

from resources import ExportParsingResource, LakeResource, LandingZoneResource
from tracseq_dagster.expectations import run_expectation_suite
from tracseq_dagster.metadata import expectation_metadata, preview
from tracseq_dagster.parsing import ExportParseError, parse_export_to_parquet
from tracseq_dagster.partitions import SOURCE_PATH_TAG, lab_export_partitions


@dg.asset(
    partitions_def=lab_export_partitions,
    group_name="lab_exports",
    kinds={"pandas", "parquet"},
    pool="lab_exports",
)
def raw_lab_exports(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    landing_zone: LandingZoneResource,
    export_parsing: ExportParsingResource,
) -> dg.MaterializeResult:
    """One LIMS export (CSV, Parquet or JSON Lines), parsed and typed to the export contract.

    The partition key is the SHA-256 of the file's bytes. The original file is only
    read, never moved or changed; its typed rows, the cells that could not be typed
    and a parse summary land in the lake with the file hash and source line numbers.
    A file that cannot be parsed at all fails this partition only, naming file, line
    and column.
    """
    file_hash = context.partition_key
    source = context.run.tags.get(SOURCE_PATH_TAG) or landing_zone.locate(file_hash)
    if source is None:
        raise dg.Failure(f"No file with content hash {file_hash} is in the landing folder {landing_zone.url}.")
    if landing_zone.content_hash(source) != file_hash:
        raise dg.Failure(
            f"{source} changed after it was detected (its content hash is no longer {file_hash}); "
            "the sensor will pick the new version up as a new partition."
        )
    lake_ = lake.lake()
    try:
        summary = parse_export_to_parquet(
            source,
            lake_.raw_path(file_hash),
            file_hash=file_hash,
            chunk_rows=export_parsing.chunk_rows,
            dayfirst=export_parsing.dayfirst,
            naive_timezone=export_parsing.naive_timezone,
        )
    except ExportParseError as error:
        raise dg.Failure(
            description=str(error),
            metadata={"file": error.file, "line": error.line or 0, "column": error.column or "", "reason": error.reason},
        ) from error
    for warning in summary.warnings:
        context.log.warning(f"{source}: {warning}")
    lake_.write_record(file_hash, source, summary.rows, extra={"dialect": vars(summary.dialect), "warnings": summary.warnings})
    return dg.MaterializeResult(
        metadata={
            "source": source,
            "file_hash": file_hash,
            "dagster/row_count": summary.rows,
            "cells_not_typed": summary.issues,
            "format": summary.dialect.format,
            "encoding": summary.dialect.encoding or "",
            "separator": summary.dialect.separator or "",
            "decimal": summary.dialect.decimal or "",
            "extra_columns": ", ".join(summary.extra_columns),
            "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in summary.warnings) or "_none_"),
            "path": dg.MetadataValue.path(str(lake_.raw_path(file_hash))),
            "preview": preview(lake_.head(lake_.raw_path(file_hash))),
        }
    )


@dg.asset_check(
    asset=raw_lab_exports,
    partitions_def=lab_export_partitions,
    description="The export contract's Great Expectations suite on the raw rows, before quarantine, "
    "with Data Docs. Warns (does not block): quarantine is what removes bad rows; this shows a person "
    "what arrived. On demand (UI or the audit_raw_export job), not part of every ingest.",
)
def raw_rows_meet_contract(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    lake_ = lake.lake()
    frame = lake_.read_table(lake_.raw_path(context.partition_key))
    summary = run_expectation_suite(frame, project_dir=lake_.gx_dir, run_name=f"raw-{context.partition_key}")
    return dg.AssetCheckResult(
        passed=summary.success,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=expectation_metadata(summary),
    )
