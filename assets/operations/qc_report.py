"""The weekly lab QC report: one HTML file and one PDF per ISO week and project, every Monday.

Partitioned by week (a Monday-based weekly partition, keyed by the Monday's date) and project (a
dynamic partition: projects appear as their samples arrive). The schedule runs on Monday morning for
the week that just ended, adds the projects that received samples that week as partitions, and asks
one run per project. The domain code is :mod:`tracseq_dagster.operations.report_files`; the files
land in ``<lake>/operations/reports/<week>/<project>.html|.pdf``, the same as ``tracseq report``.
"""

import base64
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from resources import LakeResource, OllamaResource, PredictionLogResource
from tracseq_dagster.operations.qc_report import IsoWeek, ReportInputError
from tracseq_dagster.operations.report_files import produce_report, service_advisor_from_env

#: Weeks start on Monday (ISO 8601), in UTC; keys are the Monday's date (``2026-11-30`` is 2026-W49).
#: ``end_offset=1``: the week in progress is a partition too (a report so far, on demand); the
#: schedule reports the week that ended.
REPORT_WEEKS = dg.WeeklyPartitionsDefinition(start_date="2024-01-01", day_offset=1, timezone="UTC", end_offset=1)
REPORT_PROJECTS = dg.DynamicPartitionsDefinition(name="qc_report_projects")
QC_REPORT_PARTITIONS = dg.MultiPartitionsDefinition({"week": REPORT_WEEKS, "project": REPORT_PROJECTS})


def week_of_key(key: str) -> IsoWeek:
    """The ISO week of a weekly partition key (the Monday's date)."""
    return IsoWeek.of(date.fromisoformat(key))


@dg.asset(
    # Lineage: what the sections read (the prediction log is a resource, not an asset).
    # A week's report reads every export file (one partition each), which Dagster must be told.
    deps=[
        *(dg.AssetDep(s, partition_mapping=dg.AllPartitionMapping()) for s in ("validated_samples", "validated_runs")),
        "anomalies",
        "lab_alerts",
        "storage_utilisation",
        "demand_forecast",
    ],
    group_name="operations",
    partitions_def=QC_REPORT_PARTITIONS,
    kinds={"python", "html", "pdf"},
    description="The weekly lab QC report of one project: samples received, quarantined by rule, predicted at-risk "
    "samples and their recommendations, sequencing success and turnaround forecasts, anomalies, storage utilisation, "
    "demand; HTML and PDF, with a checked plain-language summary when Ollama answers.",
)
def lab_qc_report(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    prediction_log: PredictionLogResource,
    ollama: OllamaResource,
) -> dg.MaterializeResult:
    key = context.partition_key
    keys = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else dict(zip(("project", "week"), key.split("|")))
    week, project = week_of_key(keys["week"]), keys["project"]
    try:
        files = produce_report(
            lake.lake(), week, project, prediction_log=prediction_log.url, chat=ollama.chat(), advisor=service_advisor_from_env()
        )
    except ReportInputError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    report = files.report
    if report.summary.status != "generated":
        context.log.info(f"{week.key} {project}: no summary ({report.summary.reason})")
    metadata: dict[str, dg.RawMetadataValue] = {
        "week": week.key,
        "project": project,
        "html": dg.MetadataValue.path(str(files.html)),
        "pdf": dg.MetadataValue.path(str(files.pdf)),
        "has_data": report.has_data,
        "summary_status": report.summary.status,
        "summary": report.summary.text or f"_(none: {report.summary.reason})_",
        **{f"count_{key}": count for key, count in report.section_counts().items()},
        "notes": dg.MetadataValue.md("\n".join(f"- **{s.title}**: {s.note}" for s in report.sections if s.note) or "_(none)_"),
    }
    plotted = next((s for s in report.sections if s.plot), None)
    if plotted is not None:
        encoded = base64.b64encode(plotted.plot or b"").decode("ascii")
        metadata["plot"] = dg.MetadataValue.md(f"![{plotted.plot_alt}](data:image/png;base64,{encoded})")
    return dg.MaterializeResult(metadata=metadata)


lab_qc_report_job = dg.define_asset_job(
    "lab_qc_report_job",
    selection=[lab_qc_report],
    description="The weekly lab QC report of one week and project.",
)


@dg.schedule(
    name="lab_qc_report_weekly",
    job=lab_qc_report_job,
    cron_schedule="0 6 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every Monday 06:00 UTC: the QC report of the week that ended, one run per project that received samples.",
)
def lab_qc_report_schedule(context: dg.ScheduleEvaluationContext, lake: LakeResource) -> list[dg.RunRequest] | dg.SkipReason:
    moment = context.scheduled_execution_time or datetime.now(UTC)
    week = IsoWeek.of((moment - timedelta(days=7)).date())
    samples = lake.lake().read_validated(columns=["project_id", "received_ts"])
    if len(samples):
        import pandas as pd

        received = pd.to_datetime(samples["received_ts"], utc=True, errors="coerce", format="mixed")
        projects = sorted(
            samples.loc[(received >= week.start) & (received < week.end), "project_id"].dropna().astype(str).unique()
        )
    else:
        projects = []
    if not projects:
        return dg.SkipReason(f"no project received samples in {week.key}: no report to write")
    context.instance.add_dynamic_partitions(REPORT_PROJECTS.name, projects)  # type: ignore[arg-type]
    week_key = week.start.date().isoformat()
    return [
        dg.RunRequest(partition_key=dg.MultiPartitionKey({"week": week_key, "project": project}), run_key=f"{week.key}:{project}")
        for project in projects
    ]


defs = dg.Definitions(assets=[lab_qc_report], jobs=[lab_qc_report_job], schedules=[lab_qc_report_schedule])
