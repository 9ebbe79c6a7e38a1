"""The hidden freezer excursion process: documented rates (bad, good and degrading units, door load),
draws that continue across windows, per-sample counts equal to the unit's excursions during the stay,
and generated exports that carry the per-unit differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracseq_dagster.generator import generate_samples
from tracseq_dagster.operations.freezer_process import (
    DOOR_MAX,
    EPISODE_FACTOR,
    PROFILES,
    REFERENCE,
    hazard,
    in_episode,
    profile,
    sample_excursions,
    simulate_excursions,
)


def test_the_hazard_is_the_documented_formula() -> None:
    for unit in ("FRZ-01", "FRZ-03", "FRZ-04"):
        spec = PROFILES[unit]
        rate = hazard(unit, 0, 365, seed=1)
        base = spec.base_per_day * np.exp(spec.growth_per_year * np.arange(365) / 365)
        np.testing.assert_allclose(rate, base * np.where(in_episode(unit, 0, 365, 1), EPISODE_FACTOR, 1.0))
    with_door = hazard("FRZ-01", 0, 3, seed=1, intake=np.array([0.0, 10.0, 1e6]))
    np.testing.assert_allclose(with_door - hazard("FRZ-01", 0, 3, seed=1), [0.0, DOOR_MAX / 2, DOOR_MAX], rtol=1e-4)
    assert profile("XYZ-77") == profile("XYZ-77") and profile("XYZ-77").base_per_day > 0  # unknown units: derived, stable


def test_bad_units_have_more_excursions_than_good_ones_and_degrading_units_more_later() -> None:
    events = simulate_excursions(list(PROFILES), REFERENCE, 730, seed=3)
    per_unit = events.groupby("freezer_id").size().reindex(list(PROFILES), fill_value=0)
    assert per_unit["FRZ-03"] > 4 * per_unit["FRZ-01"] and per_unit["FRZ-08"] > 4 * per_unit["FRZ-06"]
    frz04 = events[events["freezer_id"] == "FRZ-04"]
    early = (frz04["ts"] < REFERENCE + pd.Timedelta(days=365)).sum()
    assert len(frz04) - early > 3 * early
    # Poisson counts: the number of events matches the summed hazard.
    expected = sum(hazard(unit, 0, 730, seed=3).sum() for unit in PROFILES)
    assert len(events) == pytest.approx(expected, rel=0.1)
    assert (events["deviation_c"] > 0).all()


def test_a_later_window_continues_the_same_history() -> None:
    whole = simulate_excursions(["FRZ-03", "FRG-01"], "2025-06-01", 60, seed=9)
    later = simulate_excursions(["FRZ-03", "FRG-01"], "2025-07-01", 30, seed=9)
    tail = whole[whole["ts"] >= pd.Timestamp("2025-07-01", tz="UTC")].reset_index(drop=True)
    pd.testing.assert_frame_equal(tail.sort_values(["freezer_id", "ts"]).reset_index(drop=True),
                                  later.sort_values(["freezer_id", "ts"]).reset_index(drop=True))  # fmt: skip
    other_seed = simulate_excursions(["FRZ-03", "FRG-01"], "2025-07-01", 30, seed=10)
    assert not later.equals(other_seed)


def test_more_door_load_never_gives_fewer_excursions() -> None:
    quiet = simulate_excursions(["FRZ-02"], REFERENCE, 365, seed=4)
    busy_days = pd.DataFrame({"freezer_id": "FRZ-02", "day": pd.date_range(REFERENCE, periods=365), "samples": 40})
    busy = simulate_excursions(["FRZ-02"], REFERENCE, 365, seed=4, intake=busy_days)
    assert len(busy) > len(quiet)
    assert set(quiet["ts"].dt.floor("D")) <= set(busy["ts"].dt.floor("D"))


def test_a_sample_records_the_excursions_of_its_unit_during_its_stay() -> None:
    rng = np.random.default_rng(0)
    epoch = REFERENCE.value // 10**9
    units = rng.choice(["FRZ-03", "FRZ-08"], 200)
    start = epoch + rng.integers(0, 300 * 86_400, 200)
    until = start + rng.integers(0, 20 * 86_400, 200)
    counts, deviation = sample_excursions(units, start, until, seed=5)
    intake = pd.DataFrame({"freezer_id": units, "day": pd.to_datetime(start, unit="s", utc=True).floor("D"), "samples": 1})
    intake = intake.groupby(["freezer_id", "day"], as_index=False)["samples"].sum()
    first_day = pd.to_datetime(start.min(), unit="s", utc=True).floor("D")
    days = int((pd.to_datetime(until.max(), unit="s", utc=True).floor("D") - first_day).days) + 1
    events = simulate_excursions(["FRZ-03", "FRZ-08"], first_day, days, seed=5, intake=intake)
    seconds = (events["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    for i in range(200):
        mine = events[(events["freezer_id"] == units[i]) & (seconds >= start[i]) & (seconds < until[i])]
        assert counts[i] == len(mine)
        assert deviation[i] == (mine["deviation_c"].max() if len(mine) else deviation[i])
    assert counts.sum() > 0 and (deviation[counts == 0] < 2).all()


def test_generated_exports_carry_the_per_unit_differences() -> None:
    samples = generate_samples(6000, seed=11)
    unit = samples["storage_location"].str.split("/").str[0]
    stay = (samples["extraction_ts"].fillna(samples["received_ts"].max()) - samples["received_ts"]) / pd.Timedelta(days=1)
    per_day = samples["temp_excursions"].astype(float).groupby(unit).sum() / stay.groupby(unit).sum()
    assert per_day["FRZ-03"] > 3 * per_day["FRZ-01"] and per_day["FRZ-08"] > 3 * per_day["FRZ-06"]
    assert (samples["max_temp_deviation_c"] >= 0).all() and samples["temp_excursions"].min() >= 0
