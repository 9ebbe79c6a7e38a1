"""The A/B split between ``champion`` and ``challenger``, sticky per sample.

A sample goes to the challenger when a hash of its id falls below the challenger's share, so
the same sample always meets the same model (repeat requests agree, and the reports compare
populations, not coin flips). The salt lets an operator reshuffle for a new experiment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class TrafficSplit:
    challenger_share: float = 0.0
    salt: str = "ab-1"

    def __post_init__(self) -> None:
        if not 0.0 <= self.challenger_share <= 1.0:
            raise ValueError(f"challenger_share must be within 0..1, got {self.challenger_share}")

    def variant(self, sample_id: str) -> str:
        if self.challenger_share <= 0.0:
            return CHAMPION
        digest = hashlib.blake2b(f"{self.salt}:{sample_id}".encode(), digest_size=8).digest()
        return CHALLENGER if int.from_bytes(digest, "big") / 2**64 < self.challenger_share else CHAMPION
