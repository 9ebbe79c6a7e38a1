"""The approval workflow over the registry: request, approve, reject a promotion; roll back.

What :mod:`tracseq_dagster.control.promotions` stores, this decides, against the real MLflow
registry (:class:`~tracseq_dagster.registry.ModelRegistry`, whose history lock serialises every
move of ``champion`` with the Dagster gate's and the CLI's) and writes to the audit log.

Rules:

* only a registered version whose gate passed (tag ``gate_decision = promote``) may be
  requested, and not the current champion;
* a model whose policy requires approval (:func:`approval_required`) waits for an approver,
  who must not be the requester; otherwise the request promotes at once;
* a rollback moves ``champion`` back to the previous one (the registry's stack).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracseq_dagster.control.audit import AuditLog
from tracseq_dagster.control.promotions import (
    APPROVED,
    PENDING,
    PROMOTED,
    REJECTED,
    PromotionError,
    PromotionRequest,
    PromotionRequests,
)
from tracseq_dagster.control.tokens import Principal
from tracseq_dagster.registry import CHAMPION, ChampionEvent, ModelRegistry, RegistryError

GATE_TAG = "gate_decision"


def approval_required(model: str) -> bool:
    """Whether promotions of ``model`` wait for an approver.

    The model's gate policy says so (:attr:`~tracseq_dagster.promotion.GatePolicy.requires_approval`),
    or the deployment does with ``TRACSEQ_APPROVAL_REQUIRED`` (model names, or ``all``).
    """
    from tracseq_dagster.control.config import approval_required_models
    from tracseq_dagster.models import get_model

    if get_model(model).gate.requires_approval:
        return True
    named = approval_required_models()
    return named is None or model in named


class ApprovalWorkflow:
    def __init__(
        self,
        requests: PromotionRequests,
        audit: AuditLog,
        registry: Callable[[str], ModelRegistry],
        needs_approval: Callable[[str], bool] = approval_required,
    ) -> None:
        self.requests = requests
        self.audit = audit
        self.registry = registry
        self.needs_approval = needs_approval

    def _record(
        self, who: Principal, action: str, model: str, version: str | None, outcome: str, reason: str, **detail: Any
    ) -> None:
        self.audit.record(actor=who.name, role=who.role, action=action, model=model, version=version, outcome=outcome,
                          reason=reason, detail=detail)  # fmt: skip

    def request(self, model: str, version: str, who: Principal, reason: str) -> PromotionRequest:
        """A promotion request of ``version``: promoted at once, or pending an approver."""
        registry = self.registry(model)
        version = str(version)
        try:
            found = registry.client.get_model_version(model, version)
        except Exception:  # noqa: BLE001 - MLflow raises its own not-found error per store
            self._record(who, "promotion.request", model, version, "refused", f"{reason}: no such version")
            raise PromotionError(f"{model} has no version {version} in the registry", status=404) from None
        problem = None
        if found.tags.get(GATE_TAG) != "promote":
            problem = f"version {version} did not pass the promotion gate (gate_decision = {found.tags.get(GATE_TAG, 'none')})"
        elif (champion := registry.version(CHAMPION)) is not None and str(champion.version) == version:
            problem = f"version {version} is already the champion of {model}"
        elif any(r.version == version for r in self.requests.list(model, PENDING)):
            problem = f"version {version} of {model} already has a pending promotion request"
        if problem:
            self._record(who, "promotion.request", model, version, "refused", f"{reason}: {problem}")
            raise PromotionError(problem)
        if self.needs_approval(model):
            made = self.requests.create(model, version, who.name, reason, PENDING)
            self._record(who, "promotion.request", model, version, PENDING, reason, request=made.id)
            return made
        made = self.requests.create(model, version, who.name, reason, PENDING)
        return self._promote(made, who, reason, decided=PROMOTED)

    def approve(self, request_id: int, who: Principal, reason: str) -> PromotionRequest:
        pending = self.requests.get(request_id)
        if pending.requested_by == who.name:
            self._record(
                who,
                "promotion.approve",
                pending.model,
                pending.version,
                "refused",
                "approver is the requester",
                request=request_id,
            )
            raise PromotionError(
                f"{who.name} requested promotion {request_id}: another approver must decide it (four eyes)", status=403
            )
        return self._promote(pending, who, reason, decided=APPROVED)

    def reject(self, request_id: int, who: Principal, reason: str) -> PromotionRequest:
        decided = self.requests.decide(request_id, REJECTED, who.name, reason)
        self._record(who, "promotion.reject", decided.model, decided.version, REJECTED, reason, request=request_id)
        return decided

    def _promote(self, pending: PromotionRequest, who: Principal, reason: str, *, decided: str) -> PromotionRequest:
        action = "promotion.approve" if decided == APPROVED else "promotion.promote"
        done = self.requests.decide(pending.id, decided, who.name, reason)  # only one decision wins
        registry = self.registry(pending.model)
        try:
            event = registry.promote(pending.version, f"promotion request {pending.id} ({decided} by {who.name}): {reason}")
        except Exception as error:
            self.requests.decide(pending.id, "failed", who.name, str(error)[:1000], expected=decided)
            self._record(who, action, pending.model, pending.version, "failed", str(error), request=pending.id)
            raise
        self._record(who, action, pending.model, pending.version, "promoted", reason, request=pending.id,
                     previous=event.previous, sequence=event.sequence)  # fmt: skip
        return done

    def rollback(self, model: str, who: Principal, reason: str) -> ChampionEvent:
        try:
            event = self.registry(model).rollback(f"{reason} (by {who.name})")
        except RegistryError as error:
            self._record(who, "rollback", model, None, "refused", f"{reason}: {error}")
            raise PromotionError(str(error)) from None
        self._record(who, "rollback", model, event.version, "ok", reason, previous=event.previous, sequence=event.sequence)
        return event
