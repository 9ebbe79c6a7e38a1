"""The entity histories the feature store keeps equal the project's own point-in-time features.

A point-in-time join of an entity history (latest row stamped at or before ``t``) must give
what :func:`compute_features` or the run features compute as of ``t``, labels strictly before
``t`` included and none at or after it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracseq_dagster.entity_history import (
    EVENT_TIMESTAMP,
    freezer_history,
    instrument_history,
    label_times,
    operator_history,
    site_history,
)
from tracseq_dagster.features import FAILURE_PRIOR, compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.run_features import RUN_FAILURE_PRIOR, sequencing_success_frame
from tracseq_dagster.run_generator import generate_runs


@pytest.fixture(scope="module")
def lab() -> tuple[pd.DataFrame, pd.DataFrame]:
    samples = generate_samples(1500, seed=5)
    return samples, generate_runs(samples, seed=5)


def as_of_lookup(history: pd.DataFrame, key: str, column: str, keys: pd.Series, at: pd.Series) -> np.ndarray:
    """What a point-in-time join answers: the latest row of the key stamped at or before ``at``."""
    queries = pd.DataFrame(
        {key: keys.astype(object).to_numpy(), "t": pd.to_datetime(at, utc=True).to_numpy(), "i": range(len(keys))}
    )
    joined = pd.merge_asof(
        queries.sort_values("t"),
        history.astype({key: object}).sort_values(EVENT_TIMESTAMP).rename(columns={EVENT_TIMESTAMP: "t"}),
        on="t",
        by=key,
        direction="backward",
        allow_exact_matches=True,
    )
    return joined.sort_values("i")[column].to_numpy(dtype=np.float64)


@pytest.mark.parametrize("key,rate", [("operator_id", "operator_failure_rate"), ("site", "site_failure_rate")])
def test_failure_rate_history_equals_the_sample_features(lab, key: str, rate: str) -> None:
    samples, _ = lab
    features = compute_features(samples, samples, as_of=None)  # each sample as of its label_ts
    history = operator_history(samples) if key == "operator_id" else site_history(samples)
    frame = samples.set_index("sample_id").loc[features.index]
    joined = as_of_lookup(history, key, rate, frame[key], features["as_of"])
    joined = np.where(np.isnan(joined), FAILURE_PRIOR, joined)  # no history yet: the prior
    np.testing.assert_allclose(joined, features[rate].to_numpy(), rtol=0, atol=1e-12)
    assert history[rate].nunique() > 5  # rates really move over time


def test_a_label_at_the_join_instant_is_not_seen(lab) -> None:
    samples, _ = lab
    history = operator_history(samples)
    labelled = samples[samples["qc_status"].notna()].iloc[:50]
    at = label_times(labelled)
    before = as_of_lookup(history, "operator_id", "operator_history_count", labelled["operator_id"].reset_index(drop=True), at)
    after = as_of_lookup(
        history,
        "operator_id",
        "operator_history_count",
        labelled["operator_id"].reset_index(drop=True),
        at + pd.Timedelta(microseconds=1),
    )
    assert np.all(np.nan_to_num(after) >= np.nan_to_num(before) + 1)  # its own label arrives one microsecond later


def test_freezer_history_equals_the_feature_for_a_new_sample(lab) -> None:
    samples, _ = lab
    history = freezer_history(samples)
    moments = pd.to_datetime(samples["received_ts"]).quantile([0.2, 0.5, 0.9]).dt.round("s")
    probes = samples.iloc[:40].copy()
    probes["sample_id"] = [f"TS-2099-{i:06d}" for i in range(len(probes))]  # not in the history: serving
    for moment in moments:
        probes["received_ts"] = moment - pd.Timedelta(hours=1)
        expected = compute_features(probes, samples, as_of=moment)
        freezers = probes.set_index("sample_id").loc[expected.index, "storage_location"].str.split("/").str[0]
        joined = as_of_lookup(
            history, "freezer", "freezer_utilisation", freezers.reset_index(drop=True), pd.Series([moment] * len(freezers))
        )
        np.testing.assert_allclose(joined, expected["freezer_utilisation"].to_numpy(), rtol=0, atol=1e-12)


def test_instrument_history_equals_the_run_features(lab) -> None:
    samples, runs = lab
    frame = sequencing_success_frame(samples, runs)
    history = instrument_history(runs)
    keys = frame.index.get_level_values("run_id")
    instruments = runs.drop_duplicates("run_id").set_index("run_id").loc[keys, "instrument_id"].reset_index(drop=True)
    for column, fallback in (("instrument_failure_rate", RUN_FAILURE_PRIOR), ("instrument_recent_libraries", 0.0)):
        joined = as_of_lookup(history, "instrument_id", column, instruments, frame["as_of"].reset_index(drop=True))
        np.testing.assert_allclose(np.where(np.isnan(joined), fallback, joined), frame[column].to_numpy(), rtol=0, atol=1e-12)


def test_empty_inputs_give_empty_typed_tables() -> None:
    empty = generate_samples(1, seed=1).iloc[:0]
    for table in (operator_history(empty), site_history(empty), freezer_history(empty), instrument_history(pd.DataFrame())):
        assert table.empty and str(table[EVENT_TIMESTAMP].dtype) == "datetime64[ns, UTC]"
