"""validated_samples and quarantined_samples: the contract applied row by row."""


from collections.abc import Iterator

import dagster as dg
import pandas as pd

from assets.lab_exports import raw_lab_exports
from resources import LakeResource
from tracseq_dagster.contract import ROW_NUMBER, SOURCE_FILE
from tracseq_dagster.contract_failures import explain_contract_failure, failure_message
from tracseq_dagster.expectations import run_expectation_suite, run_expectation_suite_detailing_failures
from tracseq_dagster.metadata import expectation_metadata, preview, records_table
from tracseq_dagster.partitions import lab_export_partitions
from tracseq_dagster.rules import UniqueAcrossExportsRule
from tracseq_dagster.validation import validate_samples

CONTRACT_CHECK = "accepted_rows_meet_contract"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "validated_samples",
            deps=[raw_lab_exports],
            group_name="lab_exports",
            kinds={"pandas", "parquet"},
            description="Rows of one export that pass every rule of the export contract, "
            "with sample ids unique across all current exports.",
        ),
        dg.AssetSpec(
            "quarantined_samples",
            deps=[raw_lab_exports],
            group_name="lab_exports",
            kinds={"pandas", "parquet"},
            description="Every rejected row of one export, unchanged, with the rules it broke "
            "and the file and line it came from.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            CONTRACT_CHECK,
            asset="validated_samples",
            blocking=True,
            description="The Great Expectations suite of the export contract on the accepted rows, "
            "with sample_id uniqueness across all current exports. Blocks features when it fails.",
        )
    ],
    partitions_def=lab_export_partitions,
    pool="lab_exports",
)
def validate_lab_export(context: dg.AssetExecutionContext, lake: LakeResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Split one parsed export into accepted and quarantined rows.

    Nothing is lost: every input row lands in exactly one of the two tables. Rows whose
    sample_id was already accepted from another export are quarantined; a fixed file
    dropped again under the same name supersedes its earlier version instead.
    """
    lake_ = lake.lake()
    file_hash = context.partition_key
    frame = lake_.read_table(lake_.raw_path(file_hash))
    issues = lake_.read_table(lake_.issues_path(file_hash)) if lake_.issues_path(file_hash).exists() else None
    source = frame[SOURCE_FILE].iloc[0] if len(frame) else ""
    known_ids = lake_.accepted_sample_ids(exclude_source=source)

    result = validate_samples(frame, issues, known_ids)
    lake_.write_table(lake_.validated_path(file_hash), result.valid)
    lake_.write_table(lake_.quarantine_path(file_hash), result.quarantined)
    context.log.info(f"{source}: {len(result.valid)} rows accepted, {len(result.quarantined)} quarantined")

    yield dg.MaterializeResult(
        asset_key="validated_samples",
        metadata={
            "source": source,
            "dagster/row_count": len(result.valid),
            "rows_in": len(frame),
            "acceptance_rate": round(len(result.valid) / len(frame), 4) if len(frame) else 0.0,
            "preview": preview(result.valid),
        },
    )
    yield dg.MaterializeResult(
        asset_key="quarantined_samples",
        metadata={
            "source": source,
            "dagster/row_count": len(result.quarantined),
            "violations_by_rule": records_table(
                [{"rule": rule, "rows": count} for rule, count in sorted(result.rule_counts.items()) if count]
            ),
            "first_violations": preview(result.violations, rows=20),
            "path": dg.MetadataValue.path(str(lake_.quarantine_path(file_hash))),
        },
    )

    # The suite re-checks what quarantine let through, so a bug in the row rules cannot reach
    # features; sample_id uniqueness is re-checked over every current export, which also
    # catches two exports accepted at the same moment.
    per_export = run_expectation_suite_detailing_failures(
        result.valid, project_dir=lake_.gx_dir, run_name=f"accepted-{file_hash}", include_cross_export_uniqueness=False
    )
    others = _accepted_elsewhere(lake_, source)
    all_ids = pd.concat([f[["sample_id"]] for f in (others, result.valid) if len(f)]) if len(others) else result.valid[["sample_id"]]
    across = run_expectation_suite(all_ids, rules=[UniqueAcrossExportsRule()])
    passed = per_export.success and across.success
    metadata = {
        **expectation_metadata(per_export),
        "sample_ids_across_exports": len(all_ids),
        "duplicate_ids_across_exports": sum(r["unexpected_count"] or 0 for r in across.results if not r["success"]),
    }
    if passed:
        yield dg.AssetCheckResult(check_name=CONTRACT_CHECK, asset_key="validated_samples", passed=True, metadata=metadata)
        return
    # Say which file, rule, column and lines: in the check's result, and as the step's failure,
    # so the run (in the UI, from a sensor, in `tracseq ingest`) fails with this sentence rather
    # than Dagster's "1 blocking asset check failed".
    failures = explain_contract_failure(source, result.valid, [] if per_export.success else per_export.results, others)
    message = failure_message(source, failures, CONTRACT_CHECK)
    metadata["failures"] = records_table([f.as_record() for f in failures])
    yield dg.AssetCheckResult(
        check_name=CONTRACT_CHECK, asset_key="validated_samples", passed=False, description=message, metadata=metadata
    )
    raise dg.Failure(description=message, metadata={"source": source, "failures": metadata["failures"]}, allow_retries=False)


def _accepted_elsewhere(lake_, source: str) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """sample_id, file and line of every row accepted from the other current exports."""
    try:
        return lake_.read_validated(exclude_source=source, columns=["sample_id", SOURCE_FILE, ROW_NUMBER])
    except (KeyError, ValueError):  # a table written before lineage columns were kept
        return lake_.read_validated(exclude_source=source, columns=["sample_id"])
