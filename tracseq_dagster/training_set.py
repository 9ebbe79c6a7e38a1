"""The training set of a catalog model: its labelled rows, a stable holdout, lineage.

The rows come from the model's declaration (:class:`~tracseq_dagster.models.ModelSpec`):
features computed point in time by the project's own code, plus the label.

The holdout is **stable**: a row is held out when a hash of its key (the entity key, or the
spec's :data:`~tracseq_dagster.models.HOLDOUT_GROUP` column when it has one) falls below
:data:`HOLDOUT_FRACTION`, whatever else is in the table. So a row held out today is held
out in every later retraining too, and the promotion gate can score the current champion on
the challenger's holdout knowing the champion never trained on any of it.

With a ``HOLDOUT_GROUP`` column the set also carries ``groups`` (that column): rows of one group
are near-duplicates (one freezer's days of a month, the runs of one sample), so the AutoML
engine cross-validates on whole groups too, not only the holdout. Every caller of the engine
passes ``groups=training_set.groups``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tracseq_dagster.lake import Lake
from tracseq_dagster.models import HOLDOUT_GROUP, ModelSpec

#: Share of rows held out from every sweep (by a hash of the row's key).
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class TrainingSet:
    """A model's labelled features indexed by entity key, which rows are held out, and where they came from."""

    model: str
    target: str  # the label column
    slice_column: str | None
    task: str  # the AutoML task ("auto" detects it from the label)
    metric: str | None  # None: the engine's default for the task
    frame: pd.DataFrame  # features + target, labelled rows only
    holdout: pd.Series  # bool, aligned with frame
    export_hashes: tuple[str, ...]
    feature_code_version: str
    fingerprint: str  # changes when any row, feature value or label changes (or a group, when grouped)
    groups: pd.Series | None = None  # HOLDOUT_GROUP aligned with frame: folds never split a group

    @property
    def rows(self) -> int:
        return len(self.frame)

    def holdout_frame(self) -> pd.DataFrame:
        return self.frame[self.holdout]


def stable_holdout(keys: pd.Index | pd.Series, fraction: float = HOLDOUT_FRACTION) -> np.ndarray:
    """True for the keys whose hash puts them in the holdout; the same key always gets the same answer."""

    def unit(key: str) -> float:
        digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    return np.fromiter((unit(s) < fraction for s in keys), dtype=bool, count=len(keys))


def build_training_set(spec: ModelSpec, rows: pd.DataFrame, export_hashes: tuple[str, ...] = ()) -> TrainingSet:
    """The training set of ``spec`` from its labelled rows (what ``spec.labelled_rows`` returns)."""
    missing = [c for c in (*spec.features, spec.label) if c not in rows.columns]
    if missing:
        raise ValueError(f"{spec.name}: the labelled rows lack {', '.join(missing)}")
    if not rows.index.is_unique:
        raise ValueError(f"{spec.name}: the labelled rows repeat an entity key ({rows.index[rows.index.duplicated()][0]})")
    keys = rows[HOLDOUT_GROUP] if HOLDOUT_GROUP in rows.columns else rows.index
    frame = rows[[*spec.features, spec.label]]
    holdout = pd.Series(stable_holdout(keys), index=frame.index, name="holdout")
    groups = rows[HOLDOUT_GROUP].astype(str).rename("group") if HOLDOUT_GROUP in rows.columns else None
    # A grouped set's fingerprint covers its groups: grouped CV scores differ from row-wise ones, so an
    # Optuna study named after the fingerprint never mixes the two. Ungrouped sets keep theirs.
    fingerprint = frame_fingerprint(frame) if groups is None else frame_fingerprint(frame.assign(**{HOLDOUT_GROUP: groups}))
    return TrainingSet(
        model=spec.name,
        target=spec.label,
        slice_column=spec.slice_column,
        task=spec.task,
        metric=spec.metric,
        frame=frame,
        holdout=holdout,
        export_hashes=tuple(export_hashes),
        feature_code_version=spec.feature_code_version,
        fingerprint=fingerprint,
        groups=groups,
    )


def load_training_set(lake: Lake, spec: ModelSpec) -> TrainingSet:
    """The training set of ``spec`` from the lake and the exports it was built from."""
    return build_training_set(spec, spec.labelled_rows(lake), tuple(r.file_hash for r in lake.current_records()))


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A short content hash of a frame (index, columns and values)."""
    hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]
