"""The training set of the ``sample_quality`` model: labelled features, a stable holdout, lineage.

The model learns ``qc_status`` (pass / borderline / fail) from the point-in-time features of
:mod:`tracseq_dagster.features`, exactly as the offline store holds them.

The holdout is **stable**: a sample is held out when a hash of its ``sample_id`` falls below
:data:`HOLDOUT_FRACTION`, whatever else is in the table. So a sample held out today is held
out in every later retraining too, and the promotion gate can score the current champion on
the challenger's holdout knowing the champion never trained on any of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tracseq_dagster.features import FEATURE_CODE_VERSION, FEATURE_NAMES, LABEL_COLUMN, SAMPLE_ID
from tracseq_dagster.lake import Lake

#: What the model predicts.
TARGET = LABEL_COLUMN
#: Share of samples held out from every sweep (by a hash of the sample id).
HOLDOUT_FRACTION = 0.2
#: The column whose values are the slices the promotion gate and the metrics look at.
SLICE_COLUMN = "sample_type"


@dataclass(frozen=True)
class TrainingSet:
    """Labelled features indexed by ``sample_id``, which rows are held out, and where they came from."""

    frame: pd.DataFrame  # FEATURE_NAMES + TARGET, labelled rows only
    holdout: pd.Series  # bool, aligned with frame
    export_hashes: tuple[str, ...]
    feature_code_version: str
    fingerprint: str  # changes when any sample, feature value or label changes

    @property
    def rows(self) -> int:
        return len(self.frame)

    def holdout_frame(self) -> pd.DataFrame:
        return self.frame[self.holdout]


def stable_holdout(sample_ids: pd.Index | pd.Series, fraction: float = HOLDOUT_FRACTION) -> np.ndarray:
    """True for the ids whose hash puts them in the holdout; the same id always gets the same answer."""
    def unit(sample_id: str) -> float:
        digest = hashlib.blake2b(str(sample_id).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    return np.fromiter((unit(s) < fraction for s in sample_ids), dtype=bool, count=len(sample_ids))


def training_set_from_features(features: pd.DataFrame, export_hashes: tuple[str, ...] = ()) -> TrainingSet:
    """The labelled rows of a ``sample_features`` table, with the stable holdout marked."""
    missing = [c for c in (SAMPLE_ID, TARGET, *FEATURE_NAMES) if c not in features.columns]
    if missing:
        raise ValueError(f"the feature table lacks {', '.join(missing)}: rebuild sample_features")
    labelled = features[features[TARGET].notna()]
    frame = labelled.set_index(SAMPLE_ID)[[*FEATURE_NAMES, TARGET]]
    frame = frame.assign(**{TARGET: frame[TARGET].astype(str)})
    holdout = pd.Series(stable_holdout(frame.index), index=frame.index, name="holdout")
    return TrainingSet(
        frame=frame,
        holdout=holdout,
        export_hashes=tuple(export_hashes),
        feature_code_version=FEATURE_CODE_VERSION,
        fingerprint=frame_fingerprint(frame),
    )


def load_training_set(lake: Lake) -> TrainingSet:
    """The training set from the offline store of ``lake`` and the exports it was built from."""
    return training_set_from_features(lake.read_features(), tuple(r.file_hash for r in lake.current_records()))


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A short content hash of a frame (index, columns and values)."""
    hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]
