"""``tracseq report``: writes the week's HTML and PDF; an operator's mistake is one error line and
exit code 2, never a traceback; a week with no data is a written report that says so (exit 0)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.qc_report_support import EMPTY_WEEK, PROJECT, WEEK, hand_made_lake, prediction_log_folder
from tracseq_dagster.cli import app


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-cli")
    hand_made_lake(root / "lake")
    return root / "lake"


@pytest.fixture(autouse=True)
def no_ollama_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    monkeypatch.setenv("TRACSEQ_PREDICTION_LOG", str(prediction_log_folder(tmp_path / "log")))
    monkeypatch.delenv("TRACSEQ_PREDICTIONS_URL", raising=False)


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["report", *args])


def test_writes_the_html_and_the_pdf(lake_dir: Path, tmp_path: Path) -> None:
    result = run("--week", WEEK, "--project", PROJECT, "--lake", str(lake_dir), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    html, pdf = tmp_path / "out" / WEEK / f"{PROJECT}.html", tmp_path / "out" / WEEK / f"{PROJECT}.pdf"
    assert f"wrote {html}" in result.stdout and f"wrote {pdf}" in result.stdout
    assert "received 3, quarantined 2, at_risk 2" in result.stdout
    assert "summary: unavailable (Ollama is not reachable" in result.stdout
    assert "Lab QC report: P012, week 2026-W49" in html.read_text() and pdf.read_bytes().startswith(b"%PDF-")


def test_default_folder_is_the_lakes_reports(lake_dir: Path) -> None:
    result = run("--week", WEEK, "--project", PROJECT, "--lake", str(lake_dir), "--no-summary")
    assert result.exit_code == 0, result.output
    assert (lake_dir / "operations" / "reports" / WEEK / f"{PROJECT}.pdf").exists()
    assert "summary: off" in result.stdout


def test_a_week_with_no_data_is_written_and_said(lake_dir: Path, tmp_path: Path) -> None:
    result = run("--week", EMPTY_WEEK, "--project", PROJECT, "--lake", str(lake_dir), "--out", str(tmp_path), "--no-summary")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{PROJECT} {EMPTY_WEEK}: no data")
    assert (tmp_path / EMPTY_WEEK / f"{PROJECT}.html").exists()


@pytest.mark.parametrize(
    ("week", "project", "message"),
    [
        ("2026-49", PROJECT, "error: week '2026-49' is not an ISO week: write it like 2026-W49"),
        ("2025-W53", PROJECT, "error: week '2025-W53' does not exist: 2025 has weeks W01 to W52"),
        ("2999-W01", PROJECT, "error: week 2999-W01 has not begun yet"),
        (WEEK, "P404", "error: project 'P404' has no accepted sample in the lake"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(lake_dir: Path, tmp_path: Path, week: str, project: str, message: str) -> None:
    result = run("--week", week, "--project", project, "--lake", str(lake_dir), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_a_missing_lake_is_one_error_line(tmp_path: Path) -> None:
    result = run("--week", WEEK, "--project", PROJECT, "--lake", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: the lake folder {tmp_path / 'nowhere'} does not exist: run tracseq ingest first, or pass --lake\n"
    )
