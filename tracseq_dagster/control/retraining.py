"""Launching a retraining on the Dagster webserver, through Dagster's GraphQL client.

A retraining is what the retraining sensor starts (``assets/training/retraining.py``): one
``automl_sweep`` run per family of the model, tagged with a batch name and the model; the
sensor then chains ``register_and_promote`` once the batch's sweeps have finished. The
management API submits the same runs with the same tags, so the daemon finishes the job
exactly as for a batch it started itself.

Without ``TRACSEQ_DAGSTER_URL`` there is no webserver to talk to: :class:`RetrainUnavailable`
names what is missing (the API answers 503). ``dagster_graphql`` is imported only here, when
a launch happens: the rest of the control plane imports no Dagster.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

#: The run tags of the retraining sensor (tracseq_dagster.monitoring.retraining).
from tracseq_dagster.monitoring.retraining import RETRAIN_BATCH_TAG, RETRAIN_MODEL_TAG, RETRAIN_REASON_TAG

SWEEP_JOB = "automl_sweep"
#: Dagster's location of the project's definitions (workspace.yaml); TRACSEQ_DAGSTER_LOCATION overrides.
DEFAULT_LOCATION = "tracseq_dagster"


class RetrainUnavailable(RuntimeError):
    """No Dagster webserver is configured or reachable; the message says which and how to fix it."""


def sweep_partition_tags(model: str, family: str) -> dict[str, str]:
    """The tags of an ``automl_trials`` partition (model × family), as Dagster writes a multi-partition key:
    dimension values joined by ``|`` in dimension-name order (family, model)."""
    return {"dagster/partition": f"{family}|{model}", "dagster/partition/family": family, "dagster/partition/model": model}


def launch_retraining(
    url: str | None, model: str, families: tuple[str, ...], reason: str, actor: str, location: str | None = None
) -> dict[str, object]:
    """Submit one sweep run per family; returns the batch name and the run ids."""
    if url is None:
        raise RetrainUnavailable(
            "no Dagster webserver is configured: set TRACSEQ_DAGSTER_URL (e.g. http://dagster-webserver:3000) "
            "to launch retrainings from the API, or run tracseq train"
        )
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    from tracseq_dagster.settings import ConfigurationError, require_reachable

    try:  # a refused connection in a second, instead of the GraphQL client's long wrapped error
        require_reachable("TRACSEQ_DAGSTER_URL", url, what="the Dagster webserver", fix="start it or fix TRACSEQ_DAGSTER_URL")
    except ConfigurationError as error:
        raise RetrainUnavailable(str(error)) from None
    parts = urlsplit(url)
    client = DagsterGraphQLClient(
        parts.hostname or "localhost", port_number=parts.port, use_https=parts.scheme == "https", timeout=30,
        path_prefix=parts.path.rstrip("/"),
    )  # fmt: skip
    batch = f"api-{datetime.now(UTC):%Y%m%dT%H%M%S}-{model}"
    runs = []
    for family in families:
        tags = {RETRAIN_BATCH_TAG: batch, RETRAIN_MODEL_TAG: model, RETRAIN_REASON_TAG: f"{reason} (by {actor})"[:1000],
                **sweep_partition_tags(model, family)}  # fmt: skip
        try:
            runs.append(client.submit_job_execution(SWEEP_JOB, repository_location_name=location or DEFAULT_LOCATION, tags=tags))
        except DagsterGraphQLClientError as error:
            first = str(error).strip().splitlines()[0][:500] if str(error).strip() else type(error).__name__
            raise RetrainUnavailable(
                f"the Dagster webserver at TRACSEQ_DAGSTER_URL={url} refused the launch of {SWEEP_JOB}: {first}"
            ) from None
        except Exception as error:  # noqa: BLE001 - requests' connection errors and the like
            raise RetrainUnavailable(
                f"the Dagster webserver at TRACSEQ_DAGSTER_URL={url} cannot be reached ({type(error).__name__}): start it or fix the URL"
            ) from None
    return {"batch": batch, "runs": runs, "families": list(families)}
