"""The raw export assets: one partition per export file, parsed into the lake, one per export kind.

``raw_lab_exports`` (sample exports) and ``raw_run_exports`` (sequencing run exports) are built
by one factory from their :class:`~assets.lab_exports.pipelines.ExportPipeline`.
"""

import dagster as dg

from assets.lab_exports.pipelines import RUN_PIPELINE, SAMPLE_PIPELINE, ExportPipeline, pipeline_for
from assets.metadata import expectation_metadata, preview
from assets.new_files import SOURCE_PATH_TAG
from resources import ExportParsingResource, LakeResource, LandingZoneResource
from tracseq_dagster.expectations import run_expectation_suite, suite_frame
from tracseq_dagster.parsing import ExportParseError, detect_export_kind, parse_export_to_parquet


def build_raw_export_asset(pipeline: ExportPipeline) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """The raw asset of one export kind and its on-demand raw-rows check."""
    contract = pipeline.contract

    @dg.asset(
        name=pipeline.raw_asset,
        partitions_def=pipeline.partitions,
        group_name=pipeline.group,
        kinds={"pandas", "parquet"},
        pool="lab_exports",
        description=f"One {contract.title} (CSV, Parquet or JSON Lines), parsed and typed to its contract. "
        "The partition key is the SHA-256 of the file's bytes; the original file is only read, never "
        "moved or changed. A file that cannot be parsed at all, or is of another kind, fails this "
        "partition only, naming file, line and column.",
    )
    def raw_export(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        landing_zone: LandingZoneResource,
        export_parsing: ExportParsingResource,
    ) -> dg.MaterializeResult:
        """Typed rows, the cells that could not be typed and a parse summary (with the file's
        kind) land in the lake with the file hash and source line numbers."""
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
        options = {"dayfirst": export_parsing.dayfirst, "naive_timezone": export_parsing.naive_timezone}
        try:
            # The kind is told again here (the sensor routed by it): a partition materialized by
            # hand from the wrong kind's asset fails, and a file of no kind names what it lacks.
            detected = detect_export_kind(source, **options)
            if detected is not contract:
                raise dg.Failure(
                    f"{source} is a {detected.title}, not a {contract.title}: "
                    f"ingest it with the job {pipeline_for(detected).ingest_job}."
                )
            summary = parse_export_to_parquet(
                source,
                lake_.raw_path(file_hash),
                file_hash=file_hash,
                chunk_rows=export_parsing.chunk_rows,
                contract=contract,
                **options,
            )
        except ExportParseError as error:
            raise dg.Failure(
                description=str(error),
                metadata={"file": error.file, "line": error.line or 0, "column": error.column or "", "reason": error.reason},
            ) from error
        for warning in summary.warnings:
            context.log.warning(f"{source}: {warning}")
        lake_.write_record(
            file_hash,
            source,
            summary.rows,
            extra={"dialect": vars(summary.dialect), "warnings": summary.warnings},
            kind=contract.name,
        )
        return dg.MaterializeResult(
            metadata={
                "source": source,
                "file_hash": file_hash,
                "kind": contract.name,
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
        asset=raw_export,
        name="raw_rows_meet_contract",
        partitions_def=pipeline.partitions,
        description=f"The {contract.title} contract's Great Expectations suite on the raw rows, before "
        "quarantine, with Data Docs. Warns (does not block): quarantine is what removes bad rows; this "
        f"shows a person what arrived. On demand (UI or the {pipeline.audit_job} job), not part of every ingest.",
    )
    def raw_rows_meet_contract(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        lake_ = lake.lake()
        frame = lake_.read_table(lake_.raw_path(context.partition_key))
        samples = lake_.accepted_samples() if contract.needs_accepted_samples else None
        summary = run_expectation_suite(
            suite_frame(frame, contract, samples),
            project_dir=lake_.gx_dir,
            run_name=f"raw-{context.partition_key}",
            contract=contract,
        )
        return dg.AssetCheckResult(
            passed=summary.success,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=expectation_metadata(summary),
        )

    return raw_export, raw_rows_meet_contract


raw_lab_exports, raw_rows_meet_contract = build_raw_export_asset(SAMPLE_PIPELINE)
raw_run_exports, raw_run_rows_meet_contract = build_raw_export_asset(RUN_PIPELINE)
