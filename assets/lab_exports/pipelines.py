"""Each export kind's names in the Dagster code location: partitions, assets, jobs.

One :class:`ExportPipeline` per :class:`~tracseq_dagster.export_contract.ExportContract`; the
asset factories (``assets/lab_exports.py``, ``assets/validation.py``), the jobs, the landing
sensor and ``tracseq ingest`` read these instead of naming sample assets, so a kind is added
here, not by copying its assets. The sample names are the ones the platform always had.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from assets.lab_exports.partitions import lab_export_partitions
from tracseq_dagster.contract import SAMPLE_CONTRACT
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.run_contract import RUN_CONTRACT

# One partition per sequencing run export file, keyed like sample exports by its content hash.
run_export_partitions = dg.DynamicPartitionsDefinition(name="run_exports")


@dataclass(frozen=True)
class ExportPipeline:
    """The Dagster side of one export kind."""

    contract: ExportContract
    partitions: dg.DynamicPartitionsDefinition
    raw_asset: str
    validation_op: str  # the multi-asset writing the validated and quarantined assets
    validated_asset: str
    quarantined_asset: str
    ingest_job: str
    audit_job: str
    rows_noun: str  # what the kind's rows are, in asset descriptions
    group: str = "lab_exports"  # the asset group in the UI (one per kind: one partitioning per group)

    @property
    def kind(self) -> str:
        return self.contract.name


SAMPLE_PIPELINE = ExportPipeline(
    SAMPLE_CONTRACT,
    lab_export_partitions,
    raw_asset="raw_lab_exports",
    validation_op="validate_lab_export",
    validated_asset="validated_samples",
    quarantined_asset="quarantined_samples",
    ingest_job="ingest_lab_export",
    audit_job="audit_raw_export",
    rows_noun="samples",
)
RUN_PIPELINE = ExportPipeline(
    RUN_CONTRACT,
    run_export_partitions,
    raw_asset="raw_run_exports",
    validation_op="validate_run_export",
    validated_asset="validated_runs",
    quarantined_asset="quarantined_runs",
    group="run_exports",
    ingest_job="ingest_run_export",
    audit_job="audit_raw_run_export",
    rows_noun="sequencing runs (one row per sample per run)",
)
#: In ingestion order: samples first, so the runs of a drop find their samples.
EXPORT_PIPELINES: tuple[ExportPipeline, ...] = (SAMPLE_PIPELINE, RUN_PIPELINE)


def pipeline_for(contract: ExportContract) -> ExportPipeline:
    for pipeline in EXPORT_PIPELINES:
        if pipeline.contract is contract:
            return pipeline
    raise KeyError(f"no pipeline for the export kind {contract.name!r}")
