"""``tracseq report --week 2026-W49 --project P012 [--out DIR]``: the weekly QC report's files
from the command line, the same files as the ``lab_qc_report`` asset writes.

An operator's mistake (a malformed or future week, a project the lake has never accepted a sample
of) is one ``error:`` line on stderr and exit code 2. A week with no data is not a mistake: the
report is written, says so, and the command says so too (exit 0). Ollama and the prediction log
are optional: without them the report is complete and says what it lacks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from tracseq_dagster import settings

INPUT_EXIT_CODE = 2


def report_command(
    week: Annotated[str, typer.Option("--week", help="ISO week, e.g. 2026-W49.")],
    project: Annotated[str, typer.Option("--project", help="Project id as in the exports (project_id).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for <week>/<project>.html and .pdf (default: the lake's operations/reports)."),
    ] = None,
    lake: Annotated[Path | None, typer.Option(help="Lake folder (default: $TRACSEQ_LAKE_DIR or data/lake).")] = None,
    summary: Annotated[bool, typer.Option(help="Ask Ollama (OLLAMA_HOST) for a plain-language summary.")] = True,
) -> None:
    """Write the weekly lab QC report of one project (HTML and PDF)."""
    # Imported here: pandas and matplotlib would otherwise slow every other command's start.
    from tracseq_dagster.documents.llm import OllamaChat
    from tracseq_dagster.lake import Lake
    from tracseq_dagster.operations.qc_report import IsoWeek, ReportInputError
    from tracseq_dagster.operations.report_files import produce_report, service_advisor_from_env

    try:
        iso_week = IsoWeek.parse(week)
        if iso_week.start > datetime.now(UTC):
            raise ReportInputError(f"week {iso_week.key} has not begun yet: nothing can be reported for it")
        root = Path(lake) if lake else Path(settings.lake_dir())
        if not root.is_dir():
            raise ReportInputError(f"the lake folder {root} does not exist: run tracseq ingest first, or pass --lake")
        chat = (
            OllamaChat(host=settings.ollama_host(), model=settings.ollama_model(), timeout_s=settings.ollama_timeout_s())
            if summary
            else None
        )
        files = produce_report(
            Lake(root), iso_week, project.strip(), out, prediction_log=settings.prediction_log_url(), chat=chat,
            advisor=service_advisor_from_env(),
        )  # fmt: skip
    except ReportInputError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=INPUT_EXIT_CODE) from None
    report = files.report
    if not report.has_data:
        typer.echo(
            f"{report.project} {report.week.key}: no data (no samples received, nothing quarantined, no anomaly); the report says so."
        )
    counts = ", ".join(f"{key} {count}" for key, count in report.section_counts().items())
    typer.echo(f"sections: {counts}")
    status = report.summary.status
    typer.echo(f"summary: {status}" + (f" ({report.summary.reason})" if report.summary.reason else ""))
    typer.echo(f"wrote {files.html}")
    typer.echo(f"wrote {files.pdf}")
