"""A gate that passes in the training chain follows the approval policy: promote at once, or a
pending request that an approver decides through the management API's workflow; audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from control_support import add_version, registry_copy, template_registry

from tracseq_dagster.control.approvals import ApprovalWorkflow
from tracseq_dagster.control.audit import open_audit_log
from tracseq_dagster.control.config import control_db_url
from tracseq_dagster.control.database import open_engine
from tracseq_dagster.control.gate import gate_passed
from tracseq_dagster.control.promotions import PromotionRequests
from tracseq_dagster.control.tokens import Principal
from tracseq_dagster.registry import ModelRegistry

MODEL = "turnaround_hours"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TRACSEQ_CONTROL_DB", raising=False)
    monkeypatch.delenv("TRACSEQ_AUDIT_LOG", raising=False)
    (tmp_path / "template").mkdir()
    client = registry_copy(template_registry(tmp_path / "template"), tmp_path)
    for _ in range(2):
        add_version(client, MODEL, tmp_path, gate="promote", metrics={"holdout_score": 3.2})
    return ModelRegistry(client, MODEL)


def test_gate_promotes_at_once_without_an_approval_policy(registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACSEQ_APPROVAL_REQUIRED", raising=False)
    assert gate_passed(registry, "1", "promotion gate passed (2/2 rules)", "run-a") is True
    assert str(registry.version("champion").version) == "1" and registry.history()[-1].dagster_run_id == "run-a"  # type: ignore[union-attr]
    [entry] = open_audit_log().entries()
    assert (entry.actor, entry.action, entry.model, entry.version, entry.outcome) == (
        "dagster:run-a",
        "promotion.gate",
        MODEL,
        "1",
        "promoted",
    )


def test_gate_files_a_request_that_an_approver_decides(registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACSEQ_APPROVAL_REQUIRED", raising=False)
    gate_passed(registry, "1", "first", "run-a")
    monkeypatch.setenv("TRACSEQ_APPROVAL_REQUIRED", f"sample_quality,{MODEL}")
    assert gate_passed(registry, "2", "promotion gate passed: rmse 3.1 vs 3.4", "run-b") is False
    assert str(registry.version("champion").version) == "1"  # type: ignore[union-attr]
    requests = PromotionRequests(open_engine(control_db_url()))
    [pending] = requests.list(MODEL, "pending")
    assert (pending.version, pending.requested_by) == ("2", "dagster:run-b")
    workflow = ApprovalWorkflow(requests, open_audit_log(), lambda name: registry)
    workflow.approve(pending.id, Principal("lab-lead", "approver"), "looked at the slices")
    assert str(registry.version("champion").version) == "2"  # type: ignore[union-attr]
    assert [(e.action, e.outcome) for e in open_audit_log().entries()] == [
        ("promotion.gate", "promoted"),
        ("promotion.gate", "pending"),
        ("promotion.approve", "promoted"),
    ]


def test_a_policy_that_requires_approval_makes_the_gate_wait(registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's declared GatePolicy alone (no TRACSEQ_APPROVAL_REQUIRED) files a pending request."""
    from dataclasses import replace

    from tracseq_dagster.models import catalog

    monkeypatch.delenv("TRACSEQ_APPROVAL_REQUIRED", raising=False)
    gate_passed(registry, "1", "first", "run-a")
    spec = catalog()[MODEL]
    monkeypatch.setitem(catalog(), MODEL, replace(spec, gate=replace(spec.gate, requires_approval=True)))
    assert gate_passed(registry, "2", "promotion gate passed", "run-b") is False
    assert str(registry.version("champion").version) == "1"  # type: ignore[union-attr]
    [pending] = PromotionRequests(open_engine(control_db_url())).list(MODEL, "pending")
    assert pending.version == "2"
