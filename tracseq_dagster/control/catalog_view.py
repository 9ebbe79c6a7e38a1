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
    try:
        versions = registry.versions()
    except MlflowException:
        versions = []
    aliases = {alias: _holder(registry, alias) for alias in (CHAMPION, CHALLENGER)}
    return {
        **spec.summary(),
        "approval_required": needs_approval,
        "champion": aliases[CHAMPION],
        "challenger": aliases[CHALLENGER],
        "versions": [_version_summary(client, v, True, aliases) for v in versions],
    }


def _holder(registry: ModelRegistry, alias: str) -> str | None:
    found = registry.version(alias)
    return str(found.version) if found else None


def version_metrics(client: MlflowClient, model: str, version: int) -> dict[str, Any]:
    try:
        found = client.get_model_version(model, str(version))
    except MlflowException:
        raise UnknownVersion(f"{model} has no version {version} in the registry") from None
    registry = ModelRegistry(client, model)
    aliases = {alias: _holder(registry, alias) for alias in (CHAMPION, CHALLENGER)}
    return {"model": model, **_version_summary(client, found, True, aliases), "gate_reasons": found.tags.get("gate_reasons")}
