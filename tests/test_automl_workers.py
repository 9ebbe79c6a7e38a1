"""A sweep on two worker processes: two fits really run at once, every trial reaches the caller's
``on_trial``, each family's trials are those it runs alone, and one worker is today's sweep."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from tracseq_dagster.automl import AutoMLConfig, TrialRecord, parallel, run_automl
from tracseq_dagster.automl.engine import family_groups

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _frame() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def test_families_are_dealt_cheapest_first_round_robin() -> None:
    everything = ["random_forest", "mlp", "gradient_boosting", "xgboost", "lightgbm", "logistic"]
    assert family_groups(everything, 2) == [["logistic", "xgboost", "mlp"], ["lightgbm", "gradient_boosting", "random_forest"]]
    assert family_groups(["lightgbm", "logistic"], 3) == [["logistic"], ["lightgbm"]]  # no empty group
    assert family_groups(everything, 1) == [["logistic", "lightgbm", "xgboost", "gradient_boosting", "mlp", "random_forest"]]


def test_two_workers_fit_at_the_same_time_and_report_every_trial() -> None:
    # A sweep whose workers are still starting runs alone (engine.WORKERS_READY_SHARE): start them first.
    assert parallel.pool(1).wait_ready(300)
    seen: list[TrialRecord] = []
    config = AutoMLConfig(target="target", families=("logistic", "lightgbm"), time_budget_s=30, max_trials=6, workers=2)
    result = run_automl(_frame(), config, on_trial=seen.append)
    # Two processes: the families' trials ran in different ones.
    pids = {family: {t.pid for t in result.trials if t.family == family} for family in config.families}
    assert len(pids["logistic"]) == 1 and len(pids["lightgbm"]) == 1 and pids["logistic"] != pids["lightgbm"], pids
    # ... at the same time: some trial of one family overlaps some trial of the other.
    logistic = [t for t in result.trials if t.family == "logistic"]
    lightgbm = [t for t in result.trials if t.family == "lightgbm"]
    overlaps = [(a.number, b.number) for a in logistic for b in lightgbm if a.start_s < b.end_s and b.start_s < a.end_s]
    assert overlaps, [(t.family, round(t.start_s, 2), round(t.end_s, 2)) for t in result.trials]
    # Every trial reached on_trial in this process, the worker's too, once each.
    assert sorted((r.family, r.number) for r in seen) == sorted((t.family, t.number) for t in result.trials)
    assert {len([t for t in result.trials if t.family == f]) for f in config.families} == {6}
    assert result.leaderboard and result.best_family in ("logistic", "lightgbm", "ensemble")


def test_each_familys_trials_are_those_it_runs_with_one_worker() -> None:
    """Each family's study lives in one process and is seeded: with max_trials and a budget that
    is not reached, its trials do not depend on how many processes sweep."""

    def trials(workers: int) -> dict[tuple[str, int], tuple[dict[str, object], float | None]]:
        config = AutoMLConfig(
            target="target", families=("logistic", "xgboost"), time_budget_s=60, max_trials=4, workers=workers, ensemble=False
        )
        result = run_automl(_frame(), config)
        return {(t.family, t.number): (t.params, t.cv_mean) for t in result.trials}

    one, two = trials(1), trials(2)
    assert one.keys() == two.keys() and len(one) == 8
    for key in one:
        assert one[key][0] == two[key][0], key
        assert one[key][1] == pytest.approx(two[key][1], abs=1e-12), key


def test_one_worker_a_single_family_and_a_short_default_budget_stay_in_this_process() -> None:
    import os

    assert parallel.pool(1).wait_ready(300)  # workers running: not why these stay here
    for config in (
        AutoMLConfig(target="target", families=("logistic", "lightgbm"), time_budget_s=10, max_trials=2),
        AutoMLConfig(target="target", families=("logistic", "lightgbm"), time_budget_s=20, max_trials=2, workers=1),
        AutoMLConfig(target="target", families=("logistic",), time_budget_s=20, max_trials=2, workers=4),
    ):
        result = run_automl(_frame(), config)
        assert {t.pid for t in result.trials} == {os.getpid()}


def test_the_cli_passes_workers_to_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracseq_dagster.automl as automl
    from tracseq_dagster.cli import app

    csv = tmp_path / "bc.csv"
    _frame().to_csv(csv, index=False)
    seen: list[AutoMLConfig] = []

    def spy(frame: pd.DataFrame, config: AutoMLConfig, **_: object) -> None:
        seen.append(config)
        raise automl.AutoMLInputError("stopped by the test")

    monkeypatch.setattr(automl, "run_automl", spy)
    args = ["automl", "--csv", str(csv), "--target", "target"]
    for extra, expected in (([], None), (["--workers", "2"], 2), (["--workers", "1"], 1)):
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
        assert seen.pop().workers == expected
    assert CliRunner().invoke(app, [*args, "--workers", "0"]).exit_code == 2  # at least one process
    assert not seen


_CALLER = """
import multiprocessing.forkserver, sys, time
from tracseq_dagster.automl import parallel

workers = parallel.pool(1)
assert workers.wait_ready(300)
busy = workers.submit(time.sleep, 600)  # a worker busy in a long "fit"
worker_pids = [process.pid for process in workers.executor._processes.values()]
server_pid = multiprocessing.forkserver._forkserver._forkserver_pid
print(" ".join(map(str, [*worker_pids, server_pid])), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_caller_leaves_no_worker_behind() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    caller = subprocess.Popen([sys.executable, "-c", _CALLER], stdout=subprocess.PIPE, text=True)
    try:
        assert caller.stdout is not None
        pids = [int(pid) for pid in caller.stdout.readline().split()]  # the worker, then the fork server
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        os.kill(caller.pid, signal.SIGKILL)  # no atexit, no executor shutdown
        caller.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in pids), f"worker and fork server {pids}: outlived their killed caller"
    finally:
        if caller.poll() is None:
            caller.kill()
