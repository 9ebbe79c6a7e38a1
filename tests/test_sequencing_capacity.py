"""Sequencing capacity from a hand-made run history: runs per week, flowcell size, share, the
libraries-per-sample ratio, runs needed per forecast week, statuses and bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from tracseq_dagster.operations.sequencing_capacity import (
    ALL,
    PLAN_COLUMNS,
    CapacityInputError,
    capacity_plan,
    instrument_capacity,
    sequencing_ratio,
)

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")  # a Monday; the 8-week window starts 2025-05-06


def run_rows(instrument: str, starts: list[str], libraries: list[int], first: int) -> list[dict]:
    rows = []
    for k, (start, n) in enumerate(zip(starts, libraries, strict=True)):
        run_id = f"RUN-2025-{first + k:05d}"
        rows += [
            {
                "run_id": run_id,
                "sample_id": f"{run_id}-S{i}",
                "instrument_id": instrument,
                "run_start_ts": pd.Timestamp(start, tz="UTC"),
            }
            for i in range(n)
        ]
    return rows


@pytest.fixture
def runs() -> pd.DataFrame:
    # SEQ-01: 2 runs a week in the last 3 weeks, 3 in one week before; flowcells of 8 (one of 6).
    seq1 = run_rows(
        "SEQ-01",
        [
            "2025-06-10",
            "2025-06-12",
            "2025-06-17",
            "2025-06-19",
            "2025-06-24",
            "2025-06-26",
            "2025-05-20",
            "2025-05-21",
            "2025-05-22",
        ],
        [8, 8, 8, 8, 8, 6, 8, 8, 8],
        1,
    )
    # SEQ-02: one run a week of 4 libraries in the last 2 weeks; SEQ-09: only runs long before the window.
    seq2 = run_rows("SEQ-02", ["2025-06-18", "2025-06-25"], [4, 4], 100)
    old = run_rows("SEQ-09", ["2025-01-07"], [5], 200)
    return pd.DataFrame(seq1 + seq2 + old)


def test_recent_capacity_per_instrument(runs: pd.DataFrame) -> None:
    capacity = instrument_capacity(runs, AS_OF).set_index("instrument_id")
    assert capacity.loc["SEQ-01", "runs"] == 9 and capacity.loc["SEQ-01", "runs_per_week_capacity"] == 3
    assert capacity.loc["SEQ-01", "runs_per_week"] == pytest.approx(9 / 8, abs=0.01)
    assert capacity.loc["SEQ-01", "flowcell_capacity"] == 8 and capacity.loc["SEQ-01", "samples_per_run"] == 8
    assert capacity.loc["SEQ-02", "runs_per_week_capacity"] == 1 and capacity.loc["SEQ-02", "flowcell_capacity"] == 4
    assert capacity.loc["SEQ-09", "runs_per_week_capacity"] == 0 and capacity.loc["SEQ-09", "share"] == 0  # nothing recent
    assert capacity.loc["SEQ-01", "share"] == pytest.approx(70 / 78)
    assert capacity["share"].sum() == pytest.approx(1.0)


def test_libraries_per_received_sample() -> None:
    samples = pd.DataFrame(
        {
            "sample_id": ["A", "B", "C", "D", "E"],
            "received_ts": pd.to_datetime(["2025-04-01", "2025-04-15", "2025-05-01", "2025-05-10", "2025-06-25"], utc=True),
        }
    )
    runs = pd.DataFrame(
        {
            "run_id": ["R1", "R1", "R2", "R3", "R3"],
            "sample_id": ["A", "B", "B", "C", "E"],  # B re-run, D never sequenced, E too recent to count
            "instrument_id": "SEQ-01",
            "run_start_ts": pd.to_datetime(["2025-04-20"] * 3 + ["2025-06-28"] * 2, utc=True),
        }
    )
    assert sequencing_ratio(samples, runs, AS_OF) == pytest.approx(4 / 4)  # A, B twice, C over A-D
    assert sequencing_ratio(samples[samples["sample_id"] != "D"], runs, AS_OF) == pytest.approx(4 / 3)
    with pytest.raises(CapacityInputError, match="too little history"):
        sequencing_ratio(samples.iloc[[4]], runs, AS_OF)


def test_runs_needed_per_week_and_status(runs: pd.DataFrame) -> None:
    capacity = instrument_capacity(runs, AS_OF)
    weekly = pd.DataFrame(
        {
            "week_start": pd.to_datetime(["2025-07-01", "2025-07-08"]),
            "forecast": [20.0, 40.0],
            "lo": [10.0, 20.0],
            "hi": [26.0, 60.0],
        }
    )
    plan = capacity_plan(weekly, capacity, ratio=1.0)
    assert list(plan.columns) == PLAN_COLUMNS
    first = plan[plan["week"] == pd.Timestamp("2025-07-01").date()].set_index("instrument_id")
    # SEQ-01 takes 70/78 of 20 libraries = 17.9: 3 flowcells of 8, its weekly capacity: ok; hi 23.3 -> 3 runs.
    assert first.loc["SEQ-01", "runs_needed"] == 3 and first.loc["SEQ-01", "status"] == "ok"
    # SEQ-02 takes 8/78 of 20 = 2.05 libraries: one run of 4, its capacity; hi 2.7 -> 1 run.
    assert first.loc["SEQ-02", "runs_needed"] == 1 and first.loc["SEQ-02", "status"] == "ok"
    assert first.loc["SEQ-09", "runs_needed"] == 0 and first.loc["SEQ-09", "status"] == "ok"
    assert first.loc[ALL, "runs_needed"] == 4 and first.loc[ALL, "runs_per_week_capacity"] == 4
    assert first.loc[ALL, "samples"] == pytest.approx(20.0)
    second = plan[plan["week"] == pd.Timestamp("2025-07-08").date()].set_index("instrument_id")
    # 40 x 70/78 = 35.9 libraries on SEQ-01: 5 runs of 8 against 3 a week.
    assert second.loc["SEQ-01", "runs_needed"] == 5 and second.loc["SEQ-01", "status"] == "over capacity"
    assert second.loc["SEQ-01", "utilisation"] == pytest.approx(5 / 3, abs=1e-3)
    # 40 x 8/78 = 4.1 on SEQ-02: 2 runs of 4 against 1.
    assert second.loc["SEQ-02", "runs_needed"] == 2 and second.loc["SEQ-02", "status"] == "over capacity"
    # A week whose forecast fits but whose upper bound does not is at risk.
    risky = capacity_plan(weekly.assign(forecast=[20.0, 20.0], hi=[26.0, 30.0]), capacity, 1.0)
    assert (
        risky.set_index(["week", "instrument_id"])
        .loc[(pd.Timestamp("2025-07-08").date(), "SEQ-01"), "status"]
        .startswith("at risk")
    )


def test_bad_run_history_is_a_clear_error(runs: pd.DataFrame) -> None:
    with pytest.raises(CapacityInputError, match="no column instrument_id"):
        instrument_capacity(runs.drop(columns="instrument_id"), AS_OF)
    with pytest.raises(CapacityInputError, match="no validated sequencing run"):
        instrument_capacity(runs.iloc[0:0], AS_OF)
