"""Where the control plane keeps its state and which servers it talks to, from the environment.

Secrets come only from here (the environment), never from files in the repository:

* ``TRACSEQ_CONTROL_DB``: the database of tokens and promotion requests (SQLAlchemy URL);
  ``postgresql://…`` in the stack, a SQLite file under the data folder by default.
* ``TRACSEQ_AUDIT_LOG``: ``postgresql://…`` (a table) or a folder of Parquet files (default
  ``<data>/audit``).
* ``TRACSEQ_AUTH``: ``on`` (default) or ``off``: off lets every request through as the
  anonymous ``admin`` (a laptop demo); the services log that it is off.
* ``TRACSEQ_DAGSTER_URL``: the Dagster webserver a retraining is launched on
  (``http://dagster-webserver:3000``); unset: ``POST /models/{name}/retrain`` answers 503.
* ``TRACSEQ_RATE_LIMIT``: requests per token, in the ``limits`` notation (``20/second``,
  ``1000/minute``); shared through ``TRACSEQ_REDIS_URL`` when it is set, per process otherwise.
* ``TRACSEQ_APPROVAL_REQUIRED``: catalog models whose promotions wait for an approver
  (comma-separated, or ``all``), besides those whose gate policy says ``requires_approval``.
"""

from __future__ import annotations

import os

from tracseq_dagster import settings
from tracseq_dagster.settings import ConfigurationError, checked_url


def control_db_url() -> str:
    url = os.getenv("TRACSEQ_CONTROL_DB", "").strip()
    if not url:
        return f"sqlite:///{settings.data_dir() / 'control' / 'control.db'}"
    return checked_url("TRACSEQ_CONTROL_DB", url, example="postgresql://user@host:5432/tracseq or sqlite:////path/control.db")


def audit_log_url() -> str:
    url = os.getenv("TRACSEQ_AUDIT_LOG", "").strip()
    if not url:
        return str(settings.data_dir() / "audit")
    return checked_url("TRACSEQ_AUDIT_LOG", url, example="a folder or postgresql://user@host:5432/tracseq")


def auth_enabled() -> bool:
    value = os.getenv("TRACSEQ_AUTH", "on").strip().lower() or "on"
    if value not in ("on", "off"):
        raise ConfigurationError(
            f"TRACSEQ_AUTH={value!r} is neither on nor off: set it to on (tokens required) or off, or unset it"
        )
    return value == "on"


def dagster_url() -> str | None:
    url = os.getenv("TRACSEQ_DAGSTER_URL", "").strip()
    return checked_url("TRACSEQ_DAGSTER_URL", url, example="http://dagster-webserver:3000") if url else None


def rate_limit() -> str | None:
    """The per-token limit (``limits`` notation), checked; None: no limit."""
    value = os.getenv("TRACSEQ_RATE_LIMIT", "").strip()
    if not value:
        return None
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ConfigurationError(
            f"TRACSEQ_RATE_LIMIT={value!r} is not a rate: write it as 20/second or 1000/minute (several with ;), or unset it"
        ) from None
    return value


def approval_required_models() -> frozenset[str] | None:
    """Models named in ``TRACSEQ_APPROVAL_REQUIRED``; None stands for ``all``."""
    value = os.getenv("TRACSEQ_APPROVAL_REQUIRED", "").strip()
    if value.lower() == "all":
        return None
    return frozenset(m.strip() for m in value.split(",") if m.strip())
