"""The audit log: append-only in Parquet and in PostgreSQL, filtered reads, and the CLI's rollback audited."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy
from control_support import add_version, registry_copy, template_registry
from typer.testing import CliRunner

from tracseq_dagster.cli import app
from tracseq_dagster.control.audit import ParquetAuditLog, PostgresAuditLog, open_audit_log
from tracseq_dagster.registry import ModelRegistry


def _fill(log) -> None:  # type: ignore[no-untyped-def]
    log.record(
        actor="alice",
        role="operator",
        action="promotion.request",
        model="sample_quality",
        version="3",
        outcome="pending",
        reason="better",
    )
    log.record(
        actor="bob",
        role="approver",
        action="promotion.approve",
        model="sample_quality",
        version=3,
        outcome="promoted",
        reason="ok",
    )
    log.record(
        actor="alice", role="operator", action="rollback", model="turnaround_hours", version="1", outcome="ok", reason="drift"
    )


def _read_checks(log) -> None:  # type: ignore[no-untyped-def]
    every = log.entries()
    assert [(e.actor, e.action, e.version) for e in every] == [
        ("alice", "promotion.request", "3"),
        ("bob", "promotion.approve", "3"),
        ("alice", "rollback", "1"),
    ]
    assert [e.actor for e in log.entries(model="sample_quality")] == ["alice", "bob"]
    assert [e.action for e in log.entries(action="promotion")] == ["promotion.request", "promotion.approve"]
    assert [e.action for e in log.entries(limit=1)] == ["rollback"]
    assert every[0].at.tzinfo is not None and every[0].at <= every[1].at


def test_parquet_audit_log_appends_a_file_per_entry(tmp_path: Path) -> None:
    log = ParquetAuditLog(tmp_path / "audit")
    _fill(log)
    _read_checks(log)
    files = sorted((tmp_path / "audit").glob("*.parquet"))
    assert len(files) == 3
    entry = log.entries()[0]
    with pytest.raises(FileExistsError):  # the same name is never written twice
        (tmp_path / "audit" / files[0].name).open("xb")
    assert ParquetAuditLog(tmp_path / "audit").entries()[0] == entry  # read back by another process's object


def test_postgresql_audit_log_refuses_updates_and_deletes(postgres_url: str) -> None:
    log = open_audit_log(postgres_url)
    assert isinstance(log, PostgresAuditLog)
    _fill(log)
    _read_checks(log)
    PostgresAuditLog(postgres_url)  # a second service starting: the triggers are re-created, rows kept
    for statement in ("UPDATE tracseq_audit SET outcome = 'ok'", "DELETE FROM tracseq_audit", "TRUNCATE tracseq_audit"):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), log.engine.begin() as connection:
            connection.execute(sqlalchemy.text(statement))
    assert len(log.entries()) == 3


@pytest.mark.slow  # the model commands build the Dagster definitions (about 35 s on this machine)
def test_cli_rollback_and_tokens_are_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "template").mkdir()
    client = registry_copy(template_registry(tmp_path / "template"), tmp_path)
    registry = ModelRegistry(client, "sample_quality")
    one = add_version(client, "sample_quality", tmp_path, gate="promote", metrics={"holdout_score": 0.8})
    two = add_version(client, "sample_quality", tmp_path, gate="promote", metrics={"holdout_score": 0.9})
    registry.promote(one, "first")
    registry.promote(two, "better")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    done = runner.invoke(app, ["model", "rollback", "--model", "sample_quality", "--reason", "misbehaves"])
    assert done.exit_code == 0, done.output
    refused = runner.invoke(app, ["model", "rollback", "--model", "sample_quality"])
    assert refused.exit_code == 2
    made = runner.invoke(app, ["tokens", "create", "lims", "--role", "predictor"])
    assert made.exit_code == 0 and made.stdout.startswith("tsq_")
    entries = open_audit_log(str(tmp_path / "data" / "audit")).entries()
    assert [(e.action, e.model, e.version, e.outcome) for e in entries] == [
        ("rollback", "sample_quality", one, "ok"),
        ("rollback", "sample_quality", None, "refused"),
        ("token.create", None, None, "ok"),
    ]
    assert (
        entries[0].actor.startswith("cli:") and entries[0].reason == "misbehaves" and "no previous champion" in entries[1].reason
    )
    shown = runner.invoke(app, ["audit", "--model", "sample_quality", "--json"])
    assert shown.exit_code == 0 and len(shown.stdout.strip().splitlines()) == 2 and '"misbehaves"' in shown.stdout
