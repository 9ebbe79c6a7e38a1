"""ModelRegistry on a real MLflow SQLite registry, one process: aliases, idempotent registration,
the champion history as a stack, its error messages, and which lock guards which store.

A migrated database is made once per session and copied per test (migrations take seconds,
a copy milliseconds). The concurrent writers are in test_registry_concurrency.py.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tracseq_dagster import registry as registry_module
from tracseq_dagster.registry import (
    CHALLENGER,
    CHAMPION,
    HISTORY_TAG_PREFIX,
    REGISTRATION_KEY_TAG,
    ChampionEvent,
    ModelRegistry,
    RegistryError,
)
from tracseq_dagster.tracking import open_client

MODEL = "sample_quality"


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("registry-template")
    open_client(f"sqlite:///{folder / 'mlflow.db'}")
    return folder / "mlflow.db"


@pytest.fixture
def client(template_db: Path, tmp_path: Path) -> MlflowClient:
    shutil.copy(template_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _register(registry: ModelRegistry, key: str, tmp_path: Path) -> str:
    source = tmp_path / "models" / key
    source.mkdir(parents=True, exist_ok=True)
    return str(
        registry.register(source.as_uri(), run_id=None, model_id=None, tags={"family": "lightgbm"}, registration_key=key).version
    )  # type: ignore[arg-type]


def test_registration_is_idempotent_per_key_and_moves_the_challenger(client: MlflowClient, tmp_path: Path) -> None:
    registry = ModelRegistry(client, MODEL)
    assert registry.version(CHALLENGER) is None and registry.find_by_key("run-1") is None  # nothing registered yet
    first = _register(registry, "run-1", tmp_path)
    assert _register(registry, "run-1", tmp_path) == first == "1"  # re-executed run: the same version
    assert str(registry.find_by_key("run-1").version) == "1"  # type: ignore[union-attr]
    assert registry.find_by_key("run-2") is None
    second = _register(registry, "run-2", tmp_path)
    assert second == "2" and str(registry.version(CHALLENGER).version) == "2"  # type: ignore[union-attr]
    made = client.get_model_version(MODEL, "2")
    assert made.tags == {"family": "lightgbm", REGISTRATION_KEY_TAG: "run-2"}
    assert made.source == (tmp_path / "models" / "run-2").as_uri()
    run = client.create_run(client.create_experiment("registry-test"))
    with_run = registry.register(
        (tmp_path / "models").as_uri(), run_id=run.info.run_id, model_id=None, tags={}, registration_key="run-3"
    )
    assert client.get_model_version(MODEL, str(with_run.version)).run_id == run.info.run_id
    _register(registry, "run-1", tmp_path)  # the challenger alias follows the key's version
    assert str(registry.version(CHALLENGER).version) == "1"  # type: ignore[union-attr]
    assert client.get_registered_model(MODEL).description.startswith("Sample QC outcome")


def test_versions_sort_as_numbers_and_uris_name_alias_or_version(client: MlflowClient, tmp_path: Path) -> None:
    registry = ModelRegistry(client, MODEL)
    for i in range(11):
        _register(registry, f"run-{i}", tmp_path)
    assert [str(v.version) for v in registry.versions()] == [str(i) for i in range(1, 12)]  # 10 and 11 after 9
    other = ModelRegistry(client, "turnaround_hours")  # another model in the same registry is not listed
    _register(other, "run-x", tmp_path)
    assert len(registry.versions()) == 11 and [str(v.version) for v in other.versions()] == ["1"]
    assert registry.model_uri("champion") == "models:/sample_quality@champion"
    assert registry.model_uri("7") == "models:/sample_quality/7"


def test_promotions_push_and_rollbacks_pop_the_champion_stack(client: MlflowClient, tmp_path: Path) -> None:
    registry = ModelRegistry(client, MODEL)
    for i in range(3):
        _register(registry, f"run-{i}", tmp_path)
    assert registry.history() == [] and registry.champion_stack() == []
    with pytest.raises(
        RegistryError, match=r"sample_quality has no previous champion to roll back to \(champion history: empty\)"
    ):
        registry.rollback()
    one = registry.promote("1", "first model", dagster_run_id="dagster-1")
    assert (one.sequence, one.action, one.version, one.previous, one.reason, one.dagster_run_id) == (
        1,
        "promote",
        "1",
        None,
        "first model",
        "dagster-1",
    )
    with pytest.raises(RegistryError, match=r"\(champion history: v1\)"):
        registry.rollback()
    two = registry.promote(2, "better")  # a number is a version too
    assert (two.sequence, two.version, two.previous) == (2, "2", "1")
    three = registry.promote("3", "better still")
    assert registry.champion_stack() == ["1", "2", "3"] and str(registry.version(CHAMPION).version) == "3"  # type: ignore[union-attr]
    back = registry.rollback("v3 misbehaves")
    assert (back.sequence, back.action, back.version, back.previous, back.reason, back.dagster_run_id) == (
        4,
        "rollback",
        "2",
        "3",
        "v3 misbehaves",
        None,
    )
    assert str(registry.version(CHAMPION).version) == "2"  # type: ignore[union-attr]
    again = registry.rollback()
    assert (again.version, again.previous, again.reason) == ("1", "2", "manual rollback")
    assert registry.champion_stack() == ["1"]
    assert [e.sequence for e in registry.history()] == [1, 2, 3, 4, 5]
    assert [e.action for e in registry.history()] == ["promote", "promote", "promote", "rollback", "rollback"]
    assert three.at < back.at and three.at.endswith("+00:00")  # ISO 8601 in UTC, in order
    assert client.get_model_version(MODEL, "1").tags["champion_since"] == again.at


def test_history_is_stored_as_numbered_tags_and_read_in_sequence_order(client: MlflowClient, tmp_path: Path) -> None:
    registry = ModelRegistry(client, MODEL)
    _register(registry, "run-0", tmp_path)
    event = registry.promote("1", "x" * 1500)
    assert len(event.reason) == 1000  # tag values are bounded in some registries
    tags = client.get_registered_model(MODEL).tags
    stored = json.loads(tags[f"{HISTORY_TAG_PREFIX}000001"])
    assert ChampionEvent(**stored) == event
    # Tags come back in any order; a hand-written 10th event sorts after the 9th, not after the 1st.
    for sequence in range(2, 11):
        client.set_registered_model_tag(
            MODEL, f"{HISTORY_TAG_PREFIX}{sequence:06d}", json.dumps({**stored, "sequence": sequence})
        )
    client.set_registered_model_tag(MODEL, "unrelated", "ignored")
    assert [e.sequence for e in registry.history()] == list(range(1, 11))
    assert registry.promote("1", "next").sequence == 11


def test_unknown_model_and_version_are_refused(client: MlflowClient, tmp_path: Path) -> None:
    registry = ModelRegistry(client, MODEL)
    with pytest.raises(RegistryError, match="no registered model 'sample_quality' in this registry"):
        registry.history()
    _register(registry, "run-0", tmp_path)
    with pytest.raises(Exception, match="(?i)not found|does not exist"):
        registry.promote("9", "no such version")
    assert registry.history() == []  # nothing recorded


def test_a_rollback_after_a_rollback_skips_the_popped_versions(client: MlflowClient, tmp_path: Path) -> None:
    registry = ModelRegistry(client, MODEL)
    for i in range(3):
        _register(registry, f"run-{i}", tmp_path)
    registry.promote("1", "a")
    registry.promote("2", "b")
    registry.rollback()  # back to 1
    registry.promote("3", "c")  # stack 1, 3
    assert registry.rollback().version == "1"
    with pytest.raises(RegistryError, match=r"\(champion history: v1\)"):
        registry.rollback()


@pytest.mark.parametrize(
    ("uri", "lock"),
    [
        ("sqlite:///{tmp}/mlflow.db", "_file_lock"),
        ("postgresql://u:p@localhost:1/db", "_advisory_lock"),
        ("postgresql+psycopg2://u:p@localhost:1/db", "_advisory_lock"),
        ("postgres://u:p@localhost:1/db", "_advisory_lock"),
        ("{tmp}/mlruns", "_file_lock_in_folder"),
        ("file://{tmp}/mlruns", "_file_lock_in_folder"),
        ("http://mlflow:5000", "_lease"),
        ("mysql://u:p@localhost/db", "_lease"),
    ],
)
def test_each_store_gets_its_lock_and_the_lock_is_reentrant(
    uri: str, lock: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []

    @contextmanager
    def fake(*args: object):  # type: ignore[no-untyped-def]
        taken.append(lock)
        yield

    if lock == "_lease":
        monkeypatch.setattr(ModelRegistry, "_lease", lambda self: fake())
    else:
        monkeypatch.setattr(registry_module, lock, fake)

    class Client:
        tracking_uri = "ignored://"
        _registry_uri = uri.format(tmp=tmp_path)

    registry = ModelRegistry(Client(), MODEL)  # type: ignore[arg-type]
    with registry.history_lock():
        assert registry._lock_depth == 1
        with registry.history_lock():  # promote inside a caller's lock: no second acquisition
            assert registry._lock_depth == 2
        assert registry._lock_depth == 1
    assert registry._lock_depth == 0 and taken == [lock]


def test_the_lock_is_released_when_the_block_fails(tmp_path: Path) -> None:
    class Client:
        _registry_uri = f"sqlite:///{tmp_path}/mlflow.db"

    registry = ModelRegistry(Client(), MODEL)  # type: ignore[arg-type]
    with pytest.raises(ValueError), registry.history_lock():
        raise ValueError("boom")
    assert registry._lock_depth == 0
    with registry.history_lock():  # a file lock that was released can be taken again
        pass
    assert (tmp_path / "mlflow.db.registry.lock").exists()


def test_the_tracking_uri_is_used_when_there_is_no_registry_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    @contextmanager
    def fake(uri: str, name: str):  # type: ignore[no-untyped-def]
        seen.append(uri)
        yield

    monkeypatch.setattr(registry_module, "_file_lock_in_folder", fake)

    class Client:
        _registry_uri = None
        tracking_uri = str(tmp_path / "mlruns")

    with ModelRegistry(Client(), MODEL).history_lock():  # type: ignore[arg-type]
        pass
    assert seen == [str(tmp_path / "mlruns")]


def test_file_locks_sit_beside_the_store(tmp_path: Path) -> None:
    lock = registry_module._file_lock_in_folder((tmp_path / "deep" / "mlruns").as_uri(), MODEL)  # folders made as needed
    assert Path(lock.lock_file) == tmp_path / "deep" / "mlruns" / f".{MODEL}.registry.lock"
    assert lock.timeout == registry_module.LOCK_TIMEOUT_S == 120.0
    again = registry_module._file_lock_in_folder((tmp_path / "deep" / "mlruns").as_uri(), MODEL)  # the folder exists now
    assert again.lock_file == lock.lock_file
    assert registry_module._file_lock_in_folder(str(tmp_path / "plain" / "runs"), MODEL).lock_file == str(
        tmp_path / "plain" / "runs" / f".{MODEL}.registry.lock"
    )
    assert (tmp_path / "plain" / "runs").is_dir()
    beside = registry_module._file_lock(f"sqlite:///{tmp_path}/sub/dir/mlflow.db")
    assert beside.lock_file == str(tmp_path / "sub" / "dir" / "mlflow.db.registry.lock") and (tmp_path / "sub" / "dir").is_dir()
    assert registry_module._file_lock(f"sqlite:///{tmp_path}/sub/dir/mlflow.db").lock_file == beside.lock_file
    assert beside.timeout == 120.0
