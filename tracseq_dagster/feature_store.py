"""The offline feature store: features of any samples as of any moment.

Reads accepted samples from the lake and runs the one feature implementation
(``tracseq_dagster.features.compute_features``) on them, so a feature read here is the
feature the model was trained on and will be served with.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd

from tracseq_dagster.features import compute_features
from tracseq_dagster.lake import Lake


def accepted_samples(lake: Lake) -> pd.DataFrame:
    """Every accepted sample of the current exports, one row per sample_id.

    Two exports validated at the same moment could both accept an id; the blocking
    contract check flags that, and here the first export parsed wins so a sample never
    counts twice.
    """
    samples = lake.read_validated()
    if samples.empty:
        return samples
    return samples.drop_duplicates("sample_id", keep="first").reset_index(drop=True)


def build_feature_table(lake: Lake) -> pd.DataFrame:
    """The training view: each sample as of its own latest event, from earlier history only."""
    samples = accepted_samples(lake)
    if samples.empty:
        raise ValueError(f"No accepted samples in {lake.root}: ingest at least one export first.")
    return compute_features(samples, samples, as_of=None).reset_index()


def features_as_of(lake: Lake, sample_ids: Iterable[str], as_of: datetime | pd.Timestamp | str | None) -> pd.DataFrame:
    """Features of the given samples as they stood at ``as_of`` (now when None).

    Samples unknown to the lake, or not yet received at ``as_of``, are absent from the
    result; the caller can compare ids to report them.
    """
    history = accepted_samples(lake)
    wanted = history[history["sample_id"].isin(list(sample_ids))]
    moment = pd.Timestamp.now(tz="UTC") if as_of is None else pd.Timestamp(as_of)
    if moment.tzinfo is None:  # naive times are UTC, as everywhere in the lake
        moment = moment.tz_localize("UTC")
    return compute_features(wanted, history, as_of=moment).reset_index()
