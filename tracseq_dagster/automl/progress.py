"""How far a model's family sweeps have got, read from the Optuna storage they write to.

The sweeps of ``tracseq train`` run in other processes (one Dagster run per family); their
trials land in the shared Optuna RDB storage as they finish, in the study
``<model>-<training fingerprint>-<family>``. Reading that storage is the one way to follow them
live without changing how they run: :func:`sweep_progress` counts each family's trials started
since a moment and its best complete score, for the command line's progress bars.

The reader never creates Optuna's tables (``skip_table_creation``): the first sweep does, under
its lock; until then every family simply has no trials yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState


@dataclass(frozen=True)
class FamilyProgress:
    """One family's trials started since the moment asked about, and the best complete score among them."""

    family: str
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    best: float | None = None


class SweepProgressReader:
    """Reads the progress of ``model``'s family studies from the Optuna storage at ``storage_url``."""

    def __init__(self, storage_url: str, model: str, families: Iterable[str], since: datetime) -> None:
        self.storage_url, self.model, self.families, self.since = storage_url, model, tuple(families), since
        self._storage: optuna.storages.RDBStorage | None = None

    def read(self) -> dict[str, FamilyProgress]:
        """Every family's progress; a family whose study does not exist yet has none."""
        if self._storage is None:
            self._storage = optuna.storages.RDBStorage(self.storage_url, skip_table_creation=True)
        out = {family: FamilyProgress(family) for family in self.families}
        for study in self._storage.get_all_studies():
            family = self._family_of(study.study_name)
            if family is None:
                continue
            trials = [
                t
                for t in self._storage.get_all_trials(self._storage.get_study_id_from_name(study.study_name), deepcopy=False)
                if t.datetime_start is not None and t.datetime_start >= self.since
            ]
            values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
            maximise = study.direction == StudyDirection.MAXIMIZE
            best = (max(values) if maximise else min(values)) if values else None
            before = out[family]
            if before.best is not None and best is not None:
                best = max(best, before.best) if maximise else min(best, before.best)
            out[family] = FamilyProgress(
                family,
                before.trials + len(trials),
                before.complete + len(values),
                before.pruned + sum(t.state == TrialState.PRUNED for t in trials),
                best if best is not None else before.best,
            )
        return out

    def _family_of(self, study_name: str) -> str | None:
        if not study_name.startswith(f"{self.model}-"):
            return None
        return next((f for f in self.families if study_name.endswith(f"-{f}")), None)
