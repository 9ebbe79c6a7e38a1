"""API tokens: a name, a role, and the SHA-256 of a random secret; the secret itself is never stored.

A token is ``tsq_`` + 43 URL-safe characters (256 random bits from :mod:`secrets`), shown once
when it is created. The store keeps its SHA-256 only. A fast hash is the right one here, unlike
for passwords: a 256-bit random secret cannot be guessed, so a slow hash (argon2, bcrypt) would
protect nothing and cost every request tens of milliseconds against the prediction service's
50 ms p99; the digest is also what a request is looked up by (an index, no scan, no timing
leak of the secret). Revoking keeps the row (``revoked_at``), so the audit log's names stay
meaningful.

:class:`TokenStore` lives in the control database (:mod:`tracseq_dagster.control.database`):
a SQLite file by default, PostgreSQL when ``TRACSEQ_CONTROL_DB`` says so. Lookups are cached
for :data:`CACHE_SECONDS` per process, so a revocation takes effect within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy
from cachetools import TTLCache
from sqlalchemy.engine import Engine

from tracseq_dagster.control.database import METADATA
from tracseq_dagster.control.roles import check_role

PREFIX = "tsq_"
CACHE_SECONDS = 5.0

TOKENS = sqlalchemy.Table(
    "tracseq_tokens",
    METADATA,
    sqlalchemy.Column("name", sqlalchemy.String(200), primary_key=True),
    sqlalchemy.Column("role", sqlalchemy.String(40), nullable=False),
    sqlalchemy.Column("digest", sqlalchemy.String(64), nullable=False, unique=True),
    sqlalchemy.Column("created_at", sqlalchemy.DateTime(timezone=True), nullable=False),
    sqlalchemy.Column("created_by", sqlalchemy.String(200), nullable=False),
    sqlalchemy.Column("revoked_at", sqlalchemy.DateTime(timezone=True), nullable=True),
)


class TokenError(ValueError):
    """A token cannot be created or revoked as asked (the message says why)."""


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the token's name and role."""

    name: str
    role: str


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """Tokens in the control database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: TTLCache[str, Principal | None] = TTLCache(maxsize=10_000, ttl=CACHE_SECONDS)
        self._lock = threading.Lock()

    def create(self, name: str, role: str, *, created_by: str) -> str:
        """A new token ``name`` with ``role``; returns the secret (shown once, stored hashed)."""
        check_role(role)
        name = name.strip()
        if not name or len(name) > 200:
            raise TokenError("a token's name is 1 to 200 characters (it names the caller in the audit log)")
        secret = PREFIX + secrets.token_urlsafe(32)
        row = {"name": name, "role": role, "digest": digest(secret), "created_at": datetime.now(UTC),
               "created_by": created_by, "revoked_at": None}  # fmt: skip
        try:
            with self.engine.begin() as connection:
                connection.execute(TOKENS.insert().values(**row))
        except sqlalchemy.exc.IntegrityError:
            raise TokenError(
                f"a token named {name!r} exists already (revoked ones keep their name): choose another name"
            ) from None
        return secret

    def revoke(self, name: str) -> None:
        with self.engine.begin() as connection:
            done = connection.execute(
                TOKENS.update().where(TOKENS.c.name == name, TOKENS.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC))
            )
        if done.rowcount == 0:
            raise TokenError(f"no active token named {name!r} (tracseq tokens list shows them)")
        with self._lock:
            self._cache.clear()

    def list(self) -> list[TokenInfo]:
        with self.engine.connect() as connection:
            rows = connection.execute(sqlalchemy.select(TOKENS).order_by(TOKENS.c.created_at)).mappings().all()
        return [TokenInfo(r["name"], r["role"], r["created_at"], r["created_by"], r["revoked_at"]) for r in rows]

    def cached(self, secret: str) -> tuple[bool, Principal | None]:
        """(found in the cache, principal): lets an event loop skip the database on a hit."""
        if not secret.startswith(PREFIX):
            return True, None
        key = digest(secret)
        with self._lock:
            if key in self._cache:
                return True, self._cache[key]
        return False, None

    def authenticate(self, secret: str) -> Principal | None:
        """The principal of an active token, or None (unknown, revoked, or not a token at all)."""
        hit, principal = self.cached(secret)
        if hit:
            return principal
        key = digest(secret)
        with self.engine.connect() as connection:
            row = connection.execute(
                sqlalchemy.select(TOKENS.c.name, TOKENS.c.role).where(TOKENS.c.digest == key, TOKENS.c.revoked_at.is_(None))
            ).first()
        principal = Principal(row.name, row.role) if row else None
        with self._lock:
            self._cache[key] = principal
        return principal
