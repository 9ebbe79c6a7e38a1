"""Making the weekly QC report's files: what the ``lab_qc_report`` asset and ``tracseq report`` share.

:func:`produce_report` builds the content (:mod:`.qc_report`), adds the summary
(:mod:`.report_summary`), and writes ``<out>/<week>/<project>.html`` and ``.pdf`` atomically.
Its inputs that live outside the lake are optional and never fatal: the prediction log
(:func:`read_predictions`: a store that does not answer becomes a note in the report) and the
prediction service that words the at-risk samples' recommendations (:class:`ServiceAdvisor`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tracseq_dagster.documents.llm import OllamaChat
from tracseq_dagster.lake import Lake
from tracseq_dagster.operations.qc_report import QUALITY_MODEL, Advisor, IsoWeek, QcReport, build_report
from tracseq_dagster.operations.report_html import render_html
from tracseq_dagster.operations.report_pdf import render_pdf
from tracseq_dagster.operations.report_summary import with_summary

#: Where the report files go in the lake: ``<lake>/operations/reports/<week>/<project>.html|.pdf``.
REPORTS_FOLDER = "reports"


@dataclass(frozen=True)
class ReportFiles:
    report: QcReport
    html: Path
    pdf: Path


def reports_dir(lake: Lake) -> Path:
    return lake.operations_path(REPORTS_FOLDER)


#: Predictions read for a week: those made from its Monday to this long after its end (a run's
#: success is predicted at library preparation, days after receipt). Bounds the read of a long log
#: and keeps a past week's report the same when it is made again later.
PREDICTIONS_AFTER_WEEK = pd.Timedelta(days=28)


def read_predictions(target: str | None, week: IsoWeek) -> tuple[pd.DataFrame | None, str | None]:
    """Every model's predictions made from the week's start to :data:`PREDICTIONS_AFTER_WEEK` after
    its end, or None and why (no log configured, the store does not answer): the report then says
    so instead of failing."""
    if not target:
        return None, "no prediction log configured (TRACSEQ_PREDICTION_LOG)"
    from tracseq_dagster.serving.prediction_log import open_prediction_log

    try:
        since, until = week.start.to_pydatetime(), (week.end + PREDICTIONS_AFTER_WEEK).to_pydatetime()
        return open_prediction_log(target).read(since=since, until=until, model=None), None
    except Exception as error:  # a database down or a bad URL costs the section, not the report
        return None, f"the prediction log could not be read ({' '.join(str(error).split())[:160]})"


class ServiceAdvisor:
    """Recommendations for at-risk samples from the prediction service's ``sample_quality`` route:
    the served champion's risk factors worded as bench actions (``/models/sample_quality/batch_predict``)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0, client: Any = None) -> None:
        self.url, self.token, self.timeout_s = url.rstrip("/"), token, timeout_s
        self.client = client  # an httpx.Client (a test's ASGI client); None: one request of its own

    def __call__(self, samples: pd.DataFrame) -> Mapping[str, Sequence[str]]:
        import httpx

        from tracseq_dagster.models import get_model
        from tracseq_dagster.serving.catalog_schema import request_columns

        columns = [c for c in request_columns(get_model(QUALITY_MODEL)) if c in samples.columns]
        records = json.loads(samples[columns].to_json(orient="records", date_format="iso"))
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = (self.client or httpx).post(f"{self.url}/models/{QUALITY_MODEL}/batch_predict", json={"records": records},
                              headers=headers, timeout=self.timeout_s)  # fmt: skip
        if response.status_code != 200:
            raise RuntimeError(f"the prediction service at {self.url} answered {response.status_code}: {response.text[:120]}")
        answers = response.json()["answers"]
        return {str(a.get("sample_id")): list(a.get("recommendations") or []) for a in answers}


def service_advisor_from_env() -> Advisor | None:
    url = os.getenv("TRACSEQ_PREDICTIONS_URL", "").strip()
    return ServiceAdvisor(url, os.getenv("TRACSEQ_API_TOKEN") or None) if url else None


def produce_report(
    lake: Lake,
    week: IsoWeek | str,
    project: str,
    out_dir: Path | None = None,
    *,
    prediction_log: str | None = None,
    chat: OllamaChat | None = None,
    advisor: Advisor | None = None,
) -> ReportFiles:
    """Build, summarise and write one report; ``out_dir`` defaults to the lake's reports folder."""
    week = IsoWeek.parse(week) if isinstance(week, str) else week
    predictions, note = read_predictions(prediction_log, week)
    report = build_report(lake, week, project, predictions=predictions, predictions_note=note, advisor=advisor)
    with_summary(report, chat)
    folder = (out_dir or reports_dir(lake)) / week.key
    html = _write(folder / f"{_file_name(project)}.html", render_html(report).encode("utf-8"))
    pdf = _write(folder / f"{_file_name(project)}.pdf", render_pdf(report))
    return ReportFiles(report, html, pdf)


def _file_name(project: str) -> str:
    """A project id as a file name (ids are free text in the contract: no separators, no hidden files)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in project).lstrip(".") or "_"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return path
