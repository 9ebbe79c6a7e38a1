"""The contract applied row by row: accepted and quarantined rows of one export, per export kind.

``validate_lab_export`` (``validated_samples``, ``quarantined_samples``) and
``validate_run_export`` (``validated_runs``, ``quarantined_runs``) are built by one factory
from their :class:`~assets.lab_exports.pipelines.ExportPipeline`, each with the blocking
check ``accepted_rows_meet_contract`` on its accepted rows.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from assets.lab_exports.pipelines import RUN_PIPELINE, SAMPLE_PIPELINE, ExportPipeline
from assets.metadata import expectation_metadata, preview, records_table
from resources import LakeResource
from tracseq_dagster.contract import ROW_NUMBER, SOURCE_FILE
from tracseq_dagster.contract_failures import explain_contract_failure, failure_message
from tracseq_dagster.expectations import run_expectation_suite, run_expectation_suite_detailing_failures, suite_frame
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.lake import Lake
from tracseq_dagster.rules import UniqueAcrossExportsRule
from tracseq_dagster.validation import validate_samples

CONTRACT_CHECK = "accepted_rows_meet_contract"


def build_validation_asset(pipeline: ExportPipeline) -> dg.AssetsDefinition:
    """The accepted/quarantined pair of one export kind, with its blocking contract check."""
    contract = pipeline.contract
    validated, quarantined = pipeline.validated_asset, pipeline.quarantined_asset
    key = ", ".join(contract.key_columns)
    lookups = (
        " Rows whose sample is not among the accepted samples, or whose library was prepared before "
        "the sample was received, are quarantined."
        if contract.needs_accepted_samples
        else ""
    )

    @dg.multi_asset(
        name=pipeline.validation_op,
        specs=[
            dg.AssetSpec(
                validated,
                deps=[pipeline.raw_asset],
                group_name=pipeline.group,
                kinds={"pandas", "parquet"},
                description=f"Rows of one {contract.title} ({pipeline.rows_noun}) that pass every rule of its "
                f"contract, with {key} unique across all current exports.{lookups}",
            ),
            dg.AssetSpec(
                quarantined,
                deps=[pipeline.raw_asset],
                group_name=pipeline.group,
                kinds={"pandas", "parquet"},
                description="Every rejected row of one export, unchanged, with the rules it broke "
                "and the file and line it came from.",
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                CONTRACT_CHECK,
                asset=validated,
                blocking=True,
                description=f"The Great Expectations suite of the {contract.title} contract on the accepted rows, "
                f"with {key} uniqueness across all current exports. Blocks downstream assets when it fails.",
            )
        ],
        partitions_def=pipeline.partitions,
        pool="lab_exports",
    )
    def validate_export(
        context: dg.AssetExecutionContext, lake: LakeResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Split one parsed export into accepted and quarantined rows.

        Nothing is lost: every input row lands in exactly one of the two tables. Rows whose
        key was already accepted from another export are quarantined; a fixed file dropped
        again under the same name supersedes its earlier version instead.
        """
        lake_ = lake.lake()
        file_hash = context.partition_key
        frame = lake_.read_table(lake_.raw_path(file_hash))
        issues = lake_.read_table(lake_.issues_path(file_hash)) if lake_.issues_path(file_hash).exists() else None
        source = frame[SOURCE_FILE].iloc[0] if len(frame) else ""
        known = lake_.accepted_keys(contract, exclude_source=source)
        samples = lake_.accepted_samples() if contract.needs_accepted_samples else None

        result = validate_samples(frame, issues, contract=contract, known_keys=known, accepted_samples=samples)
        lake_.write_table(lake_.validated_path(file_hash), result.valid)
        lake_.write_table(lake_.quarantine_path(file_hash), result.quarantined)
        context.log.info(f"{source}: {len(result.valid)} rows accepted, {len(result.quarantined)} quarantined")

        yield dg.MaterializeResult(
            asset_key=validated,
            metadata={
                "source": source,
                "kind": contract.name,
                "dagster/row_count": len(result.valid),
                "rows_in": len(frame),
                "acceptance_rate": round(len(result.valid) / len(frame), 4) if len(frame) else 0.0,
                "preview": preview(result.valid),
            },
        )
        yield dg.MaterializeResult(
            asset_key=quarantined,
            metadata={
                "source": source,
                "kind": contract.name,
                "dagster/row_count": len(result.quarantined),
                "violations_by_rule": records_table(
                    [{"rule": rule, "rows": count} for rule, count in sorted(result.rule_counts.items()) if count]
                ),
                "first_violations": preview(result.violations, rows=20),
                "path": dg.MetadataValue.path(str(lake_.quarantine_path(file_hash))),
            },
        )

        # The suite re-checks what quarantine let through, so a bug in the row rules cannot reach
        # features; the key is re-checked over every current export of the kind, which also
        # catches two exports accepted at the same moment. Rules that look samples up run on
        # the accepted rows joined with the samples' facts (tracseq_dagster.run_rules).
        checked = suite_frame(result.valid, contract, samples)
        per_export = run_expectation_suite_detailing_failures(
            checked,
            project_dir=lake_.gx_dir,
            run_name=f"accepted-{file_hash}",
            include_cross_export_uniqueness=False,
            contract=contract,
        )
        key_columns = list(contract.key_columns)
        others = _accepted_elsewhere(lake_, source, contract)
        all_keys = (
            pd.concat([f[key_columns] for f in (others, result.valid) if len(f)]) if len(others) else result.valid[key_columns]
        )
        across = run_expectation_suite(all_keys, rules=[UniqueAcrossExportsRule(contract.key_columns)], contract=contract)
        passed = per_export.success and across.success
        ids = "ids" if len(key_columns) == 1 else "keys"  # sample_ids; a run export's (run_id, sample_id) keys
        metadata = {
            **expectation_metadata(per_export),
            f"{key_columns[0] + 's' if len(key_columns) == 1 else ids}_across_exports": len(all_keys),
            f"duplicate_{ids}_across_exports": sum(r["unexpected_count"] or 0 for r in across.results if not r["success"]),
        }
        if passed:
            yield dg.AssetCheckResult(check_name=CONTRACT_CHECK, asset_key=validated, passed=True, metadata=metadata)
            return
        # Say which file, rule, column and lines: in the check's result, and as the step's failure,
        # so the run (in the UI, from a sensor, in `tracseq ingest`) fails with this sentence rather
        # than Dagster's "1 blocking asset check failed".
        failures = explain_contract_failure(
            source, checked, [] if per_export.success else per_export.results, others, contract=contract
        )
        message = failure_message(source, failures, CONTRACT_CHECK)
        metadata["failures"] = records_table([f.as_record() for f in failures])
        yield dg.AssetCheckResult(
            check_name=CONTRACT_CHECK, asset_key=validated, passed=False, description=message, metadata=metadata
        )
        raise dg.Failure(description=message, metadata={"source": source, "failures": metadata["failures"]}, allow_retries=False)

    return validate_export


def _accepted_elsewhere(lake_: Lake, source: str, contract: ExportContract) -> pd.DataFrame:
    """The key, file and line of every row accepted from the other current exports of the kind."""
    key = list(contract.key_columns)
    try:
        return lake_.read_validated(exclude_source=source, columns=[*key, SOURCE_FILE, ROW_NUMBER], kind=contract.name)
    except (KeyError, ValueError):  # a table written before lineage columns were kept
        return lake_.read_validated(exclude_source=source, columns=key, kind=contract.name)


validate_lab_export = build_validation_asset(SAMPLE_PIPELINE)
validate_run_export = build_validation_asset(RUN_PIPELINE)
