"""The AutoML leaderboard plot, the sweep progress read from Optuna's storage, and the command line's
progress bars: on stderr when it is a terminal, never in the commands' results."""

from __future__ import annotations

import base64
import io
import re
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from tracseq_dagster import cli
from tracseq_dagster.automl.plots import leaderboard_figure
from tracseq_dagster.automl.progress import SweepProgressReader
from tracseq_dagster.plots import markdown_image, png_bytes

PNG_MARKDOWN = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def decoded_png(markdown: str) -> Image.Image:
    match = PNG_MARKDOWN.fullmatch(markdown)
    assert match, markdown[:80]
    image = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
    assert image.format == "PNG"
    return image


def test_leaderboard_figure_is_a_small_png_and_copes_with_an_empty_board() -> None:
    table = pd.DataFrame(
        {
            "family": ["lightgbm", "logistic", "mlp"],
            "cv_mean": [0.86, 0.84, 0.80],
            "cv_std": [0.01, 0.02, float("nan")],
            "complete": [12, 30, 3],
            "pruned": [4, 0, 1],
        }
    )
    image = decoded_png(markdown_image(leaderboard_figure(table, "roc_auc_ovr", True), "board"))
    assert image.width == 600 and abs(image.height - (0.45 * 3 + 1.2) * 100) <= 1
    assert len(png_bytes(leaderboard_figure(table, "roc_auc_ovr", True))) < 60_000
    empty = leaderboard_figure(table.head(0), "rmse", False)
    assert decoded_png(markdown_image(empty, "none")).height > 0


def _study(storage: str, name: str, direction: str, values: list[float | None]) -> None:
    """A study with one trial per value (None: a pruned trial)."""
    study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    for value in values:
        trial = study.ask()
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)


def test_sweep_progress_counts_each_familys_trials_since_a_moment(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    families = ("logistic", "lightgbm", "mlp")
    reader = SweepProgressReader(storage, "sample_quality", families, datetime.now() - timedelta(minutes=1))
    with pytest.raises(Exception):  # noqa: B017 - no tables yet: the reader never creates them
        reader.read()
    _study(storage, "sample_quality-abc123-logistic", "maximize", [0.81, None, 0.84, 0.79])
    _study(storage, "sample_quality-abc123-lightgbm", "maximize", [None])
    _study(storage, "turnaround_hours-def456-logistic", "minimize", [3.0])  # another model: not counted
    progress = reader.read()
    assert progress["logistic"].trials == 4 and progress["logistic"].complete == 3 and progress["logistic"].pruned == 1
    assert progress["logistic"].best == pytest.approx(0.84)
    assert progress["lightgbm"].trials == 1 and progress["lightgbm"].best is None
    assert progress["mlp"].trials == 0
    # A loss is minimised: its best is the smallest.
    regression = SweepProgressReader(storage, "turnaround_hours", ("logistic",), datetime.now() - timedelta(minutes=1)).read()
    assert regression["logistic"].best == pytest.approx(3.0)
    # Trials from before the moment (an earlier run on the same data) are not this run's.
    assert (
        SweepProgressReader(storage, "sample_quality", families, datetime.now() + timedelta(minutes=1)).read()["logistic"].trials
        == 0
    )


def test_progress_bars_only_on_a_terminal_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "err_console", Console(stderr=True, force_terminal=False))
    assert cli.progress_bars().disable
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "err_console", Console(file=buffer, force_terminal=True, width=100))
    with cli.progress_bars(cli.TextColumn("{task.description}"), cli.BarColumn()) as progress:
        assert not progress.disable
        progress.add_task("sweeping", total=2, completed=2)
    assert "sweeping" in buffer.getvalue() and "━" in buffer.getvalue()


def test_sweep_bars_follow_the_storage_and_end_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    monkeypatch.setenv("TRACSEQ_OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "err_console", Console(file=buffer, force_terminal=True, width=120))
    with cli._SweepBars("sample_quality", ("logistic", "lightgbm"), 10.0, None) as bars:
        _study(str(bars.reader.storage_url), "sample_quality-fp-logistic", "maximize", [0.7, 0.83])
        bars._update()
        logistic = bars.progress.tasks[bars.tasks["logistic"]]
        assert logistic.fields["trials"] == 2 and logistic.fields["best"] == "0.8300"
        bars.step_done("automl_trials[sample_quality|logistic]", True)
        assert logistic.finished and "✓" in logistic.description
        bars._update()  # a finished family keeps its full bar
        assert logistic.finished
    assert "sample_quality/logistic ✓" in buffer.getvalue() and "best 0.8300" in buffer.getvalue()


@pytest.mark.slow
def test_tracseq_train_prints_its_results_with_bars_on_stderr_and_plots_the_leaderboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One family, two trials: stdout keeps the step lines and the summary; the bars go to stderr only;
    the leaderboard's plots are in its metadata and in MLflow on the registered model's run."""
    import dagster as dg
    from dagster_helpers import latest_materialization

    from tracseq_dagster.tracking import open_client

    data = tmp_path / "data"
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(data))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TRACSEQ_OPTUNA_STORAGE", raising=False)
    runner = CliRunner()
    assert (
        runner.invoke(cli.app, ["generate-exports", "--rows", "1500", "--seed", "4", "--out", str(data / "landing")]).exit_code
        == 0
    )
    assert runner.invoke(cli.app, ["ingest", str(data / "landing")]).exit_code == 0
    monkeypatch.setattr(cli, "err_console", Console(stderr=True, force_terminal=True, width=120))
    result = runner.invoke(
        cli.app,
        ["train", "--model", "sample_quality", "--families", "logistic", "--budget-s", "30", "--max-trials", "2", "--cv-folds", "2", "--max-ece", "0.5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "✓ automl_trials[sample_quality|logistic]" in result.stdout and "promotion gate" in result.stdout
    assert "━" not in result.stdout and "sample_quality/logistic ✓" in result.stderr
    assert re.search(r"[12] trials, best 0\.\d{4}", result.stderr), result.stderr[-500:]

    board = latest_materialization(dg.DagsterInstance.get(), "automl_leaderboard", "sample_quality").metadata
    assert decoded_png(board["leaderboard_plot"].value).width > 0 and decoded_png(board["optimisation_history"].value).width > 0
    registered = latest_materialization(dg.DagsterInstance.get(), "registered_model", "sample_quality").metadata
    client = open_client(f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
    plots = {a.path for a in client.list_artifacts(registered["mlflow_run_id"].value, "plots")}
    assert {"plots/leaderboard.png", "plots/optimization_history.png"} <= plots


def test_bento_bar_follows_the_bundle_being_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models exported (folders in the run's bundle), then the build once catalog.json is written."""
    import time

    from tracseq_dagster.models import catalog
    from tracseq_dagster.serving.catalog_bundle import CATALOG_FILE, CATALOG_FOLDER

    monkeypatch.setenv("TRACSEQ_LAKE_DIR", str(tmp_path / "lake"))
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "err_console", Console(file=buffer, force_terminal=True, width=120))
    monkeypatch.setattr(cli._BentoBar, "POLL_S", 0.05)
    models = tmp_path / "lake" / "serving" / "run-1" / CATALOG_FOLDER
    with cli._BentoBar() as bar:
        task = bar.progress.tasks[bar.task]
        assert task.total == len(catalog()) + 1
        (models / "sample_quality").mkdir(parents=True)
        deadline = time.monotonic() + 10
        while task.completed < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert task.completed == 1 and "1 done" in task.description
        (models / CATALOG_FILE).write_text("{}")
        while task.description != "building the Bento" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert task.completed == len(catalog())
    assert task.completed == task.total and "Bento built" in buffer.getvalue()
