"""``tracseq operations``: run the lab operations once on what the lake holds, as the schedules would.

In order, because each reads the one before: the demand forecast (the utilisation's intake rate),
the freezer state and storage utilisation, anomalies and the alerts (which read the freezers'
excursion risk); then the weekly QC report of the week of the latest receipt, for the project
that received the most samples that week. ``make demo`` runs it after the models; a job that
fails is named with its run id and the others still run (exit 1 at the end).
"""

from __future__ import annotations

import typer

#: The operations jobs, in the order their inputs need.
JOBS: tuple[str, ...] = ("demand_forecast_job", "storage_state", "lab_alerts_job")


def operations_command(
    report: bool = typer.Option(True, help="Also write the QC report of the latest week's busiest project."),
) -> None:
    """Run the demand forecast, freezer state, storage utilisation, anomalies and alerts, then one QC report."""
    from tracseq_dagster import settings
    from tracseq_dagster.definitions import build_definitions
    from tracseq_dagster.ingest import console_log_level
    from tracseq_dagster.instance import get_instance

    defs, instance = build_definitions(), get_instance()
    failed = []
    for name in JOBS:
        result = defs.resolve_job_def(name).execute_in_process(
            run_config=console_log_level("WARNING"), instance=instance, raise_on_error=False
        )
        done = sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events() if e.asset_key)
        typer.echo(f"{name}: {'ok' if result.success else 'FAILED'} (run {result.run_id[:8]}; {', '.join(done) or 'nothing'})")
        if not result.success:
            failed.append(name)
    if report:
        _latest_report(settings.lake_dir())
    if failed:
        raise typer.Exit(code=1)


def _latest_report(lake_dir: str) -> None:
    from tracseq_dagster import settings
    from tracseq_dagster.documents.llm import OllamaChat
    from tracseq_dagster.lake import Lake
    from tracseq_dagster.operations.qc_report import IsoWeek
    from tracseq_dagster.operations.report_files import produce_report

    lake = Lake(lake_dir)
    samples = lake.read_validated(columns=["project_id", "received_ts"]).dropna()
    if samples.empty:
        typer.echo("QC report: no accepted samples yet, nothing to report")
        return
    week = IsoWeek.of(samples["received_ts"].max().date())
    in_week = samples[(samples["received_ts"] >= week.start) & (samples["received_ts"] < week.end)]
    project = str(in_week["project_id"].value_counts().idxmax())
    chat = OllamaChat(host=settings.ollama_host(), model=settings.ollama_model(), timeout_s=settings.ollama_timeout_s())
    files = produce_report(lake, week, project, prediction_log=settings.prediction_log_url(), chat=chat)
    typer.echo(f"QC report {project} {week.key}: {files.html} and {files.pdf} (summary: {files.report.summary.status})")
