"""The audit log: who (token name and role) did what, to which model and version, when, with
what outcome and why. Append-only.

Two stores, one interface (:class:`AuditLog`):

* a folder of Parquet files (the default, ``<data>/audit``): every entry is a new file created
  exclusively (``open(…, "xb")``), so no writer ever rewrites what was recorded;
* a PostgreSQL table (``TRACSEQ_AUDIT_LOG=postgresql://…``, the stack) whose triggers refuse
  ``UPDATE``, ``DELETE`` and ``TRUNCATE``: append-only is enforced by the database, not by the
  services' good manners. Only the database owner can drop the triggers.

Every management action of the API, every promotion and rollback of the CLI and of the Dagster
gate, and every token created or revoked is recorded here; ``tracseq audit`` and ``GET /audit``
read it.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ("at", "actor", "role", "action", "model", "version", "outcome", "reason", "detail")
SCHEMA = pa.schema([
    ("at", pa.timestamp("us", tz="UTC")),
    ("actor", pa.string()), ("role", pa.string()), ("action", pa.string()), ("model", pa.string()),
    ("version", pa.string()), ("outcome", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
])  # fmt: skip


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    role: str
    action: str
    model: str | None
    version: str | None
    outcome: str
    reason: str
    detail: str  # JSON

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


class AuditLog(Protocol):
    def append(self, entry: AuditEntry) -> None: ...
    def record(self, **fields: Any) -> AuditEntry: ...
    def entries(self, *, model: str | None = None, action: str | None = None, limit: int | None = None) -> list[AuditEntry]: ...


def make_entry(
    *,
    actor: str,
    role: str,
    action: str,
    outcome: str,
    model: str | None = None,
    version: str | None = None,
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    return AuditEntry(datetime.now(UTC), actor, role, action, model, None if version is None else str(version),
                      outcome, reason[:2000], json.dumps(detail or {}, default=str))  # fmt: skip


class _Recording:
    """``record(**fields)``: build the entry and append it."""

    def record(self, **fields: Any) -> AuditEntry:
        entry = make_entry(**fields)
        self.append(entry)  # type: ignore[attr-defined]
        return entry


def _select(entries: list[AuditEntry], model: str | None, action: str | None, limit: int | None) -> list[AuditEntry]:
    chosen = [e for e in entries if (model is None or e.model == model) and (action is None or e.action.startswith(action))]
    chosen.sort(key=lambda e: e.at)
    return chosen[-limit:] if limit else chosen


class ParquetAuditLog(_Recording):
    """One Parquet file per entry in ``folder``, never rewritten."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def append(self, entry: AuditEntry) -> None:
        table = pa.Table.from_pylist([asdict(entry)], schema=SCHEMA)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        name = f"{entry.at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
        with open(self.folder / name, "xb") as file:  # exclusive: an existing entry is never overwritten
            file.write(buffer.getvalue())

    def entries(self, *, model: str | None = None, action: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        files = sorted(self.folder.glob("*.parquet"))
        if not files:
            return []
        rows = pq.ParquetDataset(files, schema=SCHEMA).read().to_pylist()
        return _select([AuditEntry(**r) for r in rows], model, action, limit)


class PostgresAuditLog(_Recording):
    """The table ``tracseq_audit``, append-only by its triggers."""

    TABLE = "tracseq_audit"

    def __init__(self, url: str) -> None:
        import sqlalchemy
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername="postgresql+psycopg2")
        self.engine = sqlalchemy.create_engine(parsed, pool_pre_ping=True)
        with self.engine.begin() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(7403116)"))  # two services creating it at once
            connection.execute(
                sqlalchemy.text(f"""
                CREATE TABLE IF NOT EXISTS {self.TABLE} (
                    id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
                    action TEXT NOT NULL, model TEXT, version TEXT, outcome TEXT NOT NULL, reason TEXT NOT NULL,
                    detail TEXT NOT NULL);
                CREATE OR REPLACE FUNCTION tracseq_audit_append_only() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP; END $$ LANGUAGE plpgsql;
                DROP TRIGGER IF EXISTS tracseq_audit_no_change ON {self.TABLE};
                CREATE TRIGGER tracseq_audit_no_change BEFORE UPDATE OR DELETE ON {self.TABLE}
                    FOR EACH ROW EXECUTE FUNCTION tracseq_audit_append_only();
                DROP TRIGGER IF EXISTS tracseq_audit_no_truncate ON {self.TABLE};
                CREATE TRIGGER tracseq_audit_no_truncate BEFORE TRUNCATE ON {self.TABLE}
                    FOR EACH STATEMENT EXECUTE FUNCTION tracseq_audit_append_only();
            """)
            )

    def append(self, entry: AuditEntry) -> None:
        import sqlalchemy

        columns = ", ".join(COLUMNS)
        values = ", ".join(f":{c}" for c in COLUMNS)
        with self.engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"INSERT INTO {self.TABLE} ({columns}) VALUES ({values})"), asdict(entry))

    def entries(self, *, model: str | None = None, action: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        import sqlalchemy

        where, params = [], {}
        if model is not None:
            where.append("model = :model")
            params["model"] = model
        if action is not None:
            where.append("action LIKE :action")
            params["action"] = action.replace("%", r"\%").replace("_", r"\_") + "%"
        sql = f"SELECT {', '.join(COLUMNS)} FROM {self.TABLE}" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with self.engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text(sql), params).mappings().all()
        return [AuditEntry(**r) for r in reversed(rows)]


def open_audit_log(url: str | None = None) -> ParquetAuditLog | PostgresAuditLog:
    """The audit log at ``url`` (default: ``TRACSEQ_AUDIT_LOG``, else ``<data>/audit``)."""
    if url is None:
        from tracseq_dagster.control.config import audit_log_url

        url = audit_log_url()
    if url.startswith(("postgresql:", "postgres:", "postgresql+")):
        return PostgresAuditLog(url)
    return ParquetAuditLog(url)


def record_or_warn(**fields: Any) -> AuditEntry | None:
    """Record an action that has already happened (a promotion by the Dagster gate, a CLI rollback).

    The action stands whether or not its record can be written, so a failing audit store is
    reported loudly (a warning naming the entry) instead of turning a done promotion into an error.
    """
    import logging

    try:
        return open_audit_log().record(**fields)
    except Exception as error:  # noqa: BLE001 - any store failure: the action itself already happened
        logging.getLogger(__name__).warning("audit log not written (%s): %s", error, fields)
        return None
