"""Freezer days rebuilt from samples: counts on a hand-made lab, excursion records used only once
closed (point in time), the rate per sample-day, a broken location reported not fatal, an empty lab."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.test_features import frame
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.operations.freezer_history import DAY_COLUMNS, freezer_days, freezer_days_as_of

D0 = pd.Timestamp("2025-03-03T00:00:00Z")


def d(days: float) -> pd.Timestamp:
    return D0 + pd.Timedelta(days=days)


def small_lab() -> pd.DataFrame:
    """Three samples in FRZ-01 and one in FRZ-02; one stay closes with two excursions on day 4."""
    return frame(
        {"received_ts": d(0.5), "extraction_ts": d(4.5), "temp_excursions": 2, "max_temp_deviation_c": 6.0,
         "storage_location": "FRZ-01/R1/B1/A1", "storage_temp_c": -19.0},
        {"received_ts": d(1.5), "extraction_ts": d(2.5), "temp_excursions": 0, "max_temp_deviation_c": 0.2,
         "storage_location": "FRZ-01/R1/B1/A2", "storage_temp_c": -20.0},
        {"received_ts": d(1.6), "extraction_ts": None, "temp_excursions": 5, "max_temp_deviation_c": 9.0,
         "storage_location": "FRZ-01/R1/B1/A3", "storage_temp_c": -22.0},
        {"received_ts": d(2.5), "extraction_ts": d(3.0), "temp_excursions": 0, "storage_location": "FRZ-02/R1/B1/A1"},
    )  # fmt: skip


def test_a_hand_made_lab_gives_the_counts_and_rates_by_hand() -> None:
    days = freezer_days(small_lab(), until=d(5))
    assert list(days.columns) == list(DAY_COLUMNS)
    one = days[days["freezer_id"] == "FRZ-01"].set_index(pd.DatetimeIndex(days.loc[days["freezer_id"] == "FRZ-01", "day"]))
    assert one.index[0] == d(0) and one.index[-1] == d(5)
    assert one["intake"].tolist() == [1, 2, 0, 0, 0, 0]
    assert one["samples_stored"].tolist() == [1, 3, 3, 3, 3, 3]
    assert one.loc[d(1), "mean_storage_deviation_c"] == pytest.approx(1.0)  # |−20+20| and |−22+20|
    assert one.loc[d(1), "max_storage_deviation_c"] == pytest.approx(2.0)
    assert one["records_closed"].tolist() == [0, 0, 1, 0, 1, 0]
    # Day 2: one record closed, 1 sample-day of exposure, no excursion.
    assert one.loc[d(2), "excursion_rate_30d"] == 0.0 and np.isnan(one.loc[d(1), "excursion_rate_30d"])
    # Day 4: 2 excursions over 1 + 4 sample-days; the open stay (5 excursions exported) is not counted.
    assert one.loc[d(4), "excursions_recorded"] == 2
    assert one.loc[d(4), "excursion_rate_30d"] == pytest.approx(2 / 5)
    assert one.loc[d(4), "excursion_share_30d"] == pytest.approx(0.5)
    assert one.loc[d(4), "max_deviation_30d_c"] == 6.0 and one.loc[d(5), "days_since_excursion"] == 1
    assert one["set_point_c"].eq(-20.0).all()
    two = days[days["freezer_id"] == "FRZ-02"]
    assert two["day"].iloc[0] == d(2) and two["records_closed"].sum() == 1


def test_a_row_sees_nothing_after_its_day() -> None:
    """Recomputed from what was known at the end of day k (later receipts gone, open stays'
    records scrambled), every row of day k is unchanged."""
    samples = generate_samples(600, seed=5)
    full = freezer_days(samples)
    rng = np.random.default_rng(0)
    for day in pd.DatetimeIndex(rng.choice(full["day"].unique(), 6, replace=False)):
        end = day + pd.Timedelta(days=1)
        known = samples[samples["received_ts"] < end].copy()
        still_in = ~(known["extraction_ts"] < end)
        known.loc[still_in, "extraction_ts"] = pd.NaT
        known.loc[still_in, "temp_excursions"] = 99
        known.loc[still_in, "max_temp_deviation_c"] = 99.0
        again = freezer_days(known, until=day)
        left = full[full["day"] == day].set_index("freezer_id").sort_index()
        right = again[again["day"] == day].set_index("freezer_id").sort_index()
        pd.testing.assert_frame_equal(left, right, check_dtype=False)


def test_the_point_in_time_test_can_fail() -> None:
    """Closing a stay earlier changes the day's rate: the columns do depend on closed records."""
    lab = small_lab()
    before = freezer_days(lab, until=d(5))
    lab.loc[0, "extraction_ts"] = d(3.5)
    after = freezer_days(lab, until=d(5))
    day3 = (before["freezer_id"] == "FRZ-01") & (before["day"] == d(3))
    assert before.loc[day3, "excursions_recorded"].item() == 0 and after.loc[day3, "excursions_recorded"].item() == 2


def test_a_broken_location_is_counted_not_fatal_and_an_empty_lab_has_no_days() -> None:
    lab = small_lab()
    lab.loc[1, "storage_location"] = "FREEZER 1, shelf 2"
    days = freezer_days(lab, until=d(5))
    assert days.attrs["unparsable"] == 1
    assert days.loc[days["freezer_id"] == "FRZ-01", "intake"].sum() == 2
    empty = freezer_days(frame())
    assert empty.empty and list(empty.columns) == list(DAY_COLUMNS) and empty.attrs["unparsable"] == 0


def test_as_of_takes_the_last_complete_day() -> None:
    days = freezer_days(small_lab(), until=d(5))
    asked = freezer_days_as_of(days, pd.Series(["FRZ-01", "FRZ-01", "FRZ-09"]), pd.Series([d(4.5), d(5.0), d(3)]))
    assert asked["day"].tolist()[:2] == [d(3), d(4)]
    assert asked["excursions_recorded"].tolist()[:2] == [0, 2]
    assert asked.iloc[2].drop(["freezer_id", "day"]).isna().all()
