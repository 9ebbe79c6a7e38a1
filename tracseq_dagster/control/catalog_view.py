"""What ``GET /models`` shows: each catalog model with its champion, challenger, versions and metrics.

Read from the MLflow registry (aliases, version tags such as the gate's verdict and the family)
and from each version's training run (its logged metrics), so the API shows what the registry
holds, never a copy that could drift from it. A model not registered yet lists no versions.
"""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tracseq_dagster.models.spec import ModelSpec
from tracseq_dagster.registry import CHALLENGER, CHAMPION, ModelRegistry

SHOWN_TAGS = ("family", "gate_decision", "training_rows", "champion_since")


class UnknownVersion(LookupError):
    """A version the registry does not hold."""


def _version_summary(client: MlflowClient, version: Any, with_metrics: bool, aliases: dict[str, str | None]) -> dict[str, Any]:
    # Searched versions carry no aliases in every store: they come from the registry's own lookup.
    summary = {
        "version": str(version.version),
        "aliases": sorted(alias for alias, holder in aliases.items() if holder == str(version.version)),
        "created_at": version.creation_timestamp,
        "run_id": version.run_id,
        **{k: version.tags[k] for k in SHOWN_TAGS if k in version.tags},
    }
    if with_metrics:
        summary["metrics"] = run_metrics(client, version.run_id)
    return summary


def run_metrics(client: MlflowClient, run_id: str | None) -> dict[str, float]:
    if not run_id:
        return {}
    try:
        return dict(sorted(client.get_run(run_id).data.metrics.items()))
    except MlflowException:
        return {}


def model_listing(client: MlflowClient, spec: ModelSpec, *, needs_approval: bool) -> dict[str, Any]:
    registry = ModelRegistry(client, spec.name)
    # A registry that does not answer raises here (the API answers 503): an empty listing would be a lie.
    registered = client.search_registered_models(filter_string=f"name = '{spec.name}'")
    versions = registry.versions() if registered else []
    aliases = (
        {alias: _holder(registry, alias) for alias in (CHAMPION, CHALLENGER)}
        if registered
        else dict.fromkeys((CHAMPION, CHALLENGER))
    )
    return {
        **spec.summary(),
        "approval_required": needs_approval,
        "champion": aliases[CHAMPION],
        "challenger": aliases[CHALLENGER],
        "versions": [_version_summary(client, v, True, aliases) for v in versions],
    }


#: What MLflow answers for an alias no version holds (or a model it does not know).
_ABSENT = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def _holder(registry: ModelRegistry, alias: str) -> str | None:
    """The version holding ``alias``, None when none does; a registry failure is raised, not hidden."""
    try:
        return str(registry.client.get_model_version_by_alias(registry.name, alias).version)
    except MlflowException as error:
        if error.error_code in _ABSENT:
            return None
        raise


def version_metrics(client: MlflowClient, model: str, version: int) -> dict[str, Any]:
    try:
        found = client.get_model_version(model, str(version))
    except MlflowException as error:
        if error.error_code not in _ABSENT:
            raise  # the registry failing, not a missing version
        raise UnknownVersion(f"{model} has no version {version} in the registry") from None
    registry = ModelRegistry(client, model)
    aliases = {alias: _holder(registry, alias) for alias in (CHAMPION, CHALLENGER)}
    return {"model": model, **_version_summary(client, found, True, aliases), "gate_reasons": found.tags.get("gate_reasons")}
