"""Tests for tracseq_dagster.run_history: the snapshot gives exactly the full path's run features
after its cutoff (random requests on a generated lab: re-runs of known samples, new samples,
unknown instruments, kits and sites), refuses earlier instants, survives a save/load round
trip, and answers without reading the full history again."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from catalog_support import generated_lab

from tracseq_dagster import run_features
from tracseq_dagster.models import get_model, sequencing_success, turnaround_hours
from tracseq_dagster.models.spec import ServingRows
from tracseq_dagster.run_features import RUN_WINDOW, sequencing_success_frame, turnaround_frame
from tracseq_dagster.run_history import RunHistorySnapshot, serving_history

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def lab() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generated_lab(3000, seed=5)


@pytest.fixture(scope="module")
def snapshot(lab: tuple[pd.DataFrame, pd.DataFrame]) -> RunHistorySnapshot:
    return RunHistorySnapshot.build(*lab)


def after(snapshot: RunHistorySnapshot, rng: np.random.Generator, n: int) -> pd.DatetimeIndex:
    """``n`` instants from 1 ns to 10 days after the cutoff (inside and beyond every 7-day window)."""
    offsets = rng.integers(1, 10 * 86_400 * 10**9, size=n)
    offsets[:3] = (1, 1, 10**9)  # the very next instants
    return snapshot.cutoff + pd.to_timedelta(offsets, unit="ns")


def new_samples(
    samples: pd.DataFrame, rng: np.random.Generator, n: int, received: pd.DatetimeIndex | None = None
) -> pd.DataFrame:
    """Copies of known sample records under ids the history never saw, a third from an unknown site."""
    new = samples.sample(n, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)
    new["sample_id"] = pd.array([f"TS-2099-{i:06d}" for i in range(n)], dtype="string")
    new.loc[new.index % 3 == 0, "site"] = "SITE-NEVER-SEEN"
    if received is not None:
        new["received_ts"] = received
    return new


def library_requests(lab: tuple[pd.DataFrame, pd.DataFrame], snapshot: RunHistorySnapshot, seed: int,
                     n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame, pd.DatetimeIndex]:  # fmt: skip
    """Request libraries after the cutoff: re-runs of known samples (some twice), first runs of
    known samples in the sequencing queue, new samples
    (received before or just after the cutoff), on known and unknown instruments and kits."""
    samples, runs = lab
    rng = np.random.default_rng(seed)
    known = samples[samples["sample_id"].isin(runs["sample_id"])].sample(n // 2, random_state=seed)
    queued = samples[samples["extraction_ts"].notna() & ~samples["sample_id"].isin(runs["sample_id"])].head(n // 20)
    known = pd.concat([known, queued], ignore_index=True)  # re-runs, and first runs of samples waiting in the queue
    new = new_samples(samples, rng, n - len(known))
    new.loc[new.index % 2 == 0, "received_ts"] = snapshot.cutoff + pd.Timedelta(1, "ns")
    request_samples = pd.concat([known, new], ignore_index=True)
    sample_ids = pd.concat([request_samples["sample_id"], known["sample_id"].head(20)], ignore_index=True)  # 20 second libraries
    m = len(sample_ids)
    instruments = np.append(runs["instrument_id"].dropna().unique(), "SEQ-99")
    kits = np.append(runs["library_kit"].dropna().unique(), "KIT-NEVER-SEEN")
    t = after(snapshot, rng, m)
    request_runs = pd.DataFrame({
        "run_id": pd.array([f"RUN-2099-{i:05d}" for i in range(m)], dtype="string"),
        "sample_id": sample_ids.astype("string"),
        "instrument_id": pd.array(rng.choice(instruments, m), dtype="string"),
        "library_kit": pd.array(rng.choice(kits, m), dtype="string"),
        "library_prep_ts": t,
        "run_start_ts": pd.Series(pd.NaT, index=range(m), dtype="datetime64[ns, UTC]"),
    })  # fmt: skip
    return request_samples, request_runs, t


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sequencing_success_from_the_snapshot_equals_the_full_history(lab, snapshot: RunHistorySnapshot, seed: int) -> None:  # type: ignore[no-untyped-def]
    samples, runs = lab
    request_samples, request_runs, t = library_requests(lab, snapshot, seed)
    full = sequencing_success_frame(request_samples, request_runs, runs, history_samples=samples, as_of=t)
    fast = sequencing_success_frame(request_samples, request_runs, snapshot, as_of=t)
    pd.testing.assert_frame_equal(fast, full, check_exact=True)
    # the requests reach every kind of answer, so the equality covers them
    assert len(full) > 0.9 * len(request_runs)
    assert full["is_rerun"].sum() > 50 and (full["previous_run_failures"] > 0).any() and (full["is_rerun"] == 0).any()
    assert (full["instrument_recent_runs"] == RUN_WINDOW).any() and (full["instrument_recent_runs"] == 0).any()  # known, unknown
    assert (full["kit_recent_runs"] == 0).any() and (full["kit_recent_runs"] > 0).any()
    assert (
        full["instrument_load_7d"].nunique() > 1 and (full["instrument_load_7d"] == 0).any()
    )  # windows inside and past the cutoff's
    assert full["sequencing_queue"].nunique() > 1  # a known sample leaves its own place in the queue
    assert "SEQ-99" in full["instrument_id"].cat.categories and "KIT-NEVER-SEEN" in full["library_kit"].cat.categories


@pytest.mark.parametrize("seed", [1, 2])
def test_turnaround_from_the_snapshot_equals_the_full_history(lab, snapshot: RunHistorySnapshot, seed: int) -> None:  # type: ignore[no-untyped-def]
    samples, runs = lab
    rng = np.random.default_rng(seed)
    ended = runs.loc[runs["run_end_ts"].notna(), "sample_id"]
    waiting = samples[~samples["sample_id"].isin(ended)].sample(60, random_state=seed)  # known, no run ended yet
    new = new_samples(samples, rng, 240, received=after(snapshot, rng, 240))
    new.loc[new.index % 7 == 0, "priority"] = None
    requests = pd.concat([waiting, new], ignore_index=True)
    t = np.where(requests.index < len(waiting), after(snapshot, rng, len(requests)), requests["received_ts"])
    t = pd.DatetimeIndex(t).tz_localize("UTC") if pd.DatetimeIndex(t).tz is None else pd.DatetimeIndex(t)
    full = turnaround_frame(requests, runs, history_samples=samples, as_of=t)
    fast = turnaround_frame(requests, snapshot, as_of=t)
    pd.testing.assert_frame_equal(fast, full, check_exact=True)
    assert len(full) == len(requests) and full["arrivals_7d"].nunique() > 3 and (full["arrivals_7d"] == 0).any()
    assert full["recent_turnaround_count"].max() == 50 and full["priority_recent_median_turnaround_hours"].isna().any()
    assert full["sequencing_queue_days"].nunique() > 1 and "SITE-NEVER-SEEN" in full["site"].cat.categories

    done = samples[samples["sample_id"].isin(ended)].head(3)  # its label is known: refused by both paths
    for history in (runs, snapshot):
        with pytest.raises(ValueError, match="after the end of the sample's first run"):
            turnaround_frame(done, history, history_samples=samples if history is runs else None, as_of=after(snapshot, rng, 3))


def test_an_instant_at_or_before_the_cutoff_is_refused(lab, snapshot: RunHistorySnapshot) -> None:  # type: ignore[no-untyped-def]
    samples, runs = lab
    request_samples, request_runs, t = library_requests(lab, snapshot, seed=4, n=20)
    events = pd.concat(
        [samples["received_ts"], samples["extraction_ts"], runs["library_prep_ts"], runs["run_start_ts"], runs["run_end_ts"]]
    )
    assert snapshot.cutoff == events.max()  # the latest event of the history
    for instant in (snapshot.cutoff, snapshot.cutoff - DAY):
        with pytest.raises(ValueError, match="snapshot holds the events up to .* need the full history"):
            sequencing_success_frame(request_samples, request_runs, snapshot, as_of=instant)
        with pytest.raises(ValueError, match="snapshot holds the events up to"):
            turnaround_frame(request_samples.tail(5), snapshot, as_of=instant)
    mixed = pd.DatetimeIndex([snapshot.cutoff, *t[1:]])  # one row at the cutoff
    with pytest.raises(ValueError, match="snapshot holds the events up to"):
        sequencing_success_frame(request_samples, request_runs, snapshot, as_of=mixed)
    with pytest.raises(ValueError, match="carries its samples"):
        sequencing_success_frame(request_samples, request_runs, snapshot, history_samples=samples, as_of=t)
    # serving: the snapshot for requests after the cutoff, the packed frames for any earlier one
    assert serving_history(snapshot, samples, runs, t)[0] is snapshot
    assert serving_history(snapshot, samples, runs, mixed)[0] is runs
    assert serving_history(None, samples, runs, t) == (runs, samples)


def test_save_and_load_round_trip(lab, snapshot: RunHistorySnapshot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    snapshot.save(tmp_path / "run_history")
    loaded = RunHistorySnapshot.load(tmp_path / "run_history")
    assert loaded.cutoff == snapshot.cutoff and loaded.sample_history.cutoff == snapshot.sample_history.cutoff
    for name in ("failure_table", "priority_table", "sample_table", "window_table"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(snapshot, name), check_dtype=False)
    assert {k: v for k, v in loaded.totals.items() if k != "recent_median"} == {
        k: v for k, v in snapshot.totals.items() if k != "recent_median"
    }
    assert math.isclose(loaded.totals["recent_median"], snapshot.totals["recent_median"])
    request_samples, request_runs, t = library_requests(lab, snapshot, seed=6, n=200)
    pd.testing.assert_frame_equal(sequencing_success_frame(request_samples, request_runs, loaded, as_of=t),
                                  sequencing_success_frame(request_samples, request_runs, snapshot, as_of=t), check_exact=True)  # fmt: skip
    new = request_samples[request_samples["sample_id"].str.startswith("TS-2099")]
    pd.testing.assert_frame_equal(turnaround_frame(new, loaded, as_of=t[: len(new)]),
                                  turnaround_frame(new, snapshot, as_of=t[: len(new)]), check_exact=True)  # fmt: skip


def test_the_snapshot_answers_without_the_full_history(
    lab, snapshot: RunHistorySnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Speed sanity without timing: per request nothing sorts or groups the history again, and
    what the snapshot keeps per window is the last days' events, not the history."""
    samples, runs = lab
    request_samples, request_runs, t = library_requests(lab, snapshot, seed=7, n=50)
    expected = sequencing_success_frame(request_samples, request_runs, snapshot, as_of=t)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the snapshot path read the full history")

    for name in ("_first_runs", "_recent_failures", "_recent_median"):
        monkeypatch.setattr(run_features, name, forbidden)
    monkeypatch.setattr(run_features._FrameHistory, "__init__", forbidden)
    fresh = RunHistorySnapshot(snapshot.cutoff, snapshot.sample_history, snapshot.failure_table, snapshot.priority_table,
                               snapshot.sample_table, snapshot.window_table, snapshot.totals)  # fmt: skip
    pd.testing.assert_frame_equal(sequencing_success_frame(request_samples, request_runs, fresh, as_of=t), expected)
    new = request_samples[request_samples["sample_id"].str.startswith("TS-2099")]
    assert len(turnaround_frame(new, fresh, as_of=t[: len(new)])) == len(new)
    with pytest.raises(AssertionError, match="full history"):
        sequencing_success_frame(request_samples, request_runs, runs, history_samples=samples, as_of=t)

    windows = snapshot.window_table
    assert len(windows) < 0.2 * (len(samples) + len(runs))
    run_starts = windows[windows["kind"] == "run_start"]["time"]
    assert run_starts.min() > snapshot.cutoff.value - 7 * DAY.value
    assert (
        len(snapshot.failure_table) == runs["instrument_id"].nunique() + runs["library_kit"].nunique() + 2
    )  # + one unknown key each


def test_the_run_models_serve_from_the_snapshot_with_the_same_features(lab, snapshot: RunHistorySnapshot) -> None:  # type: ignore[no-untyped-def]
    samples, runs = lab
    for model in (sequencing_success, turnaround_hours):
        assert model.MODEL.serving.history_snapshot is not None
        assert isinstance(
            get_model(model.MODEL.name).serving.history_snapshot(samples.head(50), runs.head(50)), RunHistorySnapshot
        )
    request_samples, request_runs, t = library_requests(lab, snapshot, seed=8, n=60)
    requests = request_runs.drop(columns=["run_start_ts"]).merge(request_samples, on="sample_id")
    as_of = pd.DatetimeIndex(requests["library_prep_ts"])
    fast = sequencing_success.serving_features(ServingRows(requests, samples, runs, as_of, snapshot))
    full = sequencing_success.serving_features(ServingRows(requests, samples, runs, as_of))
    pd.testing.assert_frame_equal(fast, full, check_exact=True)
    assert len(fast) == len(requests) and fast["instrument_recent_runs"].max() > 0

    new = new_samples(samples, np.random.default_rng(8), 40, received=after(snapshot, np.random.default_rng(9), 40))
    received = pd.DatetimeIndex(new["received_ts"])
    fast = turnaround_hours.serving_features(ServingRows(new, samples, runs, received, snapshot))
    full = turnaround_hours.serving_features(ServingRows(new, samples, runs, received))
    pd.testing.assert_frame_equal(fast, full, check_exact=True)
    # a request about the past is still answered, from the packed frames
    past = pd.DatetimeIndex(samples["received_ts"].tail(5))
    old = samples.tail(5).reset_index(drop=True)
    pd.testing.assert_frame_equal(turnaround_hours.serving_features(ServingRows(old, samples, runs, past, snapshot)),
                                  turnaround_hours.serving_features(ServingRows(old, samples, runs, past)))  # fmt: skip
