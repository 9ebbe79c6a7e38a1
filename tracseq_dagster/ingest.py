"""Ingest a folder of exports without a UI: the same jobs the sensor launches, in process.

Used by ``tracseq ingest``, ``make demo`` and the benchmarks. Each file is its own
partition and its own run, so one bad file fails alone and the others go on. A folder may
hold every export kind: each file goes to its kind's job (told by its header, as the sensor
does), sample exports first, so the runs of samples in the same drop find them accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assets.lab_exports.pipelines import EXPORT_PIPELINES, ExportPipeline, pipeline_for
from assets.new_files import SOURCE_PATH_TAG
from tracseq_dagster.export_kinds import DEFAULT_CONTRACT
from tracseq_dagster.landing import LandingFile, content_hash, list_landing_files
from tracseq_dagster.parsing import ExportParseError, detect_export_kind


@dataclass
class IngestOutcome:
    """What happened to one file."""

    path: str
    file_hash: str
    status: str  # "ingested", "failed", "unchanged" (same bytes already ingested)
    run_id: str | None = None
    error: str | None = None
    rows_accepted: int | None = None
    rows_quarantined: int | None = None
    kind: str = DEFAULT_CONTRACT.name  # the export kind's contract name


def ingest_folder(
    folder: str | Path,
    *,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    force: bool = False,
    on_file: Callable[[IngestOutcome], None] | None = None,
    log_level: str = "DEBUG",
) -> list[IngestOutcome]:
    """Materialize raw → validated/quarantined for every export in ``folder``, samples first.

    Files whose bytes were already ingested are skipped unless ``force``. ``log_level``
    sets the console logger of the runs (the instance keeps every event regardless). A file
    of no known kind runs the sample job, which fails naming what the file lacks per kind.
    """
    outcomes = []
    for pipeline, landing_file in _by_kind(list_landing_files(str(folder))):
        key = content_hash(landing_file.path)
        if not force and _is_materialized(instance, key):
            outcome = IngestOutcome(landing_file.path, key, "unchanged", kind=pipeline.kind)
        else:
            job = defs.resolve_job_def(pipeline.ingest_job)
            result = run_file_partition(job, instance, pipeline.partitions, key, landing_file.path, log_level)
            if result.success:
                outcome = IngestOutcome(
                    landing_file.path,
                    key,
                    "ingested",
                    run_id=result.run_id,
                    rows_accepted=_row_count(instance, pipeline.validated_asset, key),
                    rows_quarantined=_row_count(instance, pipeline.quarantined_asset, key),
                    kind=pipeline.kind,
                )
            else:
                outcome = IngestOutcome(
                    landing_file.path, key, "failed", run_id=result.run_id, error=failure_message(result), kind=pipeline.kind
                )
        outcomes.append(outcome)
        if on_file is not None:
            on_file(outcome)
    return outcomes


def _by_kind(files: list[LandingFile]) -> list[tuple[ExportPipeline, LandingFile]]:
    """Each file with its kind's pipeline, in ingestion order of the kinds (stable within a kind)."""
    routed = []
    for landing_file in files:
        try:
            contract = detect_export_kind(landing_file.path)
        except (ExportParseError, OSError):  # its run fails with the reason, as from the sensor
            contract = DEFAULT_CONTRACT
        routed.append((pipeline_for(contract), landing_file))
    order = {pipeline.kind: i for i, pipeline in enumerate(EXPORT_PIPELINES)}
    return sorted(routed, key=lambda pair: order[pair[0].kind])


def build_features(*, defs: dg.Definitions, instance: dg.DagsterInstance, log_level: str = "DEBUG") -> dg.ExecuteInProcessResult:
    """Materialize sample_features from every accepted sample."""
    return defs.resolve_job_def("build_sample_features").execute_in_process(
        run_config=console_log_level(log_level), instance=instance, raise_on_error=False
    )


def run_file_partition(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    partitions: dg.DynamicPartitionsDefinition,
    key: str,
    path: str,
    log_level: str,
) -> dg.ExecuteInProcessResult:
    """Run ``job`` in this process for one landed file: its content hash becomes a partition
    of ``partitions`` (if new) and the run carries the file's path, as a sensor run would."""
    instance.add_dynamic_partitions(_name(partitions), [key])
    return job.execute_in_process(
        run_config=console_log_level(log_level),
        instance=instance,
        partition_key=key,
        tags={SOURCE_PATH_TAG: path},
        raise_on_error=False,
    )


def console_log_level(level: str) -> dict:
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def _is_materialized(instance: dg.DagsterInstance, key: str) -> bool:
    """Whether these bytes were ingested already, as whichever kind."""
    return any(
        instance.has_dynamic_partition(_name(p.partitions), key)
        and _latest_materialization(instance, p.validated_asset, key) is not None
        for p in EXPORT_PIPELINES
    )


def _name(partitions: dg.DynamicPartitionsDefinition) -> str:
    """The partitions' name: Dagster types it Optional (a definition may list its keys through a
    function instead), but the export pipelines' partitions are all named."""
    assert partitions.name is not None, "the export pipelines' dynamic partitions are named"
    return partitions.name


def _latest_materialization(instance: dg.DagsterInstance, asset: str, partition: str) -> dg.AssetMaterialization | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization if records else None


def _row_count(instance: dg.DagsterInstance, asset: str, partition: str) -> int | None:
    materialization = _latest_materialization(instance, asset, partition)
    if materialization is None or "dagster/row_count" not in materialization.metadata:
        return None
    value = materialization.metadata["dagster/row_count"].value
    return int(value) if isinstance(value, int | float | str) else None


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The user-facing reason of the first failed step (a dg.Failure's description).

    A step failed by a blocking asset check (Dagster's own "1 blocking asset check failed")
    is explained by the failed checks' descriptions, which name the file, rule, column and lines.
    """
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            if data.error is not None:
                if data.error.cls_name == "DagsterAssetCheckFailedError":
                    return _failed_checks_message(result, event.step_key) or data.error.message.strip()
                # The user's exception is the innermost cause of Dagster's step error.
                error = data.error
                while error.cause is not None:
                    error = error.cause
                return error.message.strip()
    return "run failed"


def _failed_checks_message(result: dg.ExecuteInProcessResult, step_key: str | None) -> str | None:
    """The descriptions (else names) of the checks that failed in ``step_key``."""
    failed = [
        event.asset_check_evaluation_data
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and (step_key is None or event.step_key == step_key)
        and not event.asset_check_evaluation_data.passed
    ]
    if not failed:
        return None
    return " | ".join(
        e.description or f"blocking check {e.check_name} on {e.asset_key.to_user_string()} failed (see its metadata)"
        for e in failed
    )
