"""What serves what since when: ``GET /deployments`` and ``POST /deployments/{id}/rollback``.

A deployment is one move of a model's ``champion`` alias in the registry's champion history
(:class:`~tracseq_dagster.registry.ChampionEvent`): its id is ``<model>:<sequence>``, it holds
the version that became champion, when, by which action and why. The current deployment of a
model is the latest event.

When the prediction service's address is known (``TRACSEQ_PREDICTIONS_URL``, with a viewer
token in ``TRACSEQ_PREDICTIONS_TOKEN`` when it requires one), each model also shows what the
running service actually serves (its ``GET /models``), and ``in_service`` says whether the
registry's champion is the one answering: a promotion or rollback the service has not picked up
yet shows ``in_service: false``. Switching the running service to the new champion without
dropping requests is the prediction service's part (see the management notes), not this one's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from tracseq_dagster.registry import ChampionEvent, ModelRegistry, RegistryError


class UnknownDeployment(LookupError):
    """A deployment id that is not ``<model>:<sequence>`` of a recorded champion move."""


def deployment_id(model: str, event: ChampionEvent) -> str:
    return f"{model}:{event.sequence}"


def served_versions(listing: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """model -> alias -> version, from the prediction service's ``GET /models`` answer."""
    if not listing:
        return {}
    served: dict[str, dict[str, str]] = {}
    for model in listing.get("models", []):
        served[model["name"]] = {str(v.get("alias")): str(v.get("version")) for v in model.get("versions", [])}
    return served


def model_deployments(registry: ModelRegistry, served: Mapping[str, Mapping[str, str]] | None) -> dict[str, Any]:
    """One model: its current deployment, its history (latest first), and what the service serves."""
    events = _events(registry)
    current = events[-1] if events else None
    entry: dict[str, Any] = {
        "model": registry.name,
        "current": None if current is None else {"id": deployment_id(registry.name, current), **asdict(current)},
        "history": [{"id": deployment_id(registry.name, e), **asdict(e)} for e in reversed(events)],
    }
    if served is not None:
        in_service = dict(served.get(registry.name, {}))
        entry["served"] = in_service
        entry["in_service"] = current is not None and in_service.get("champion") == current.version
    return entry


def check_current(registry: ModelRegistry, sequence: int) -> ChampionEvent:
    """The event ``sequence`` if it is the model's current deployment (only that one can be rolled back)."""
    events = _events(registry)
    found = next((e for e in events if e.sequence == sequence), None)
    if found is None:
        raise UnknownDeployment(f"no deployment {registry.name}:{sequence} (GET /deployments lists them)")
    if found is not events[-1]:
        raise ValueError(
            f"deployment {registry.name}:{sequence} is not the current one ({registry.name}:{events[-1].sequence} is): "
            "only the current deployment can be rolled back"
        )
    return found


def _events(registry: ModelRegistry) -> list[ChampionEvent]:
    """The champion history; empty for a model not registered yet. A registry that does not answer
    raises (``history()`` alone would report it as "not registered")."""
    if not registry.client.search_registered_models(filter_string=f"name = '{registry.name}'"):
        return []
    try:
        return registry.history()
    except RegistryError:
        return []


def parse_id(value: str) -> tuple[str, int]:
    model, _, sequence = value.rpartition(":")
    if not model or not sequence.isdigit():
        raise UnknownDeployment(f"a deployment id is <model>:<sequence>, e.g. sample_quality:3; got {value!r}")
    return model, int(sequence)
