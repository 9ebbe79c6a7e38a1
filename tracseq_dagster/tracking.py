"""MLflow tracking of the training pipeline: which runs exist and how they nest.

One **parent run per Dagster run** (tag ``dagster_run_id``), found or created by whichever
step of that Dagster run logs first. Under it:

* one run per model family (``automl_trials`` partition), and under that one run per Optuna
  trial: its hyperparameters, the score of every fold (metric ``fold_score``, step = fold),
  CV mean and spread, fit time, and its state (FINISHED = complete, KILLED = pruned,
  FAILED = the estimator failed, with the reason as a tag);
* one run for ``registered_model`` (the refit winner, its plots and the logged model);
* one run for ``promotion_gate`` (both models' holdout metrics and the decision).

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids rather than
the fluent API's global "active run", so concurrent steps cannot log into each other's runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

from tracseq_dagster.sqlite_lock import first_use_lock

# Model artifacts are downloaded to check their digests (artifact_digest): no progress bar per download
# in the commands' and runs' output (a setting of the process; set it to true to see them).
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

if TYPE_CHECKING:  # only an annotation: serving imports this module and must not load the AutoML engine
    from tracseq_dagster.automl import TrialRecord

DAGSTER_RUN_TAG = "dagster_run_id"
ROLE_TAG = "tracseq.role"
PARENT_TAG = "mlflow.parentRunId"
#: MLflow's limit on a parameter value.
MAX_PARAM_LENGTH = 6000

_TRIAL_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


def open_client(tracking_uri: str, registry_uri: str | None = None) -> MlflowClient:
    """A client whose store is ready to use.

    A SQLite store runs its schema migrations on first use: see :mod:`tracseq_dagster.sqlite_lock`.
    """
    registry_uri = registry_uri or tracking_uri
    with ExitStack() as locks:
        for uri in dict.fromkeys((tracking_uri, registry_uri)):  # each distinct store once
            locks.enter_context(first_use_lock(uri))
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # created meanwhile by another process
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def parent_run(client: MlflowClient, experiment_id: str, dagster_run_id: str) -> str:
    """The parent run of this Dagster run, created by the first step that asks."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{DAGSTER_RUN_TAG} = '{dagster_run_id}' and tags.`{ROLE_TAG}` = 'dagster_run'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        tags={DAGSTER_RUN_TAG: dagster_run_id, ROLE_TAG: "dagster_run"},
        run_name=f"dagster-{dagster_run_id[:8]}",
    )
    return run.info.run_id


def child_run(client: MlflowClient, experiment_id: str, parent_id: str, name: str, role: str, tags: dict[str, str]) -> str:
    """A new run nested under ``parent_id``."""
    run = client.create_run(experiment_id, tags={PARENT_TAG: parent_id, ROLE_TAG: role, **tags}, run_name=name)
    return run.info.run_id


def log_values(client: MlflowClient, run_id: str, metrics: dict[str, float], params: dict[str, object] | None = None) -> None:
    """Metrics (step 0) and parameters of a run in one request."""
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=_params(params or {}),
    )


def _params(values: dict[str, object]) -> list[Param]:
    """MLflow parameters, each value as text within MLflow's length limit."""
    return [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in values.items()]


@contextmanager
def fluent_api(client: MlflowClient) -> Iterator[None]:
    """Point MLflow's module-level API (``log_model``, ``load_model``) at ``client``'s stores.

    Model flavours only exist in the fluent API; this keeps them on the same tracking and
    registry URIs as the client, and restores the previous ones afterwards.
    """
    # The *explicitly set* URIs (None when unset), not get_tracking_uri()'s default: setting that
    # default back would also export it as $MLFLOW_TRACKING_URI to this process and its children.
    tracking_state = mlflow.tracking._tracking_service.utils
    registry_state = mlflow.tracking._model_registry.utils
    previous = (tracking_state._tracking_uri, registry_state._registry_uri, dict(os.environ))
    mlflow.set_tracking_uri(client.tracking_uri)
    # MlflowClient resolves a registry URI for every tracking URI; mlflow types it Optional all the same
    assert client._registry_uri is not None
    mlflow.set_registry_uri(client._registry_uri)
    try:
        yield
    finally:
        tracking_state._tracking_uri, registry_state._registry_uri = previous[0], previous[1]
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            if name in previous[2]:
                os.environ[name] = previous[2][name]
            else:
                os.environ.pop(name, None)


@contextmanager
def running(client: MlflowClient, run_id: str) -> Iterator[str]:
    """Mark ``run_id`` FINISHED when the block ends, FAILED when it raises."""
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


class TrialLogger:
    """``on_trial`` callback of the engine: each trial becomes a run nested under ``family_run_id``."""

    def __init__(self, client: MlflowClient, experiment_id: str, family_run_id: str, tags: dict[str, str]) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.family_run_id = family_run_id
        self.tags = tags

    def __call__(self, record: TrialRecord) -> None:
        tags = {**self.tags, "trial_state": record.state, "trial_number": str(record.number), "family": record.family}
        if record.reason:
            tags["trial_reason"] = record.reason[:MAX_PARAM_LENGTH]
        run_id = child_run(
            self.client, self.experiment_id, self.family_run_id, f"{record.family}-trial-{record.number}", "trial", tags
        )
        now = int(time.time() * 1000)
        metrics = [Metric("fold_score", score, now, fold) for fold, score in enumerate(record.fold_scores)]
        metrics.append(Metric("fit_seconds", record.fit_seconds, now, 0))
        if record.cv_mean is not None:
            metrics += [Metric("cv_mean", record.cv_mean, now, 0), Metric("cv_std", record.cv_std or 0.0, now, 0)]
        self.client.log_batch(run_id, metrics=metrics, params=_params(record.params))
        self.client.set_terminated(run_id, _TRIAL_STATUS[record.state])
