"""Training through Dagster without a UI: a model's family sweeps in parallel processes, then register and gate.

``tracseq train --model NAME`` and ``make demo`` call :func:`train`. Each family is one
(model, family) partition run of ``automl_sweep`` on the same instance, so the runs, their
MLflow runs and the Optuna studies are exactly what the UI or a daemon-driven backfill would
produce.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets.models.partitions import sweep_partition_key
from tracseq_dagster.ingest import console_log_level, failure_message


@dataclass(frozen=True)
class StepOutcome:
    """One Dagster run of the training: which, whether it succeeded, and why not."""

    name: str
    run_id: str
    success: bool
    error: str | None = None


def train(
    model: str,
    families: tuple[str, ...],
    *,
    sweep_config: dict[str, Any],
    gate_config: dict[str, Any] | None = None,
    workers: int = 2,
    ensemble: bool = True,
    definitions_kwargs: dict[str, Any] | None = None,
    on_step: Callable[[StepOutcome], None] | None = None,
    log_level: str = "ERROR",
) -> list[StepOutcome]:
    """Sweep ``families`` of catalog model ``model`` (``workers`` at a time, each in its own process),
    then register and gate.

    ``ensemble``: whether registration may register the families' weighted ensemble instead of the
    winner (only when it scores better on the holdout; see :mod:`tracseq_dagster.training_ensemble`).

    ``sweep_config`` is the ``SweepConfig`` of every family run; the final step runs when at
    least one family succeeded. The instance is ``$DAGSTER_HOME`` (set it before calling).
    """
    outcomes: list[StepOutcome] = []
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_sweep, model, f, sweep_config, definitions_kwargs or {}, log_level) for f in families]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if on_step:
                on_step(outcome)
    if any(o.success for o in outcomes):
        refit = {"seed": sweep_config.get("seed", 0), "ensemble": ensemble}
        final = _register_and_promote(model, refit, gate_config or {}, definitions_kwargs or {}, log_level)
        outcomes.append(final)
        if on_step:
            on_step(final)
    return outcomes


def prepare_feature_store(definitions_kwargs: dict[str, Any] | None = None, log_level: str = "ERROR") -> StepOutcome:
    """``feast apply`` and the tables training sets are joined from, before the sweeps read them
    (the training assets join through Feast when its store serves the lake)."""
    return _run_job("feast_apply_and_tables", "feature store", {}, definitions_kwargs or {}, log_level)


def _sweep(
    model: str, family: str, sweep_config: dict[str, Any], definitions_kwargs: dict[str, Any], log_level: str
) -> StepOutcome:
    return _run_job(
        "automl_sweep",
        f"automl_trials[{model}|{family}]",
        {"ops": {"automl_trials": {"config": sweep_config}}},
        definitions_kwargs,
        log_level,
        partition_key=sweep_partition_key(model, family),
        tags={"tracseq/trigger": "cli", "tracseq/pid": str(os.getpid())},
    )


def _register_and_promote(
    model: str, refit_config: dict[str, Any], gate_config: dict[str, Any], definitions_kwargs: dict[str, Any], log_level: str
) -> StepOutcome:
    ops = {"registered_model": {"config": refit_config}, "promotion_gate": {"config": gate_config}}
    return _run_job(
        "register_and_promote", f"register_and_promote[{model}]", {"ops": ops}, definitions_kwargs, log_level, partition_key=model
    )


def _run_job(
    job: str,
    step: str,
    run_config: dict[str, Any],
    definitions_kwargs: dict[str, Any],
    log_level: str,
    *,
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
) -> StepOutcome:
    """Run ``job`` of the code location in this process on the ``$DAGSTER_HOME`` instance."""
    from tracseq_dagster.definitions import build_definitions

    result = (
        build_definitions(**definitions_kwargs)
        .resolve_job_def(job)
        .execute_in_process(
            partition_key=partition_key,
            instance=dg.DagsterInstance.get(),
            run_config={**run_config, **console_log_level(log_level)},
            raise_on_error=False,
            tags=tags,
        )
    )
    return StepOutcome(step, result.run_id, result.success, None if result.success else failure_message(result))


def package_bento(definitions_kwargs: dict[str, Any] | None = None, log_level: str = "ERROR") -> StepOutcome:
    """Materialize ``prediction_bento`` (export the champion, build the Bento) on ``$DAGSTER_HOME``."""
    return _run_job("package_bento", "prediction_bento", {}, definitions_kwargs or {}, log_level)
