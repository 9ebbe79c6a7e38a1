"""The A/B split between ``champion`` and ``challenger``, sticky per sample.

A sample goes to the challenger when a hash of its id falls below the challenger's share, so
the same sample always meets the same model (repeat requests agree, and the reports compare
populations, not coin flips). The salt lets an operator reshuffle for a new experiment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

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
        return CHALLENGER if self.challengers([sample_id])[0] else CHAMPION

    def challengers(self, sample_ids: Iterable[str]) -> np.ndarray:
        """:meth:`variant` of many samples at once: True where the challenger answers.

        With no challenger share nothing is hashed; otherwise one blake2b per id (about a
        microsecond), the hash :meth:`variant` uses, so a sample meets the same model on every route.
        """
        ids = list(sample_ids)
        if self.challenger_share <= 0.0:
            return np.zeros(len(ids), dtype=bool)
        share, salt = self.challenger_share, f"{self.salt}:"
        return np.fromiter((int.from_bytes(hashlib.blake2b(f"{salt}{s}".encode(), digest_size=8).digest(), "big") / 2**64 < share
                            for s in ids), dtype=bool, count=len(ids))  # fmt: skip
