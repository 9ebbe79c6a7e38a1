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

Moves of ``champion`` are serialised: reading the current champion, moving the alias and
appending the history entry (``sequence = last + 1``) happen under one lock keyed on the
registry and the model, so two promotions at once (two Dagster runs, a run and an operator's
rollback) never write the same sequence number or record the wrong previous champion. The
lock is a file beside a SQLite store, a PostgreSQL advisory lock for a PostgreSQL store, and
for a tracking server (whose tags simply overwrite) a lease: a registered model
``<name>.history-lock`` that only one writer can create (the server's unique name
constraint), deleted on release and broken when older than :data:`LEASE_STALE_AFTER_S`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG_PREFIX = "champion_history."
REGISTRATION_KEY_TAG = "registration_key"
LEASE_SUFFIX = ".history-lock"
#: How long a writer waits for the history lock before giving up.
LOCK_TIMEOUT_S = 120.0
#: A lease older than this is taken to belong to a writer that died, and is broken.
LEASE_STALE_AFTER_S = 300.0


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
        self._lock_depth = 0  # history_lock() held by this object (re-entrant)

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
        return (
            f"models:/{self.name}@{alias_or_version}"
            if not alias_or_version.isdigit()
            else f"models:/{self.name}/{alias_or_version}"
        )

    # -- champion ----------------------------------------------------------------------------
    def promote(self, version: str, reason: str, *, dagster_run_id: str | None = None) -> ChampionEvent:
        """Make ``version`` the champion and record why (one writer at a time, see the module doc)."""
        version = str(version)
        self.client.get_model_version(self.name, version)  # raises if it does not exist
        with self.history_lock():
            current = self.version(CHAMPION)
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
            return self._record("promote", version, str(current.version) if current else None, reason, dagster_run_id)

    def rollback(self, reason: str = "manual rollback") -> ChampionEvent:
        """Move ``champion`` back to the champion before the current one."""
        with self.history_lock():
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

    @contextmanager
    def history_lock(self) -> Iterator[None]:
        """Hold the lock of this model's champion history (see the module doc); re-entrant per object."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        uri = str(getattr(self.client, "_registry_uri", None) or self.client.tracking_uri)
        scheme = urlparse(uri).scheme.split("+")[0]
        if scheme == "sqlite":
            lock = _file_lock(uri)
        elif scheme in ("postgresql", "postgres"):
            lock = _advisory_lock(uri, f"tracseq.registry:{self.name}")
        elif scheme in ("", "file"):
            lock = _file_lock_in_folder(uri, self.name)
        else:  # a tracking server, MySQL, …: a lease in the registry itself
            lock = self._lease()
        with lock:
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    @contextmanager
    def _lease(self) -> Iterator[None]:
        """Own the registered model ``<name>.history-lock`` for as long as the block runs."""
        lease = f"{self.name}{LEASE_SUFFIX}"
        holder = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        holder_seen = "?"
        while True:
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"the champion history of {self.name} stayed locked for {LOCK_TIMEOUT_S:g} s "
                    f"(registered model {lease!r}, held by {holder_seen}); "
                    f"if no promotion is running, delete that registered model"
                )
            try:
                self.client.create_registered_model(
                    lease, tags={"holder": holder}, description=f"Held while the champion history of {self.name} is written."
                )
                break
            except MlflowException as error:
                # Taken: "already exists". MLflow answers a lost race by reading the existing model,
                # so a lease released in between comes back as "does not exist": try again at once.
                if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                    continue
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            try:
                held = self.client.get_registered_model(lease)
            except MlflowException:
                continue  # released meanwhile
            holder_seen = held.tags.get("holder", "?")
            if time.time() - (held.creation_timestamp or 0) / 1000 > LEASE_STALE_AFTER_S:
                try:
                    self.client.delete_registered_model(lease)  # its writer died holding it
                except MlflowException:
                    pass
                continue
            time.sleep(0.05 + random.random() * 0.1)
        try:
            yield
        finally:
            try:
                self.client.delete_registered_model(lease)
            except MlflowException:
                pass

    def _record(
        self, action: Literal["promote", "rollback"], version: str, previous: str | None, reason: str, run_id: str | None
    ) -> ChampionEvent:
        """Append one event to the history; callers hold :meth:`history_lock`."""
        events = self.history()
        sequence = (events[-1].sequence if events else 0) + 1
        # Tag values are bounded in some registries: keep the reason short, the full one is in MLflow runs.
        event = ChampionEvent(sequence, action, version, previous, datetime.now(UTC).isoformat(), reason[:1000], run_id)
        self.client.set_registered_model_tag(self.name, f"{HISTORY_TAG_PREFIX}{sequence:06d}", json.dumps(asdict(event)))
        self.client.set_model_version_tag(self.name, version, "champion_since", event.at)
        return event


def _file_lock(uri: str):  # type: ignore[no-untyped-def]
    """A lock file beside a SQLite registry (one per database: every model of it)."""
    from filelock import FileLock

    from tracseq_dagster.sqlite_lock import sqlite_path

    database = sqlite_path(uri)
    if database is None:  # in-memory: one process only
        from contextlib import nullcontext

        return nullcontext()
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(database) + ".registry.lock", timeout=LOCK_TIMEOUT_S)


def _file_lock_in_folder(uri: str, name: str):  # type: ignore[no-untyped-def]
    """A lock file in a file-based registry folder."""
    from pathlib import Path

    from filelock import FileLock

    folder = Path(urlparse(uri).path if uri.startswith("file:") else uri)
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f".{name}.registry.lock"), timeout=LOCK_TIMEOUT_S)


@contextmanager
def _advisory_lock(uri: str, key: str) -> Iterator[None]:
    """A PostgreSQL session advisory lock on ``key``, on a connection of its own to the registry's database."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"SET lock_timeout = {int(LOCK_TIMEOUT_S * 1000)}"))
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": number})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": number})
                connection.commit()
    finally:
        engine.dispose()
