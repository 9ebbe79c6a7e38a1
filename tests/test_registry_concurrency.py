"""Champion history under concurrent writers: a gap-free, duplicate-free sequence.

Several processes promote (and roll back) the same registered model at once, on a real MLflow
store: SQLite (the lock file beside it), SQLite through the lease a tracking server would use,
and PostgreSQL (an advisory lock). Every move of the alias must be in the history exactly
once, numbered 1..n without a gap, each naming the champion it replaced.
"""

from __future__ import annotations

import multiprocessing
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tracseq_dagster.registry import CHAMPION, LEASE_SUFFIX, ModelRegistry, RegistryError
from tracseq_dagster.tracking import open_client

MODEL = "sample_quality"
WORKERS = 3
ROUNDS = 12
VERSIONS = 3


class LeaseRegistry(ModelRegistry):
    """The registry as it behaves against a tracking server: the lease, whatever the store."""

    @contextmanager
    def history_lock(self):  # type: ignore[no-untyped-def, override]
        if self._lock_depth:
            yield
            return
        with self._lease():
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0


def _promote_many(uri: str, worker: int, lease: bool, start, results) -> None:  # type: ignore[no-untyped-def]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registry = (LeaseRegistry if lease else ModelRegistry)(client, MODEL)
    start.wait()
    moves = 0
    for round_ in range(ROUNDS):
        if worker == 0 and round_ % 3 == 2:
            try:
                registry.rollback(f"worker {worker} round {round_} rollback")
                moves += 1
            except RegistryError:
                pass
            continue
        registry.promote(str(1 + (worker + round_) % VERSIONS), f"worker {worker} round {round_}")
        moves += 1
    results.put(moves)


def _registered(uri: str, tmp_path: Path) -> ModelRegistry:
    client = open_client(uri)
    client.create_registered_model(MODEL)
    model = tmp_path / "model"
    model.mkdir()
    for _ in range(VERSIONS):
        client.create_model_version(MODEL, source=str(model))
    return ModelRegistry(client, MODEL)


def _promote_from_processes(uri: str, lease: bool) -> int:
    spawn = multiprocessing.get_context("spawn")  # no inherited connections or locks
    start, results = spawn.Event(), spawn.Queue()
    workers = [spawn.Process(target=_promote_many, args=(uri, w, lease, start, results)) for w in range(WORKERS)]
    for process in workers:
        process.start()
    start.set()
    for process in workers:
        process.join(timeout=300)
        assert process.exitcode == 0, f"worker exited with {process.exitcode}"
    return sum(results.get(timeout=5) for _ in workers)


def assert_history_is_a_clean_sequence(registry: ModelRegistry, moves: int) -> None:
    history = registry.history()
    assert [e.sequence for e in history] == list(range(1, moves + 1))
    assert len({e.reason for e in history}) == moves  # no move lost or overwritten
    for before, event in zip([None, *history], history):
        # Each move replaced the champion the previous move installed: read and write were one step.
        assert event.previous == (before.version if before else None), (before, event)
    assert str(registry.version(CHAMPION).version) == history[-1].version
    stack = registry.champion_stack()
    assert stack and stack[-1] == history[-1].version


@pytest.mark.parametrize("lease", [False, True], ids=["sqlite-file-lock", "lease-in-registry"])
def test_concurrent_promotions_on_sqlite_keep_a_gap_free_history(tmp_path: Path, lease: bool) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = _registered(uri, tmp_path)
    moves = _promote_from_processes(uri, lease)
    assert moves >= WORKERS * ROUNDS - ROUNDS // 3
    assert_history_is_a_clean_sequence(registry, moves)
    assert MODEL + LEASE_SUFFIX not in {m.name for m in registry.client.search_registered_models()}  # released


def test_concurrent_promotions_on_postgresql_keep_a_gap_free_history(tmp_path: Path, postgres_url: str) -> None:
    registry = _registered(postgres_url, tmp_path)
    moves = _promote_from_processes(postgres_url, lease=False)
    assert_history_is_a_clean_sequence(registry, moves)


def test_a_stale_lease_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that died holding the lease does not block promotions for ever."""
    import tracseq_dagster.registry as registry_module

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = _registered(uri, tmp_path)
    registry.client.create_registered_model(MODEL + LEASE_SUFFIX, tags={"holder": "a dead process"})
    monkeypatch.setattr(registry_module, "LEASE_STALE_AFTER_S", 0.0)
    event = LeaseRegistry(registry.client, MODEL).promote("1", "after a crash")
    assert event.sequence == 1


def test_a_held_lease_times_out_with_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracseq_dagster.registry as registry_module

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = _registered(uri, tmp_path)
    registry.client.create_registered_model(MODEL + LEASE_SUFFIX, tags={"holder": "host:42:cafe"})
    monkeypatch.setattr(registry_module, "LOCK_TIMEOUT_S", 0.3)
    with pytest.raises(RegistryError, match="host:42:cafe"):
        LeaseRegistry(registry.client, MODEL).promote("1", "blocked")
    assert registry.history() == []
