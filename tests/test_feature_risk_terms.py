"""The bounds and fills of the quality risk score's terms, hours between stamps with one missing,
and ``as_of`` normalisation: the feature mutants test_features.py left alive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracseq_dagster.features import _NAT, HOURS_NS, _hours, _quality_risk_score, _risk_terms, _to_utc_timestamp, purity_score

NAN = np.nan


def _inputs(**columns: list[float]) -> dict[str, np.ndarray]:
    names = ("storage_temp_deviation_c", "max_temp_deviation_c", "temp_excursion_rate_per_day", "freeze_thaw_cycles",
             "purity_score", "integrity_score", "processing_delay_hours", "sample_age_hours")  # fmt: skip
    n = len(next(iter(columns.values())))
    return {name: np.asarray(columns.get(name, [0.0] * n), dtype=np.float64) for name in names}


@pytest.mark.parametrize(
    ("column", "term", "values", "expected"),
    [
        # below the range, missing, inside, above: clipped at both ends, missing counts as no risk
        ("storage_temp_deviation_c", "warm_storage", [-5.0, NAN, 15.0, 45.0], [0.0, 0.0, 1.5, 3.0]),
        ("max_temp_deviation_c", "max_excursion", [-5.0, NAN, 15.0, 45.0], [0.0, 0.0, 1.5, 3.0]),
        ("temp_excursion_rate_per_day", "excursion_rate", [-1.0, NAN, 0.5, 2.0], [0.0, 0.0, 0.5, 1.0]),
        ("freeze_thaw_cycles", "freeze_thaw", [-1.0, NAN, 10.0, 30.0], [0.0, 0.0, 2.0, 4.0]),
        ("processing_delay_hours", "processing_delay", [-5.0, NAN, 84.0, 1000.0], [0.0, 0.0, 0.5, 720.0 / 168.0]),
        ("sample_age_hours", "age", [-10.0, NAN, 8760.0, 10 * 8760.0], [0.0, 0.0, 1.0, 5.0]),
        # scores 0..1 turned into risks; missing counts as middling
        ("purity_score", "impurity", [1.0, NAN, 0.25, 0.0], [0.0, 0.5, 0.75, 1.0]),
        ("integrity_score", "degradation", [1.0, NAN, 0.25, 0.0], [0.0, 0.5, 0.75, 1.0]),
    ],
)
def test_each_risk_term_is_bounded_and_filled(column: str, term: str, values: list[float], expected: list[float]) -> None:
    terms = _risk_terms(_inputs(**{column: values}))
    np.testing.assert_allclose(terms[term], expected)
    others = [name for name in terms if name != term]
    for name in others:  # the other inputs are 0: no risk, or full risk for the two scores
        np.testing.assert_allclose(terms[name], 1.0 if name in ("impurity", "degradation") else 0.0)


def test_the_risk_score_is_a_probability_that_saturates_at_the_bounds() -> None:
    at_bounds = _quality_risk_score(_inputs(storage_temp_deviation_c=[30.0, 300.0], sample_age_hours=[5 * 8760.0, 50 * 8760.0]))
    assert at_bounds[0] == pytest.approx(at_bounds[1])  # beyond the bounds nothing changes
    assert ((at_bounds > 0) & (at_bounds < 1)).all()


def test_hours_are_missing_when_either_stamp_is() -> None:
    hour = HOURS_NS
    later = np.array([10 * hour, _NAT, 10 * hour, _NAT], dtype=np.int64)
    earlier = np.array([4 * hour, 4 * hour, _NAT, _NAT], dtype=np.int64)
    out = _hours(later, earlier)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(out), [False, True, True, True])
    assert out[0] == 6.0


def test_purity_averages_the_known_ratios_only() -> None:
    ideal = purity_score(
        np.array([1.8, 2.0, NAN, 1.8, NAN]), np.array([2.1, 2.1, 2.1, NAN, NAN]), np.array([False, True, False, False, False])
    )
    np.testing.assert_allclose(ideal[:4], 1.0)
    assert np.isnan(ideal[4])
    one_off = purity_score(np.array([1.95]), np.array([NAN]), np.array([False]))  # one width from the DNA ideal
    np.testing.assert_allclose(one_off, np.exp(-0.5))


def test_as_of_is_made_utc_and_nat_refused() -> None:
    naive = _to_utc_timestamp("2025-03-01T12:00:00")
    assert naive == pd.Timestamp("2025-03-01T12:00:00Z") and str(naive.tz) == "UTC"
    zoned = _to_utc_timestamp("2025-03-01T14:00:00+02:00")
    assert zoned == pd.Timestamp("2025-03-01T12:00:00Z") and str(zoned.tz) == "UTC" and zoned.hour == 12
    with pytest.raises(ValueError, match="^as_of must be a timestamp, not NaT$"):
        _to_utc_timestamp(pd.NaT)


# -- feature_columns: edges the hand-computed tests do not reach -------------------------------------

from tests.test_features import frame, h, one  # noqa: E402
from tracseq_dagster.features import HistorySnapshot, compute_features, feature_columns  # noqa: E402


def test_an_extraction_exactly_at_as_of_counts_as_done() -> None:
    done = one({"received_ts": h(24), "extraction_ts": h(30)}, as_of=h(30))
    assert done["processing_delay_hours"] == 6.0
    later = one({"received_ts": h(24), "extraction_ts": h(30)}, as_of=h(29))  # not yet: the delay runs on
    assert later["processing_delay_hours"] == 5.0


def test_integrity_is_clipped_to_zero_and_one() -> None:
    assert one({"sample_type": "DNA", "din": 12.0})["integrity_score"] == 1.0
    assert one({"sample_type": "DNA", "din": 0.5})["integrity_score"] == 0.0
    assert one({"sample_type": "RNA", "rin": 5.5, "din": None})["integrity_score"] == 0.5


def test_an_unknown_delay_has_no_category() -> None:
    columns = feature_columns(frame({"received_ts": None}), frame(), as_of=h(48))
    assert columns.codes["processing_delay_category"].tolist() in ([], [-1])


def test_ids_must_be_present_and_unique_with_the_duplicates_named() -> None:
    with pytest.raises(ValueError, match="^samples must have a sample_id on every row$"):
        compute_features(frame({}).assign(sample_id=pd.Series([None], dtype="string")), frame())
    twice = frame({}, {}).assign(sample_id=pd.Series(["TS-2024-000001"] * 2, dtype="string"))
    with pytest.raises(ValueError, match=r"^samples must have unique sample_id values; duplicated: \['TS-2024-000001'\]$"):
        compute_features(twice, frame())
    many = frame(*[{} for _ in range(70)])  # past the few-values shortcut
    many["sample_id"] = pd.Series([f"TS-2024-{i % 65:06d}" for i in range(70)], dtype="string")
    with pytest.raises(
        ValueError,
        match=r"duplicated: \['TS-2024-000000', 'TS-2024-000001', 'TS-2024-000002', 'TS-2024-000003', 'TS-2024-000004'\]$",
    ):
        compute_features(many, frame())


@pytest.mark.parametrize(
    "column",
    [
        "storage_temp_c",
        "temp_excursions",
        "max_temp_deviation_c",
        "freeze_thaw_cycles",
        "a260_280",
        "a260_230",
        "concentration_ng_ul",
        "volume_ul",
        "box_occupancy",
        "sample_type",
    ],
)
def test_a_missing_required_column_is_named(column: str) -> None:
    with pytest.raises(ValueError, match=f"^samples is missing the required contract column '{column}'$"):
        compute_features(frame({}).drop(columns=column), frame())


def test_a_history_snapshot_gives_the_features_of_its_history_frame() -> None:
    history = frame(*[{"operator_id": f"OP{i % 3}", "site": f"S{i % 2}", "received_ts": h(i), "qc_status": "fail" if i % 4 == 0 else "pass"}
                      for i in range(40)])  # fmt: skip
    queries = frame(*[{"operator_id": f"OP{i % 3}", "site": f"S{i % 2}", "received_ts": h(10 + 5 * i)} for i in range(6)])
    queries["sample_id"] = pd.Series([f"TS-2025-{i:06d}" for i in range(6)], dtype="string")
    from_frame = compute_features(queries, history, as_of=h(60))
    from_snapshot = feature_columns(queries, HistorySnapshot.build(history), as_of=h(60)).frame()
    pd.testing.assert_frame_equal(from_snapshot, from_frame, check_dtype=False)
    assert from_frame["operator_failure_rate"].notna().any()


@pytest.mark.parametrize("column", ["sample_id", "operator_id", "site", "storage_location"])
def test_a_history_missing_a_required_column_is_named_as_the_history(column: str) -> None:
    history = frame({"received_ts": h(1), "qc_status": "fail"})
    with pytest.raises(ValueError, match=f"^history is missing the required contract column '{column}'$"):
        compute_features(frame({"received_ts": h(30)}), history.drop(columns=column), as_of=h(40))
