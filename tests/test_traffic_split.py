"""The A/B split itself, without a model: proportions at uneven shares, the salt, stickiness.

The serving tests use a share of 0.5 and one salt, where an inverted share (``1 - share``) or an
ignored salt give the same picture; these tests would not pass with either.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tracseq_dagster.serving.traffic_split import CHALLENGER, CHAMPION, TrafficSplit

IDS = [f"TS-2026-{i:06d}" for i in range(20_000)]


def _reference(share: float, salt: str, sample_id: str) -> bool:
    """The documented rule, written out: blake2b-64 of ``salt:id`` as a fraction of 2**64, below the share."""
    digest = hashlib.blake2b(f"{salt}:{sample_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@pytest.mark.parametrize("share", [0.1, 0.25, 0.9])
def test_the_challenger_gets_its_share_not_the_rest(share: float) -> None:
    picked = TrafficSplit(share, salt="exp-3").challengers(IDS)
    assert picked.dtype == bool and picked.shape == (len(IDS),)
    # 20,000 ids: the binomial standard deviation is at most 0.0036, so 0.015 is over 4 sigma.
    assert abs(picked.mean() - share) < 0.015, picked.mean()


def test_shares_at_the_ends_send_everyone_to_one_model() -> None:
    nobody = TrafficSplit(0.0).challengers(IDS)
    assert nobody.dtype == bool and nobody.shape == (len(IDS),) and not nobody.any()  # a mask, as with a share
    assert TrafficSplit(1.0).challengers(IDS).all()
    assert TrafficSplit().challenger_share == 0.0 and TrafficSplit().salt == "ab-1"
    assert {TrafficSplit(0.0).variant(s) for s in IDS[:50]} == {CHAMPION}
    assert {TrafficSplit(1.0).variant(s) for s in IDS[:50]} == {CHALLENGER}
    assert TrafficSplit(0.3).challengers([]).shape == (0,)


@pytest.mark.parametrize("share", [-0.01, 1.01, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="challenger_share must be within 0..1"):
        TrafficSplit(share)


def test_the_same_salt_gives_the_same_assignment_and_another_salt_another() -> None:
    first = TrafficSplit(0.5, salt="exp-7").challengers(IDS)
    assert np.array_equal(first, TrafficSplit(0.5, salt="exp-7").challengers(IDS))
    assert np.array_equal(first, TrafficSplit(0.5, salt="exp-7").challengers(list(reversed(IDS)))[::-1])
    other = TrafficSplit(0.5, salt="exp-8").challengers(IDS)
    # Independent reshuffles agree on about half of the samples, not on all (or none) of them.
    assert 0.45 < (first == other).mean() < 0.55
    # The salt reshuffles who goes where but not how many.
    assert abs(other.mean() - 0.5) < 0.015


def test_assignment_follows_the_documented_hash_and_variant_agrees_with_challengers() -> None:
    for share, salt in [(0.1, "ab-1"), (0.9, "exp-7"), (0.37, "")]:
        split = TrafficSplit(share, salt=salt)
        picked = split.challengers(IDS[:2000])
        assert picked.tolist() == [_reference(share, salt, s) for s in IDS[:2000]]
        assert [split.variant(s) for s in IDS[:200]] == [CHALLENGER if p else CHAMPION for p in picked[:200]]
    # Pinned values, so that the rule cannot change under the reference without a test noticing.
    assert TrafficSplit(0.5, salt="exp-7").challengers(IDS[:16]).astype(int).tolist() == PINNED_EXP7


def test_a_larger_share_keeps_every_sample_the_smaller_one_had() -> None:
    """Growing the challenger's share only moves champions over, so a ramp-up never flips a sample back."""
    previous = np.zeros(len(IDS), dtype=bool)
    for share in (0.05, 0.1, 0.3, 0.6, 0.95):
        now = TrafficSplit(share, salt="ramp").challengers(IDS)
        assert not (previous & ~now).any()
        previous = now


# TrafficSplit(0.5, salt="exp-7").challengers(IDS[:16]), computed once from the reference rule.
PINNED_EXP7 = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1, 0]
