"""The control database: tokens and promotion requests, one SQLAlchemy engine.

One implementation for both places it lives: a SQLite file by default (a laptop, a test) and
PostgreSQL in the stack, so the code that the stack runs is the code the tests run. Tables are
created on first use (``create_all`` is idempotent).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import Engine, make_url

METADATA = sqlalchemy.MetaData()


def open_engine(url: str) -> Engine:
    """An engine on ``url`` with the control tables created (a SQLite file's folder too)."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    engine = sqlalchemy.create_engine(parsed, pool_pre_ping=True)
    # The tables are declared in their own modules, on METADATA: import them before create_all.
    from tracseq_dagster.control import promotions, tokens  # noqa: F401

    METADATA.create_all(engine)
    return engine
