"""What happens when the promotion gate passes: promote now, or wait for an approver.

Called by the training chain's gate (:func:`tracseq_dagster.training.run_promotion_gate`), so
a gate that passes in Dagster follows the same policy and leaves the same audit trail as a
request through the management API: when the model's policy requires approval
(:func:`~tracseq_dagster.control.approvals.approval_required`), a ``pending`` promotion request
is made in the control database (by ``dagster:<run id>``) and ``champion`` does not move until
an approver decides (``POST /promotions/{id}/approve``); otherwise the version is promoted at
once. Either way the audit log records it.
"""

from __future__ import annotations

from tracseq_dagster.control.approvals import approval_required
from tracseq_dagster.control.audit import record_or_warn
from tracseq_dagster.control.promotions import PENDING, PROMOTED
from tracseq_dagster.registry import ModelRegistry


def _needs_approval(model: str) -> bool:
    from tracseq_dagster.models import UnknownModelError

    try:
        return approval_required(model)
    except UnknownModelError:  # a registry outside the catalog (tests, a lab's experiment): no policy
        return False


def gate_passed(registry: ModelRegistry, version: str, reason: str, dagster_run_id: str | None) -> bool:
    """Promote ``version`` (True) or file a pending request for an approver (False); audited either way."""
    actor = f"dagster:{dagster_run_id}" if dagster_run_id else "dagster"
    version = str(version)
    if _needs_approval(registry.name):
        from tracseq_dagster.control.config import control_db_url
        from tracseq_dagster.control.database import open_engine
        from tracseq_dagster.control.promotions import PromotionRequests

        request = PromotionRequests(open_engine(control_db_url())).create(registry.name, version, actor, reason, PENDING)
        record_or_warn(actor=actor, role="dagster", action="promotion.gate", model=registry.name, version=version, outcome=PENDING,
                       reason=reason, detail={"request": request.id})  # fmt: skip
        return False
    event = registry.promote(version, reason, dagster_run_id=dagster_run_id)
    record_or_warn(actor=actor, role="dagster", action="promotion.gate", model=registry.name, version=version, outcome=PROMOTED,
                   reason=reason, detail={"previous": event.previous, "sequence": event.sequence})  # fmt: skip
    return True
