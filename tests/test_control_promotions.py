"""Promotion requests in PostgreSQL (the stack's store): ids, filters, and one decision wins a race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tracseq_dagster.control.database import open_engine
from tracseq_dagster.control.promotions import APPROVED, PENDING, REJECTED, PromotionError, PromotionRequests


def test_requests_in_postgresql_and_a_single_winning_decision(postgres_url: str) -> None:
    requests = PromotionRequests(open_engine(postgres_url))
    first = requests.create("sample_quality", "2", "ops", "better log loss")
    second = requests.create("turnaround_hours", "5", "ops", "lower rmse")
    assert (first.id, second.id) == (1, 2) and first.status == PENDING and first.requested_at.tzinfo is not None
    assert [r.id for r in requests.list(model="turnaround_hours")] == [2]
    with pytest.raises(PromotionError) as missing:
        requests.get(99)
    assert missing.value.status == 404

    def decide(who: str) -> str:
        try:
            return requests.decide(first.id, APPROVED if who.startswith("a") else REJECTED, who, "race").decided_by or ""
        except PromotionError:
            return "lost"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(decide, ["alice", "bob", "anna", "ben", "ada", "bill", "amy", "bert"]))
    winners = [o for o in outcomes if o != "lost"]
    assert len(winners) == 1
    decided = requests.get(first.id)
    assert decided.decided_by == winners[0] and decided.status == (APPROVED if winners[0].startswith("a") else REJECTED)
    assert [r.id for r in requests.list(status=PENDING)] == [2]
