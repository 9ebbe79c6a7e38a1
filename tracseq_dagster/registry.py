"""The MLflow model registry of ``sample_quality``: versions, the two aliases, and their history.

* A new model is registered as a new version and gets the alias ``challenger``.
* Only the promotion gate (or an operator's rollback) moves the alias ``champion``.
* Every move of ``champion`` is appended to a history kept in the registry itself, as
  registered-model tags ``champion_history.000001`` … (one small JSON document each), so the
  history lives wherever the registry lives (SQLite, PostgreSQL, a tracking server) and
  needs no second store.

The history reads as a stack: a promotion pushes a version, a rollback pops the current one,
so rolling back twice returns to the champion before the previous one.

Registering is idempotent per ``registration_key`` (the Dagster run id and the training data
fingerprint): re-executing a run from failure finds the version it already made instead of
adding a duplicate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Literal

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG_PREFIX = "champion_history."
REGISTRATION_KEY_TAG = "registration_key"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (no such model, no previous champion, …)."""


@dataclass(frozen=True)
class ChampionEvent:
    """One move of the ``champion`` alias."""

    sequence: int
    action: Literal["promote", "rollback"]
    version: str  # the version that became champion
    previous: str | None  # the version that stopped being champion
    at: str  # ISO 8601, UTC
    reason: str
    dagster_run_id: str | None = None


class ModelRegistry:
    """The registered model ``name`` in the registry ``client`` talks to."""

    def __init__(self, client: MlflowClient, name: str) -> None:
        self.client = client
        self.name = name

    # -- versions ----------------------------------------------------------------------------
    def register(
        self, model_uri: str, *, run_id: str, model_id: str | None, tags: dict[str, str], registration_key: str
    ) -> ModelVersion:
        """A new version from ``model_uri`` with alias ``challenger`` (or the one ``registration_key`` made)."""
        existing = self.find_by_key(registration_key)
        if existing is None:
            self._ensure_registered_model()
            existing = self.client.create_model_version(
                self.name,
                source=model_uri,
                run_id=run_id,
                tags={**tags, REGISTRATION_KEY_TAG: registration_key},
                model_id=model_id,
            )
        self.client.set_registered_model_alias(self.name, CHALLENGER, existing.version)
        return existing

    def find_by_key(self, registration_key: str) -> ModelVersion | None:
        try:
            found = self.client.search_model_versions(
                f"name = '{self.name}' and tags.{REGISTRATION_KEY_TAG} = '{registration_key}'"
            )
        except MlflowException:
            return None
        return found[0] if found else None

    def version(self, alias: str) -> ModelVersion | None:
        """The version holding ``alias``, or None (also when the model is not registered yet)."""
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None

    def versions(self) -> list[ModelVersion]:
        return sorted(self.client.search_model_versions(f"name = '{self.name}'"), key=lambda v: int(v.version))

    def model_uri(self, alias_or_version: str) -> str:
        return f"models:/{self.name}@{alias_or_version}" if not alias_or_version.isdigit() else f"models:/{self.name}/{alias_or_version}"

    # -- champion ----------------------------------------------------------------------------
    def promote(self, version: str, reason: str, *, dagster_run_id: str | None = None) -> ChampionEvent:
        """Make ``version`` the champion and record why."""
        version = str(version)
        current = self.version(CHAMPION)
        self.client.get_model_version(self.name, version)  # raises if it does not exist
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        return self._record("promote", version, str(current.version) if current else None, reason, dagster_run_id)

    def rollback(self, reason: str = "manual rollback") -> ChampionEvent:
        """Move ``champion`` back to the champion before the current one."""
        stack = self.champion_stack()
        if len(stack) < 2:
            raise RegistryError(
                f"{self.name} has no previous champion to roll back to "
                f"(champion history: {', '.join('v' + v for v in stack) or 'empty'})"
            )
        target, current = stack[-2], stack[-1]
        self.client.set_registered_model_alias(self.name, CHAMPION, target)
        return self._record("rollback", target, current, reason, None)

    def history(self) -> list[ChampionEvent]:
        """Every move of ``champion``, oldest first."""
        try:
            tags = self.client.get_registered_model(self.name).tags
        except MlflowException as error:
            raise RegistryError(f"no registered model {self.name!r} in this registry") from error
        events = [ChampionEvent(**json.loads(v)) for k, v in tags.items() if k.startswith(HISTORY_TAG_PREFIX)]
        return sorted(events, key=lambda e: e.sequence)

    def champion_stack(self) -> list[str]:
        """Champion versions as a stack (promote pushes, rollback pops); the last is the champion."""
        stack: list[str] = []
        for event in self.history():
            if event.action == "promote":
                stack.append(event.version)
            elif stack:
                stack.pop()
        return stack

    # -- helpers -----------------------------------------------------------------------------
    def _ensure_registered_model(self) -> None:
        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    self.name, description="Sample QC outcome (pass / borderline / fail) from point-in-time features."
                )
            except MlflowException:
                self.client.get_registered_model(self.name)  # created meanwhile by another process

    def _record(
        self, action: Literal["promote", "rollback"], version: str, previous: str | None, reason: str, run_id: str | None
    ) -> ChampionEvent:
        sequence = len(self.history()) + 1
        # Tag values are bounded in some registries: keep the reason short, the full one is in MLflow runs.
        event = ChampionEvent(sequence, action, version, previous, datetime.now(timezone.utc).isoformat(), reason[:1000], run_id)
        self.client.set_registered_model_tag(self.name, f"{HISTORY_TAG_PREFIX}{sequence:06d}", json.dumps(asdict(event)))
        self.client.set_model_version_tag(self.name, version, "champion_since", event.at)
        return event
