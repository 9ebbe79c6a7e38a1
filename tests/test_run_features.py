"""Tests for tracseq_dagster.run_features: hand-computed values, point-in-time correctness,
brute-force equality, serving equals training, and learnability on generated labs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.test_features import frame, h
from tracseq_dagster.contract import PRIORITIES, SAMPLE_TYPES
from tracseq_dagster.features import FEATURE_NAMES, FEATURE_SPECS, compute_features
from tracseq_dagster.run_features import (
    MODEL_FEATURE_SPECS,
    RUN_WINDOW,
    SEQUENCING_SUCCESS_FEATURE_NAMES,
    SEQUENCING_SUCCESS_FEATURE_SPECS,
    TURNAROUND_FEATURE_NAMES,
    TURNAROUND_FEATURE_SPECS,
    sequencing_success_frame,
    turnaround_frame,
)

NS = pd.Timedelta(1, "ns")
RUN_DEFAULTS: dict[str, Any] = dict(
    instrument_id="SEQ-01", flowcell_id="FC1", library_kit="K1", library_prep_ts=None, run_start_ts=None,
    run_end_ts=None, yield_gb=None, q30_pct=None, cluster_pf_pct=None, duplication_pct=None, run_status=None,
)  # fmt: skip
_RUN_FLOATS = ("yield_gb", "q30_pct", "cluster_pf_pct", "duplication_pct")


def runs(*rows: dict[str, Any]) -> pd.DataFrame:
    """A typed run frame from partial rows (run_id RUN-2024-0000i, sample TS-2024-000000 by default)."""
    records = [
        {"run_id": f"RUN-2024-{i:05d}", "sample_id": "TS-2024-000000", **RUN_DEFAULTS, **row} for i, row in enumerate(rows)
    ]
    columns = ["run_id", "sample_id", *RUN_DEFAULTS]

    def dtype(c: str) -> str:
        return "datetime64[ns, UTC]" if c.endswith("_ts") else "float64" if c in _RUN_FLOATS else "string"

    return pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=dtype(c)) for c in columns})


def lab_run(
    run: str, sample: str, prep: float, start: float, end: float | None, status: str | None, **extra: Any
) -> dict[str, Any]:
    return dict(run_id=run, sample_id=sample, library_prep_ts=h(prep), run_start_ts=h(start),
                run_end_ts=None if end is None else h(end), run_status=status, **extra)  # fmt: skip


def me() -> pd.DataFrame:
    """The one sample TS-2024-000000, received long before anything here happens."""
    return frame({"collection_ts": h(-200), "received_ts": h(-100)})


def sample_ids(n: int) -> list[str]:
    return [f"TS-2024-{i:06d}" for i in range(n)]


# --------------------------------------------------------------------------- registry


def test_feature_lists_and_output_columns():
    for specs in MODEL_FEATURE_SPECS.values():
        names = [s.name for s in specs]
        assert len(set(names)) == len(names)
        for spec in specs:
            assert spec.unit and spec.description and spec.kind in ("numeric", "categorical")
    assert SEQUENCING_SUCCESS_FEATURE_SPECS[: len(FEATURE_SPECS)] == FEATURE_SPECS  # the sample features, unchanged
    fixed = {s.name: s.categories for s in TURNAROUND_FEATURE_SPECS if s.kind == "categorical"}
    assert fixed == {"priority": PRIORITIES, "sample_type": SAMPLE_TYPES, "site": None}  # site is an open set

    s = frame({"received_ts": h(0)}, {"received_ts": h(1), "priority": "urgent"})
    r = runs(
        lab_run("RUN-2024-00001", "TS-2024-000000", 2, 3, 10, "fail"),
        lab_run("RUN-2024-00002", "TS-2024-000001", 4, 5, None, None),
    )
    out = sequencing_success_frame(s, r)
    assert list(out.columns) == [*SEQUENCING_SUCCESS_FEATURE_NAMES, "as_of", "run_status", "label_ts"]
    assert out.index.names == ["run_id", "sample_id"] and out.index.is_monotonic_increasing
    assert list(out["run_status"].astype(object).fillna("NA")) == ["fail", "NA"] and out["run_status"].dtype == "string"
    assert list(out["label_ts"].astype(object).fillna("NA")) == [h(10), "NA"]
    assert list(out["as_of"]) == [h(2), h(4)]  # predicted at the library prep
    for spec in SEQUENCING_SUCCESS_FEATURE_SPECS:
        assert (out[spec.name].dtype == np.float64) == (spec.kind == "numeric"), spec.name
    assert list(out["instrument_id"].cat.categories) == ["SEQ-01"]

    tat = turnaround_frame(s, r)
    assert list(tat.columns) == [*TURNAROUND_FEATURE_NAMES, "as_of", "turnaround_hours", "label_ts"]
    assert list(tat.index) == sample_ids(2) and tat.index.name == "sample_id"
    assert tat["turnaround_hours"].iloc[0] == 10.0 and np.isnan(tat["turnaround_hours"].iloc[1])
    assert list(tat["priority"]) == ["routine", "urgent"] and list(tat["priority"].cat.categories) == list(PRIORITIES)
    for spec in TURNAROUND_FEATURE_SPECS:
        assert (tat[spec.name].dtype == np.float64) == (spec.kind == "numeric"), spec.name


def test_the_sample_features_are_compute_features_as_of_the_library_prep():
    s = frame({"received_ts": h(0), "extraction_ts": h(30), "qc_status": "fail", "operator_id": "OP1"},
              {"received_ts": h(1), "extraction_ts": h(2), "qc_status": "fail", "operator_id": "OP1"})  # fmt: skip
    r = runs(lab_run("RUN-2024-00001", "TS-2024-000000", 10, 12, 20, "pass"),  # before its own extraction is known
             lab_run("RUN-2024-00002", "TS-2024-000000", 40, 41, 50, "pass"),  # a re-run: a later instant
             lab_run("RUN-2024-00001", "TS-2024-000001", 10, 12, 20, "pass"))  # fmt: skip
    out = sequencing_success_frame(s, r)
    for (_run_id, sample_id), row in out.iterrows():
        alone = compute_features(s[s["sample_id"] == sample_id], s, as_of=row["as_of"]).iloc[0]
        pd.testing.assert_series_equal(row[list(FEATURE_NAMES)], alone[list(FEATURE_NAMES)], check_names=False)
    first, rerun = out.loc[("RUN-2024-00001", "TS-2024-000000")], out.loc[("RUN-2024-00002", "TS-2024-000000")]
    assert first["processing_delay_hours"] == 10.0 and rerun["processing_delay_hours"] == 30.0
    assert first["operator_history_count"] == 1 and rerun["operator_history_count"] == 1  # the other sample only


# -------------------------------------------------------------------- hand-computed values


def _instrument_history(n_runs: int, fails: set[int], instrument: str = "SEQ-02", kit: str = "K1") -> list[dict[str, Any]]:
    """``n_runs`` one-library runs on ``instrument`` ending at h(10 + i); run i failed when i is in ``fails``."""
    return [lab_run(f"RUN-2023-{i:05d}", f"TS-2023-{i:06d}", i, i + 1, 10 + i, "fail" if i in fails else "pass",
                    instrument_id=instrument, library_kit=kit) for i in range(n_runs)]  # fmt: skip


def _target(prep: float, **extra: Any) -> pd.DataFrame:
    return runs(lab_run("RUN-2024-09999", "TS-2024-000000", prep, prep + 1, None, None, instrument_id="SEQ-02", **extra))


def test_instrument_failed_k_of_its_last_n_runs():
    # 25 runs: the first five all failed, then 4 of the last 20 (runs 6, 10, 17, 24)
    history = runs(*_instrument_history(25, {0, 1, 2, 3, 4, 6, 10, 17, 24}))
    row = sequencing_success_frame(me(), _target(40), history).iloc[0]
    assert (row["instrument_recent_failures"], row["instrument_recent_libraries"], row["instrument_recent_runs"]) == (4, 20, 20)
    assert row["instrument_failure_rate"] == pytest.approx((4 + 10 * 0.1) / (20 + 10))
    assert (row["kit_recent_failures"], row["kit_recent_runs"]) == (4, RUN_WINDOW)  # the same runs used kit K1
    # another instrument and kit: no history, the prior
    other = sequencing_success_frame(
        me(), _target(40, library_kit="K9").assign(instrument_id=pd.array(["SEQ-09"], dtype="string")), history
    ).iloc[0]
    assert (other["instrument_recent_runs"], other["instrument_recent_failures"], other["kit_recent_runs"]) == (0, 0, 0)
    assert other["instrument_failure_rate"] == pytest.approx(0.1) and other["kit_failure_rate"] == pytest.approx(0.1)


def test_libraries_of_a_run_count_one_by_one_and_unlabelled_runs_not_at_all():
    history = runs(
        *(
            lab_run("RUN-2023-00001", f"TS-2023-{i:06d}", 0, 1, 5, "fail" if i < 3 else "pass", instrument_id="SEQ-02")
            for i in range(8)
        ),
        lab_run("RUN-2023-00002", "TS-2023-000100", 0, 1, 6, None, instrument_id="SEQ-02"),  # not QC'd: no label
        lab_run("RUN-2023-00003", "TS-2023-000101", 0, 1, None, None, instrument_id="SEQ-02"),  # still running
    )
    row = sequencing_success_frame(me(), _target(20), history).iloc[0]
    assert (row["instrument_recent_failures"], row["instrument_recent_libraries"], row["instrument_recent_runs"]) == (3, 8, 1)


@pytest.mark.parametrize(("end_offset", "counted"), [(-NS, True), (pd.Timedelta(0), False), (NS, False)])
def test_a_run_ending_one_nanosecond_before_the_prediction_counts_at_or_after_not(end_offset, counted):
    t = h(40)
    history = runs(lab_run("RUN-2023-00001", "TS-2023-000001", 0, 1, 2, "fail", instrument_id="SEQ-02", library_kit="K1"))
    history.loc[0, "run_end_ts"] = t + end_offset
    row = sequencing_success_frame(me(), _target(40), history).iloc[0]
    assert row["instrument_recent_failures"] == row["kit_recent_failures"] == int(counted)
    # and the same for a sample's earlier run (re-run) and for turnaround's recent median
    earlier = history.assign(sample_id=pd.array(["TS-2024-000000"], dtype="string"))
    mine = sequencing_success_frame(me(), _target(40), earlier).iloc[0]
    assert mine["is_rerun"] == mine["previous_run_failures"] == int(counted)
    other = frame({"received_ts": h(-10)}, {"received_ts": h(40)})
    ended = runs(lab_run("RUN-2023-00001", "TS-2024-000000", 0, 1, 2, "pass"))
    ended.loc[0, "run_end_ts"] = t + end_offset
    assert turnaround_frame(other, ended).loc["TS-2024-000001", "recent_turnaround_count"] == int(counted)


def test_queue_length_and_instrument_load_hand_computed():
    t = h(200)
    history = runs(
        lab_run("RUN-2023-00001", "TS-2023-000001", 190, 210, None, None),  # prepped, waits: queued
        lab_run("RUN-2023-00001", "TS-2023-000002", 199, 210, None, None),  # queued
        lab_run("RUN-2023-00002", "TS-2023-000003", 150, 199, None, None),  # started before t: not queued
        lab_run("RUN-2023-00003", "TS-2023-000004", 200, 205, None, None),  # prepped at t: not yet
        lab_run("RUN-2023-00004", "TS-2023-000005", 150, 200, None, None),  # starts at t: still queued
        # instrument SEQ-02 runs started at t - 7 d (counted), t - 7 d - 1 ns (not), t (not)
        lab_run("RUN-2023-00010", "TS-2023-000010", 0, 200 - 168, 190, "pass", instrument_id="SEQ-02"),
        lab_run("RUN-2023-00010", "TS-2023-000011", 0, 200 - 168, 190, "pass", instrument_id="SEQ-02"),  # same run
        lab_run("RUN-2023-00011", "TS-2023-000012", 0, 20, 30, "pass", instrument_id="SEQ-02"),
        lab_run("RUN-2023-00012", "TS-2023-000013", 0, 200, None, None, instrument_id="SEQ-02"),
        lab_run("RUN-2023-00013", "TS-2023-000014", 0, 199, None, None, instrument_id="SEQ-02"),
    )
    history.loc[7, "run_start_ts"] = h(200 - 168) - NS
    row = sequencing_success_frame(me(), _target(200), history).iloc[0]
    assert row["as_of"] == t
    assert row["queue_length"] == 4  # the three above and RUN-2023-00012 (prepped at h(0), starts at t)
    assert row["instrument_load_7d"] == 2  # RUN-2023-00010 (once) and RUN-2023-00013


def test_sequencing_queue_and_turnaround_features_hand_computed():
    s = frame(
        {"received_ts": h(0), "extraction_ts": h(5)},  # 0: first run started h(20), ended h(60)
        {"received_ts": h(1), "extraction_ts": h(50)},  # 1: extracted before h(100), never run: queued
        {"received_ts": h(2), "extraction_ts": h(100)},  # 2: extracted at h(100): not yet at h(100)
        {"received_ts": h(3), "extraction_ts": h(10)},  # 3: first run starts h(100): still queued at h(100)
        {"received_ts": h(4)},  # 4: never extracted
        {"received_ts": h(100), "extraction_ts": h(101), "priority": "urgent"},  # 5: the row, arrives at h(100)
        {"received_ts": h(6), "extraction_ts": h(7), "priority": "urgent"},  # 6: ran h(8)..h(30)
    )
    r = runs(
        lab_run("RUN-2024-00001", "TS-2024-000000", 10, 20, 60, "pass"),
        lab_run("RUN-2024-00002", "TS-2024-000003", 90, 100, None, None),
        lab_run("RUN-2024-00003", "TS-2024-000006", 7, 8, 30, "fail"),
        lab_run("RUN-2024-00004", "TS-2024-000006", 70, 80, 130, "pass"),  # in progress at h(100)
        lab_run("RUN-2024-00005", "TS-2024-000005", 110, 120, 150, "pass"),
    )
    out = turnaround_frame(s, r)
    row = out.loc["TS-2024-000005"]
    assert row["sequencing_queue"] == 2  # samples 1 and 3
    assert row["sequencing_queue_days"] == pytest.approx(2 * 28 / 2)  # first runs started in 28 days: samples 0 and 6
    assert row["arrivals_7d"] == 6  # all the others arrived in the week before
    assert row["runs_in_progress"] == 1  # RUN-2024-00004 (RUN-2024-00002 starts at h(100): not yet)
    assert row["recent_turnaround_count"] == 2  # samples 6 (24 h, known at h(30)) and 0 (60 h, at h(60))
    assert row["recent_median_turnaround_hours"] == pytest.approx(42.0)
    assert row["priority_recent_median_turnaround_hours"] == pytest.approx(24.0)  # the other urgent sample
    assert row["turnaround_hours"] == 50.0 and row["label_ts"] == h(150)
    assert row["weekday_received"] == 4 and row["hour_received"] == 4  # h(100): Friday 04:00 UTC
    assert np.isnan(out.loc["TS-2024-000004", "turnaround_hours"])
    # sequencing_success sees the same sequencing queue at the library prep (the row's own sample excluded)
    seq = sequencing_success_frame(s, r).loc[("RUN-2024-00005", "TS-2024-000005")]
    assert seq["as_of"] == h(110) and seq["sequencing_queue"] == 2  # sample 2 is now extracted, 3 has started


# ------------------------------------------------------------------------- empty history


def test_empty_history_gives_priors_and_zeros():
    s = frame({"received_ts": h(0)})
    r = runs(lab_run("RUN-2024-00001", "TS-2024-000000", 10, 12, None, None))
    for empty in (pd.DataFrame(), runs()):
        row = sequencing_success_frame(s, r, empty, history_samples=pd.DataFrame()).iloc[0]
        assert row["instrument_failure_rate"] == pytest.approx(0.1) and row["kit_failure_rate"] == pytest.approx(0.1)
        for name in ("instrument_recent_runs", "kit_recent_libraries", "queue_length", "sequencing_queue",
                     "sequencing_queue_days", "instrument_load_7d", "is_rerun", "previous_run_failures"):  # fmt: skip
            assert row[name] == 0, name
        tat = turnaround_frame(s, empty, history_samples=pd.DataFrame()).iloc[0]
        assert tat["sequencing_queue"] == tat["arrivals_7d"] == tat["runs_in_progress"] == tat["recent_turnaround_count"] == 0
        assert np.isnan(tat["recent_median_turnaround_hours"]) and np.isnan(tat["turnaround_hours"])
    assert len(sequencing_success_frame(s, runs())) == 0
    assert len(turnaround_frame(frame(), runs())) == 0


def test_rows_without_a_known_or_received_sample_are_left_out_and_bad_input_refused():
    s = frame({"received_ts": h(0)}, {"received_ts": h(50)})
    r = runs(lab_run("RUN-2024-00001", "TS-2024-000000", 10, 12, None, None),
             lab_run("RUN-2024-00001", "TS-2024-000001", 10, 12, None, None),  # received after its prep
             lab_run("RUN-2024-00001", "TS-2099-000001", 10, 12, None, None))  # unknown sample  # fmt: skip
    assert list(sequencing_success_frame(s, r).index.get_level_values("sample_id")) == ["TS-2024-000000"]
    with pytest.raises(ValueError, match="prediction time after their run_start_ts"):
        sequencing_success_frame(s, r, as_of=h(13))
    with pytest.raises(ValueError, match="unique on run_id/sample_id"):
        sequencing_success_frame(s, pd.concat([r, r.iloc[:1]], ignore_index=True))
    ended = runs(lab_run("RUN-2024-00001", "TS-2024-000000", 10, 12, 20, "pass"))
    with pytest.raises(ValueError, match="after the end of the sample's first run"):
        turnaround_frame(s, ended, as_of=h(21))
    assert turnaround_frame(s, ended, as_of=h(20)).loc["TS-2024-000000", "recent_turnaround_count"] == 0  # own label: never


# ------------------------------------------------------------------ random labs for leaks


def random_lab(seed: int, n_samples: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples and runs of a small random lab: three instruments, two kits, re-runs, ties, gaps."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_samples):
        rec = int(rng.integers(0, 300))
        ext = rec + int(rng.integers(0, 40)) if rng.random() < 0.85 else None
        rows.append({"received_ts": h(rec), "collection_ts": h(rec - 10), "extraction_ts": None if ext is None else h(ext),
                     "operator_id": f"OP{rng.integers(0, 3)}", "site": f"S{rng.integers(0, 3)}",
                     "priority": PRIORITIES[int(rng.random() < 0.2)], "sample_type": SAMPLE_TYPES[int(rng.integers(0, 7))],
                     "qc_status": [None, "pass", "borderline", "fail"][rng.integers(0, 4)]})  # fmt: skip
    samples = frame(*rows, extra=False)
    run_rows, serial = [], [0, 0]
    for i, row in enumerate(rows):
        if row["extraction_ts"] is None:
            continue
        prep = (row["extraction_ts"] - h(0)) / pd.Timedelta(hours=1) + int(rng.integers(0, 20))
        for attempt in range(1 + int(rng.random() < 0.3)):  # first runs RUN-2024-*, re-runs RUN-2025-*
            serial[attempt] += 1
            start = prep + int(rng.integers(0, 30))
            end = start + int(rng.integers(5, 40)) if rng.random() < 0.9 else None
            status = None if end is None or rng.random() < 0.1 else ["pass", "fail"][int(rng.random() < 0.3)]
            run_rows.append(lab_run(f"RUN-{2024 + attempt}-{serial[attempt] // 3:05d}", sample_ids(n_samples)[i], prep, start, end, status,
                                    instrument_id=f"SEQ-0{rng.integers(1, 4)}", library_kit=f"K{rng.integers(1, 3)}",
                                    yield_gb=float(rng.uniform(0, 100)), q30_pct=float(rng.uniform(50, 100))))  # fmt: skip
            prep = (end or start) + int(rng.integers(1, 10))
    return samples, runs(*run_rows)


def _change_everything_from(samples: pd.DataFrame, r: pd.DataFrame, cut: pd.Timestamp, rng: np.random.Generator):
    """Every run label and metric known at or after ``cut`` flipped or redrawn, every run stamp at
    or after it moved later, sample labels known from ``cut`` on flipped, and new samples and runs after it."""
    r = r.copy()
    late_end = r["run_end_ts"].isna() | (r["run_end_ts"] >= cut)
    r.loc[late_end, "run_status"] = r.loc[late_end, "run_status"].map({"pass": "fail", "fail": "pass"}).astype("string")
    r.loc[late_end & r["run_status"].isna(), "run_status"] = "fail"
    for metric in ("yield_gb", "q30_pct"):
        r.loc[late_end, metric] = rng.uniform(0, 100, int(late_end.sum()))
    shift = pd.to_timedelta(rng.integers(1, 50, len(r)), unit="h")
    for column in ("library_prep_ts", "run_start_ts", "run_end_ts"):
        later = r[column] >= cut
        r.loc[later, column] = r.loc[later, column] + shift[later.to_numpy()]
    s = samples.copy()
    label_ts = s["sequencing_ts"].fillna(s["extraction_ts"]).fillna(s["received_ts"])
    s.loc[label_ts >= cut, "qc_status"] = "fail"
    s.loc[s["extraction_ts"] >= cut, "extraction_ts"] = s.loc[s["extraction_ts"] >= cut, "extraction_ts"] + pd.Timedelta(hours=7)
    newcomers = frame({"received_ts": cut, "extraction_ts": cut, "qc_status": "fail"}, extra=False)
    newcomers["sample_id"] = pd.array(["TS-2030-000001"], dtype="string")
    future = runs(lab_run("RUN-2030-00001", "TS-2030-000001", 0, 0, 0, "fail"))
    for column in ("library_prep_ts", "run_start_ts", "run_end_ts"):
        future[column] = cut
    return pd.concat([s, newcomers], ignore_index=True), pd.concat([r, future], ignore_index=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nothing_at_or_after_a_rows_prediction_time_changes_its_features(seed):
    samples, r = random_lab(seed)
    rng = np.random.default_rng(seed)
    base_seq, base_tat = sequencing_success_frame(samples, r), turnaround_frame(samples, r)
    assert base_seq["instrument_recent_runs"].sum() > 0 and base_seq["is_rerun"].sum() > 0  # not vacuous
    assert base_tat["recent_turnaround_count"].sum() > 0 and base_tat["sequencing_queue"].sum() > 0
    checked = 0
    for cut in base_seq["as_of"].sample(8, random_state=seed).tolist() + base_tat["as_of"].sample(8, random_state=seed).tolist():
        s2, r2 = _change_everything_from(samples, r, cut, rng)
        seq = sequencing_success_frame(s2, r2, r2)
        # every row predicted at or before the cut keeps its features (rows re-timed by the change are the cut's rows)
        keep = base_seq.index[(base_seq["as_of"] <= cut) & base_seq.index.isin(seq.index)]
        keep = keep[seq.loc[keep, "as_of"].to_numpy() == base_seq.loc[keep, "as_of"].to_numpy()]
        checked += len(keep)
        cols = list(SEQUENCING_SUCCESS_FEATURE_NAMES)
        pd.testing.assert_frame_equal(seq.loc[keep, cols].astype(str), base_seq.loc[keep, cols].astype(str))
        tat = turnaround_frame(s2, r2)
        keep_t = base_tat.index[base_tat["as_of"] <= cut]
        pd.testing.assert_frame_equal(tat.loc[keep_t, list(TURNAROUND_FEATURE_NAMES)].astype(str),
                                      base_tat.loc[keep_t, list(TURNAROUND_FEATURE_NAMES)].astype(str))  # fmt: skip
        checked += len(keep_t)
    assert checked > 200


def test_a_label_before_the_prediction_time_does_change_the_features():
    """The leak test above can fail: a change strictly before the prediction time shows."""
    samples, r = random_lab(4)
    base = sequencing_success_frame(samples, r)
    row = base[base["instrument_recent_runs"] > 0].iloc[-1]
    ended = r[(r["run_end_ts"] < row["as_of"]) & r["run_status"].notna() & (r["instrument_id"] == row["instrument_id"])]
    flipped = r.copy()
    flipped.loc[ended.index, "run_status"] = "fail"
    again = sequencing_success_frame(samples, flipped).loc[row.name]
    assert (
        again["instrument_recent_failures"] > row["instrument_recent_failures"]
        or row["instrument_recent_failures"] == row["instrument_recent_libraries"]
    )


# ------------------------------------------------------------------- brute force, serving


def _brute_force_sequencing(
    samples: pd.DataFrame, r: pd.DataFrame, run_id: str, sample_id: str, t: pd.Timestamp
) -> dict[str, float]:
    me = r[(r["run_id"] == run_id) & (r["sample_id"] == sample_id)].iloc[0]
    out: dict[str, float] = {}
    known = r[r["run_status"].notna() & r["run_end_ts"].notna() & (r["run_end_ts"] < t)]
    for name, key in (("instrument", "instrument_id"), ("kit", "library_kit")):
        mine = known[known[key] == me[key]]
        per_run = mine.groupby(["run_id", "run_end_ts"]).agg(
            n=("run_status", "size"), k=("run_status", lambda v: int((v == "fail").sum()))
        )
        last = per_run.reset_index().sort_values(["run_end_ts", "run_id"]).tail(RUN_WINDOW)
        out[f"{name}_recent_runs"], out[f"{name}_recent_libraries"], out[f"{name}_recent_failures"] = (
            len(last),
            last["n"].sum(),
            last["k"].sum(),
        )
    out["queue_length"] = int(((r["library_prep_ts"] < t) & ~(r["run_start_ts"] < t)).sum())
    starts = r[r["instrument_id"] == me["instrument_id"]].groupby("run_id")["run_start_ts"].min()
    out["instrument_load_7d"] = int(((starts >= t - pd.Timedelta(days=7)) & (starts < t)).sum())
    earlier = r[(r["sample_id"] == sample_id) & (r["run_end_ts"] < t)]
    out["is_rerun"], out["previous_run_failures"] = float(len(earlier) > 0), int((earlier["run_status"] == "fail").sum())
    first_start = r.groupby("sample_id")["run_start_ts"].min()
    others = samples[samples["sample_id"] != sample_id]
    started = others["sample_id"].map(first_start)
    out["sequencing_queue"] = int(((others["extraction_ts"] < t) & ~(started < t)).sum())
    return out


def test_run_context_matches_brute_force():
    samples, r = random_lab(5, n_samples=80)
    out = sequencing_success_frame(samples, r)
    assert len(out) > 60 and out["instrument_recent_runs"].max() >= 5
    for (run_id, sample_id), row in out.iterrows():
        for name, value in _brute_force_sequencing(samples, r, run_id, sample_id, row["as_of"]).items():
            assert row[name] == value, (run_id, sample_id, name)


def test_turnaround_matches_brute_force():
    samples, r = random_lab(6, n_samples=80)
    out = turnaround_frame(samples, r)
    first_start, first_end = r.groupby("sample_id")["run_start_ts"].min(), r.groupby("sample_id")["run_end_ts"].min()
    turnaround = (samples["sample_id"].map(first_end) - samples["received_ts"]) / pd.Timedelta(hours=1)
    samples = samples.assign(
        first_start=samples["sample_id"].map(first_start), first_end=samples["sample_id"].map(first_end), tat=turnaround
    )
    for sample_id, row in out.iterrows():
        t = row["as_of"]
        others = samples[samples["sample_id"] != sample_id]
        assert row["sequencing_queue"] == int(((others["extraction_ts"] < t) & ~(others["first_start"] < t)).sum())
        assert row["arrivals_7d"] == int(
            ((others["received_ts"] >= t - pd.Timedelta(days=7)) & (others["received_ts"] < t)).sum()
        )
        per_run = r.groupby("run_id").agg(start=("run_start_ts", "min"), end=("run_end_ts", "max"))
        assert row["runs_in_progress"] == int(((per_run["start"] < t) & ~(per_run["end"] < t)).sum())
        done = others[others["first_end"] < t].sort_values(["first_end", "tat"])
        assert row["recent_turnaround_count"] == min(len(done), 50)
        if len(done):
            assert row["recent_median_turnaround_hours"] == pytest.approx(done["tat"].tail(50).median())
        me = samples[samples["sample_id"] == sample_id].iloc[0]
        same = done[done["priority"] == me["priority"]]
        assert (np.isnan(row["priority_recent_median_turnaround_hours"]) if len(same) == 0
                else row["priority_recent_median_turnaround_hours"] == pytest.approx(same["tat"].tail(50).median()))  # fmt: skip


def test_serving_one_request_equals_its_training_row():
    samples, r = random_lab(7)
    train_seq, train_tat = sequencing_success_frame(samples, r), turnaround_frame(samples, r)
    for (run_id, sample_id), row in train_seq.sample(10, random_state=0).iterrows():
        request = r[(r["run_id"] == run_id) & (r["sample_id"] == sample_id)].copy()
        request["run_end_ts"] = pd.Series(pd.NaT, index=request.index, dtype="datetime64[ns, UTC]")  # not run yet
        request["run_status"] = pd.Series(pd.NA, index=request.index, dtype="string")
        served = sequencing_success_frame(samples, request, r, as_of=row["as_of"]).iloc[0]
        pd.testing.assert_series_equal(served[list(SEQUENCING_SUCCESS_FEATURE_NAMES)].astype(str),
                                       row[list(SEQUENCING_SUCCESS_FEATURE_NAMES)].astype(str))  # fmt: skip
    for sample_id, row in train_tat.sample(10, random_state=0).iterrows():
        served = turnaround_frame(
            samples[samples["sample_id"] == sample_id], r, history_samples=samples, as_of=row["as_of"]
        ).iloc[0]
        numeric = [n for n in TURNAROUND_FEATURE_NAMES if n != "site"]  # an open category: the request sees one site
        pd.testing.assert_series_equal(served[numeric].astype(str), row[numeric].astype(str))


def test_result_independent_of_row_order():
    samples, r = random_lab(8)
    rng = np.random.default_rng(0)
    shuffled_s, shuffled_r = samples.iloc[rng.permutation(len(samples))], r.iloc[rng.permutation(len(r))]
    pd.testing.assert_frame_equal(sequencing_success_frame(samples, r), sequencing_success_frame(shuffled_s, shuffled_r))
    pd.testing.assert_frame_equal(turnaround_frame(samples, r), turnaround_frame(shuffled_s, shuffled_r))


# ------------------------------------------------------------------------- learnability


def _generated_lab(seed: int, rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from tracseq_dagster.generator import generate_samples
    from tracseq_dagster.run_generator import generate_runs

    samples = generate_samples(rows, seed=seed)
    r = generate_runs(samples, seed=seed)
    return sequencing_success_frame(samples, r), turnaround_frame(samples, r)


def _recode(test: pd.DataFrame, train: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Open-set categoricals re-coded with the training categories, as the model catalog must."""
    return test.assign(**{c: test[c].cat.set_categories(train[c].cat.categories) for c in columns})


def test_models_learn_the_generated_processes_on_a_lab_they_never_saw():
    """Train on one generated lab, test on another (another seed: an independent lab, a whole
    year each, so the summer capacity dip is in both): sequencing_success beats the base rate,
    turnaround beats the per-priority median."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # OpenMP threads on a shared 2-core machine: 3x slower, not faster
        _learn(HistGradientBoostingClassifier, HistGradientBoostingRegressor, roc_auc_score)


def _learn(classifier: Any, regressor: Any, roc_auc_score: Any) -> None:
    (seq_a, tat_a), (seq_b, tat_b) = _generated_lab(11, 4000), _generated_lab(12, 4000)
    a, b = seq_a[seq_a["run_status"].notna()], seq_b[seq_b["run_status"].notna()]
    b = _recode(b, a, ["instrument_id", "library_kit"])
    features = list(SEQUENCING_SUCCESS_FEATURE_NAMES)
    clf = classifier(categorical_features="from_dtype", learning_rate=0.05, max_iter=200, random_state=0)
    clf.fit(a[features], a["run_status"] == "fail")
    auc = roc_auc_score(b["run_status"] == "fail", clf.predict_proba(b[features])[:, 1])
    assert auc >= 0.70, auc  # measured 0.75 here (0.75-0.78 on other seeds and sizes)

    train, test = tat_a[tat_a["turnaround_hours"].notna()], tat_b[tat_b["turnaround_hours"].notna()]
    test = _recode(test, train, ["site"])
    features = list(TURNAROUND_FEATURE_NAMES)
    reg = regressor(categorical_features="from_dtype", loss="absolute_error", max_iter=300, random_state=0)
    reg.fit(train[features], train["turnaround_hours"])
    mae = np.abs(reg.predict(test[features]) - test["turnaround_hours"]).mean()
    per_priority = test["priority"].map(train.groupby("priority", observed=True)["turnaround_hours"].median()).astype(float)
    baseline = np.abs(per_priority - test["turnaround_hours"]).mean()
    assert mae < 0.85 * baseline, (mae, baseline)  # measured 70 h against 101 h


def test_code_version_follows_this_module_its_snapshot_and_the_sample_features():
    import hashlib
    from pathlib import Path

    from tracseq_dagster import run_features, run_history
    from tracseq_dagster.features import FEATURE_CODE_VERSION

    source = Path(run_features.__file__).read_bytes() + Path(run_history.__file__).read_bytes()
    assert hashlib.sha256(source + FEATURE_CODE_VERSION.encode()).hexdigest()[:16] == run_features.RUN_FEATURE_CODE_VERSION
