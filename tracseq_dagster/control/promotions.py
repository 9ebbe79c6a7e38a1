"""Promotion requests and their approval: the replaced platform's deployment approval workflow.

A version that passed the promotion gate (its registry tag ``gate_decision`` is ``promote``)
may be requested for promotion. When the model's policy asks for approval (its gate policy's
``requires_approval``, or ``TRACSEQ_APPROVAL_REQUIRED``), the request waits, ``pending``, for a
person with the approver role, who approves (the ``champion`` alias moves through
:meth:`ModelRegistry.promote`, with its history and lock) or rejects it. The approver must not
be the requester (four eyes). Without such a policy the request promotes at once.

Requests live in the control database (:mod:`tracseq_dagster.control.database`); a decision is
a conditional ``UPDATE … WHERE status = 'pending'``, so two approvers at once cannot both win.
Every step is written to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy
from sqlalchemy.engine import Engine

from tracseq_dagster.control.database import METADATA

PENDING, APPROVED, REJECTED, PROMOTED, FAILED = "pending", "approved", "rejected", "promoted", "failed"

REQUESTS = sqlalchemy.Table(
    "tracseq_promotion_requests",
    METADATA,
    sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True, autoincrement=True),
    sqlalchemy.Column("model", sqlalchemy.String(200), nullable=False),
    sqlalchemy.Column("version", sqlalchemy.String(40), nullable=False),
    sqlalchemy.Column("status", sqlalchemy.String(20), nullable=False),
    sqlalchemy.Column("requested_by", sqlalchemy.String(200), nullable=False),
    sqlalchemy.Column("requested_at", sqlalchemy.DateTime(timezone=True), nullable=False),
    sqlalchemy.Column("reason", sqlalchemy.Text, nullable=False),
    sqlalchemy.Column("decided_by", sqlalchemy.String(200), nullable=True),
    sqlalchemy.Column("decided_at", sqlalchemy.DateTime(timezone=True), nullable=True),
    sqlalchemy.Column("decision_reason", sqlalchemy.Text, nullable=True),
)


class PromotionError(ValueError):
    """A request that cannot be made or decided; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PromotionRequest:
    id: int
    model: str
    version: str
    status: str
    requested_by: str
    requested_at: datetime
    reason: str
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {k: (_utc(v).isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


def _utc(moment: datetime) -> datetime:
    """SQLite hands times back without their zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class PromotionRequests:
    """The requests table: create, read, and decide once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, model: str, version: str, requested_by: str, reason: str, status: str = PENDING) -> PromotionRequest:
        row = {"model": model, "version": str(version), "status": status, "requested_by": requested_by,
               "requested_at": datetime.now(UTC), "reason": reason}  # fmt: skip
        with self.engine.begin() as connection:
            new_id = connection.execute(REQUESTS.insert().values(**row).returning(REQUESTS.c.id)).scalar_one()
        return self.get(new_id)

    def get(self, request_id: int) -> PromotionRequest:
        with self.engine.connect() as connection:
            row = connection.execute(sqlalchemy.select(REQUESTS).where(REQUESTS.c.id == request_id)).mappings().first()
        if row is None:
            raise PromotionError(f"no promotion request {request_id}", status=404)
        return PromotionRequest(**row)

    def list(self, model: str | None = None, status: str | None = None) -> list[PromotionRequest]:
        query = sqlalchemy.select(REQUESTS).order_by(REQUESTS.c.id)
        if model is not None:
            query = query.where(REQUESTS.c.model == model)
        if status is not None:
            query = query.where(REQUESTS.c.status == status)
        with self.engine.connect() as connection:
            return [PromotionRequest(**r) for r in connection.execute(query).mappings().all()]

    def decide(self, request_id: int, status: str, decided_by: str, reason: str, *, expected: str = PENDING) -> PromotionRequest:
        """Move a request from ``expected`` to ``status``; fails if another decision came first."""
        with self.engine.begin() as connection:
            done = connection.execute(
                REQUESTS.update()
                .where(REQUESTS.c.id == request_id, REQUESTS.c.status == expected)
                .values(status=status, decided_by=decided_by, decided_at=datetime.now(UTC), decision_reason=reason)
            )
        if done.rowcount == 0:
            current = self.get(request_id)  # 404 when it does not exist
            raise PromotionError(f"promotion request {request_id} is {current.status}, not {expected}: it was decided already")
        return self.get(request_id)
