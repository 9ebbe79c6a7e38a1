"""A family's best trial's out-of-fold predictions, kept beside its sweep for the ensemble.

Why a file: on the platform each family sweeps in its own process (one ``automl_trials``
partition), and the ensemble is chosen later, in the registration step, from every family's best
trial. The sweep already predicted each of its rows once, from the fold that did not train on it
(:attr:`~tracseq_dagster.automl.engine.FamilySweep.best_oof`); keeping those predictions costs one
small array per family and saves refitting anything to choose the ensemble. The rows are named by
the training frame's index labels, so families whose sweeps saw different samples are compared
on the rows they share only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class OutOfFold:
    """``predictions[i]`` is the output (class probabilities ``n × k``, or values) for row
    ``index[i]`` of the training frame, whose encoded label is ``y[i]``."""

    family: str
    fingerprint: str  # the training set the sweep ran on
    index: np.ndarray
    y: np.ndarray
    predictions: np.ndarray

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:  # a handle: np.savez would append ".npz" to a name without it
            np.savez(
                handle,
                family=np.asarray(self.family),
                fingerprint=np.asarray(self.fingerprint),
                index=self.index,
                y=self.y,
                predictions=self.predictions,
            )

    @classmethod
    def load(cls, path: Path) -> OutOfFold:
        with np.load(path, allow_pickle=False) as saved:
            return cls(str(saved["family"]), str(saved["fingerprint"]), saved["index"], saved["y"], saved["predictions"])


def aligned(parts: list[OutOfFold]) -> tuple[list[np.ndarray], np.ndarray]:
    """The parts' predictions on the rows all of them predicted (in the first part's order), and those rows' labels.

    Raises ``ValueError`` when the parts share no row or disagree on a shared row's label (they
    came from different training sets).
    """
    if not parts:
        raise ValueError("no out-of-fold predictions to align")
    common = parts[0].index
    for part in parts[1:]:
        common = common[np.isin(common, part.index)]
    if not len(common):
        raise ValueError("the families' sweeps share no row")
    predictions = []
    y = parts[0].y[_positions(parts[0].index, common)]
    for part in parts:
        rows = _positions(part.index, common)
        if not np.array_equal(part.y[rows], y):
            raise ValueError(f"{part.family}'s out-of-fold labels differ from {parts[0].family}'s on the same rows")
        predictions.append(part.predictions[rows])
    return predictions, y


def _positions(index: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Where each of ``labels`` sits in ``index`` (every label is in it, once)."""
    order = np.argsort(index, kind="stable")
    return order[np.searchsorted(index, labels, sorter=order)]
