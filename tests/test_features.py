"""Tests for tracseq_dagster.features: hand-computed values and point-in-time correctness."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracseq_dagster import features as F
from tracseq_dagster.contract import COLUMNS, DNA_TYPES, RNA_TYPES, SAMPLE_TYPES, Kind
from tracseq_dagster.features import (
    FEATURE_CODE_VERSION,
    FEATURE_NAMES,
    FEATURE_SPECS,
    STORAGE_TARGET_C,
    compute_features,
)

T0 = pd.Timestamp("2024-01-01T00:00:00Z")  # a Monday


def h(hours: float) -> pd.Timestamp:
    """T0 + hours."""
    return T0 + pd.Timedelta(hours=hours)


_DTYPES = {
    Kind.STRING: "string",
    Kind.ENUM: "string",
    Kind.TIMESTAMP: "datetime64[ns, UTC]",
    Kind.FLOAT: "float64",
    Kind.INT: "Int64",
}

DEFAULTS: dict[str, Any] = dict(
    project_id="P1",
    sample_type="DNA",
    collection_ts=h(0),
    received_ts=h(24),
    extraction_ts=None,
    sequencing_ts=None,
    storage_temp_c=-20.0,
    temp_excursions=0,
    max_temp_deviation_c=0.0,
    freeze_thaw_cycles=0,
    concentration_ng_ul=50.0,
    volume_ul=20.0,
    a260_280=1.8,
    a260_230=2.1,
    rin=None,
    din=8.0,
    storage_location="FRZ-01/R1/B1/A1",
    box_occupancy=50,
    operator_id="OP1",
    site="S1",
    priority="routine",
    qc_status=None,
)


def frame(*rows: dict[str, Any], extra: bool = True) -> pd.DataFrame:
    """A typed sample frame (the project convention) from partial rows; ids default to TS-2024-00000i."""
    records = []
    for i, row in enumerate(rows):
        record = {"sample_id": f"TS-2024-{i:06d}", **DEFAULTS, **row}
        records.append(record)
    data = {c.name: pd.Series([r[c.name] for r in records], dtype=_DTYPES[c.kind]) for c in COLUMNS}
    df = pd.DataFrame(data)
    if extra:  # lineage and unknown columns must be ignored
        df["_file_hash"] = pd.Series(["abc"] * len(df), dtype="string")
        df["_source_file"] = pd.Series(["x.csv"] * len(df), dtype="string")
        df["_row_number"] = pd.Series(range(2, len(df) + 2), dtype="Int64")
        df["lims_comment"] = "ignored"
    return df


def one(row: dict[str, Any], as_of: Any = None, history: pd.DataFrame | None = None) -> pd.Series:
    s = frame(row)
    out = compute_features(s, frame() if history is None else history, as_of)
    assert len(out) == 1
    return out.iloc[0]


# --------------------------------------------------------------------------- registry


def test_registry_and_output_shape():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == len(FEATURE_SPECS)
    assert tuple(s.name for s in FEATURE_SPECS) == FEATURE_NAMES
    for spec in FEATURE_SPECS:
        assert spec.unit and spec.description and spec.kind in ("numeric", "categorical")
        assert (spec.categories is not None) == (spec.kind == "categorical")
    assert set(STORAGE_TARGET_C) == set(SAMPLE_TYPES)
    expected = {
        "sample_age_hours", "transit_time_hours", "processing_delay_hours", "processing_delay_category",
        "storage_temp_deviation_c", "temp_excursion_rate_per_day", "max_temp_deviation_c", "freeze_thaw_cycles",
        "purity_score", "integrity_score", "log_concentration", "total_yield_ng", "box_utilisation",
        "freezer_utilisation", "operator_failure_rate", "operator_history_count", "site_failure_rate",
        "site_history_count", "is_urgent", "sample_type", "weekday_received", "quality_risk_score",
    }  # fmt: skip
    assert set(FEATURE_NAMES) == expected

    out = compute_features(frame({}, {"sample_type": "RNA", "rin": 7.0}), frame(), as_of=h(100))
    assert list(out.columns) == [*FEATURE_NAMES, "as_of", "qc_status"]
    assert out.index.name == "sample_id"
    assert list(out.index) == ["TS-2024-000000", "TS-2024-000001"]
    for spec in FEATURE_SPECS:
        if spec.kind == "numeric":
            assert out[spec.name].dtype == np.float64, spec.name
        else:
            assert list(out[spec.name].cat.categories) == list(spec.categories), spec.name
    assert str(out["as_of"].dtype) == "datetime64[ns, UTC]"
    assert out["qc_status"].dtype == "string"


def test_code_version_is_hash_of_module_source():
    source = Path(F.__file__).read_bytes()
    digest = hashlib.sha256(source)
    digest.update(repr((F.SAMPLE_TYPES, F.RNA_TYPES, F.DNA_TYPES, F.PRIORITIES, F.QC_STATUSES, F.TIMESTAMP_COLUMNS)).encode())
    assert digest.hexdigest()[:16] == FEATURE_CODE_VERSION
    assert hashlib.sha256(source + b"#").hexdigest()[:16] != FEATURE_CODE_VERSION


# ----------------------------------------------------------------------- row features


def test_time_features_hand_computed():
    row = one(
        {"collection_ts": h(0), "received_ts": h(30), "extraction_ts": h(78), "sequencing_ts": h(200)},
        as_of=h(240),
    )
    assert row["sample_age_hours"] == 240.0
    assert row["transit_time_hours"] == 30.0
    assert row["processing_delay_hours"] == 48.0
    assert row["processing_delay_category"] == "normal"
    assert row["as_of"] == h(240)


@pytest.mark.parametrize(
    ("delay", "category"),
    [(0, "same_day"), (23.99, "same_day"), (24, "normal"), (71.99, "normal"), (72, "delayed"),
     (167.99, "delayed"), (168, "critical"), (1000, "critical")],
)  # fmt: skip
def test_processing_delay_category_boundaries(delay, category):
    row = one({"received_ts": h(10), "extraction_ts": h(10 + delay)}, as_of=h(5000))
    assert row["processing_delay_hours"] == pytest.approx(delay)
    assert row["processing_delay_category"] == category


@pytest.mark.parametrize("sample_type", SAMPLE_TYPES)
def test_storage_temperature_deviation_per_type(sample_type):
    row = one({"sample_type": sample_type, "storage_temp_c": -70.0}, as_of=h(48))
    assert row["storage_temp_deviation_c"] == -70.0 - STORAGE_TARGET_C[sample_type]
    assert row["sample_type"] == sample_type


def test_storage_targets_values():
    assert STORAGE_TARGET_C == {
        "RNA": -80.0, "cfDNA": -80.0, "tissue": -80.0, "DNA": -20.0, "saliva": -20.0, "blood": 4.0, "FFPE": 20.0
    }  # fmt: skip
    # positive = warmer than target
    assert one({"sample_type": "RNA", "storage_temp_c": -70.0}, as_of=h(48))["storage_temp_deviation_c"] == 10.0


def test_excursion_rate_and_minimum_age():
    row = one({"collection_ts": h(0), "received_ts": h(1), "temp_excursions": 3, "max_temp_deviation_c": 4.5}, as_of=h(72))
    assert row["temp_excursion_rate_per_day"] == pytest.approx(1.0)  # 3 excursions over 3 days
    assert row["max_temp_deviation_c"] == 4.5
    # age 0 h is floored at 1 h: 3 / (1/24 day) = 72 per day
    young = one({"collection_ts": h(5), "received_ts": h(5), "temp_excursions": 3}, as_of=h(5))
    assert young["sample_age_hours"] == 0.0
    assert young["temp_excursion_rate_per_day"] == pytest.approx(72.0)


def test_freeze_thaw_concentration_yield_box():
    row = one({"freeze_thaw_cycles": 4, "concentration_ng_ul": 99.0, "volume_ul": 25.0, "box_occupancy": 81}, as_of=h(48))
    assert row["freeze_thaw_cycles"] == 4.0
    assert row["log_concentration"] == pytest.approx(2.0)  # log10(1 + 99)
    assert row["total_yield_ng"] == pytest.approx(2475.0)
    assert row["box_utilisation"] == pytest.approx(0.81)


def test_purity_score():
    assert one({"sample_type": "DNA", "a260_280": 1.8, "a260_230": 2.1}, as_of=h(48))["purity_score"] == 1.0
    assert one({"sample_type": "RNA", "a260_280": 2.0, "a260_230": 2.1}, as_of=h(48))["purity_score"] == 1.0
    # RNA judged against 2.0: 1.8 is 0.2 off (width 0.15); 260/230 at its ideal
    rna = one({"sample_type": "RNA", "a260_280": 1.8, "a260_230": 2.1}, as_of=h(48))["purity_score"]
    assert rna == pytest.approx((math.exp(-0.5 * (0.2 / 0.15) ** 2) + 1.0) / 2)
    dna = one({"sample_type": "DNA", "a260_280": 1.8, "a260_230": 1.5}, as_of=h(48))["purity_score"]
    assert dna == pytest.approx((1.0 + math.exp(-0.5 * (0.6 / 0.3) ** 2)) / 2)
    # one ratio missing: the other alone; both missing: NaN
    assert one({"a260_280": None, "a260_230": 2.4}, as_of=h(48))["purity_score"] == pytest.approx(math.exp(-0.5))
    assert math.isnan(one({"a260_280": None, "a260_230": None}, as_of=h(48))["purity_score"])
    # symmetric and decreasing with distance
    lo, hi = (one({"a260_280": r}, as_of=h(48))["purity_score"] for r in (1.6, 2.0))
    assert lo == pytest.approx(hi) and lo < 1.0


def test_integrity_rin_for_rna_din_for_dna():
    assert RNA_TYPES == ("RNA",) and "DNA" in DNA_TYPES
    assert one({"sample_type": "RNA", "rin": 10.0, "din": 1.0}, as_of=h(48))["integrity_score"] == 1.0
    assert one({"sample_type": "RNA", "rin": 5.5, "din": None}, as_of=h(48))["integrity_score"] == pytest.approx(0.5)
    assert one({"sample_type": "blood", "rin": 10.0, "din": 1.0}, as_of=h(48))["integrity_score"] == 0.0
    assert one({"sample_type": "FFPE", "rin": None, "din": 7.3}, as_of=h(48))["integrity_score"] == pytest.approx(0.7)
    # the wrong type's number is ignored, missing gives NaN
    assert math.isnan(one({"sample_type": "RNA", "rin": None, "din": 9.0}, as_of=h(48))["integrity_score"])
    assert math.isnan(one({"sample_type": "DNA", "rin": 9.0, "din": None}, as_of=h(48))["integrity_score"])


def test_priority_weekday_and_type():
    assert one({"priority": "urgent"}, as_of=h(48))["is_urgent"] == 1.0
    assert one({"priority": "routine"}, as_of=h(48))["is_urgent"] == 0.0
    assert one({"received_ts": h(0)}, as_of=h(48))["weekday_received"] == 0.0  # Monday 2024-01-01
    assert one({"received_ts": h(6 * 24 + 23)}, as_of=h(500))["weekday_received"] == 6.0  # Sunday 23:00 UTC
    assert one({"received_ts": pd.Timestamp("2024-01-03T23:30:00-05:00")}, as_of=h(500))["weekday_received"] == 3.0  # Thu in UTC


def test_quality_risk_score_hand_computed():
    row = one(
        {
            "sample_type": "DNA", "collection_ts": h(0), "received_ts": h(0), "extraction_ts": h(84),
            "storage_temp_c": -15.0, "max_temp_deviation_c": 5.0, "temp_excursions": 0, "freeze_thaw_cycles": 5,
            "a260_280": 1.8, "a260_230": 2.1, "din": 5.5,
        },
        as_of=h(8760),
    )  # fmt: skip
    z = -3.0 + 1.0 * 0.5 + 0.5 * 0.5 + 0.5 * 0.0 + 0.8 * 1.0 + 1.5 * 0.0 + 2.0 * 0.5 + 0.8 * 0.5 + 0.3 * 1.0
    assert row["quality_risk_score"] == pytest.approx(1 / (1 + math.exp(-z)))
    worse = one({"freeze_thaw_cycles": 12}, as_of=h(48))["quality_risk_score"]
    better = one({"freeze_thaw_cycles": 0}, as_of=h(48))["quality_risk_score"]
    assert 0.0 < better < worse < 1.0


def test_missing_optional_columns_and_empty_history():
    s = frame({"sample_type": "RNA", "rin": 8.0}).drop(columns=["extraction_ts", "sequencing_ts", "din", "qc_status"])
    out = compute_features(s, pd.DataFrame(), as_of=h(48))
    row = out.iloc[0]
    assert row["processing_delay_hours"] == 24.0
    assert row["operator_failure_rate"] == pytest.approx(0.15) and row["operator_history_count"] == 0
    assert row["site_failure_rate"] == pytest.approx(0.15) and row["site_history_count"] == 0
    assert row["freezer_utilisation"] == row["box_utilisation"] == 0.5
    assert pd.isna(row["qc_status"])
    with pytest.raises(ValueError, match="received_ts"):
        compute_features(s.drop(columns=["received_ts"]), pd.DataFrame(), as_of=h(48))


def test_no_rows():
    empty = compute_features(frame(), frame(), as_of=h(10))
    assert len(empty) == 0 and list(empty.columns) == [*FEATURE_NAMES, "as_of", "qc_status"]
    none_yet = compute_features(frame({"received_ts": h(20)}), _history_for_rates(), as_of=h(10))
    assert len(none_yet) == 0 and list(none_yet.columns) == list(empty.columns)


def test_duplicate_sample_ids_rejected():
    s = frame({}, {})
    s.loc[1, "sample_id"] = s.loc[0, "sample_id"]
    with pytest.raises(ValueError, match="unique"):
        compute_features(s, frame(), as_of=h(48))


# ----------------------------------------------------------------------- as_of semantics


def test_as_of_drops_unreceived_and_hides_later_extraction():
    s = frame(
        {"received_ts": h(10), "extraction_ts": h(30)},
        {"received_ts": h(20)},  # received exactly at as_of: exists
        {"received_ts": h(20.001)},  # not yet received
    )
    out = compute_features(s, frame(), as_of=h(20))
    assert list(out.index) == ["TS-2024-000000", "TS-2024-000001"]
    # extraction at h(30) is in the future: the delay still runs, as_of - received
    assert out.loc["TS-2024-000000", "processing_delay_hours"] == 10.0
    later = compute_features(s, frame(), as_of=h(40))
    assert later.loc["TS-2024-000000", "processing_delay_hours"] == 20.0  # extraction now known
    assert len(later) == 3


def test_sample_age_grows_with_as_of_and_naive_as_of_is_utc():
    s = frame({})
    a = compute_features(s, frame(), as_of=h(100)).iloc[0]
    b = compute_features(s, frame(), as_of=h(150)).iloc[0]
    assert b["sample_age_hours"] - a["sample_age_hours"] == 50.0
    assert a["transit_time_hours"] == b["transit_time_hours"]
    naive = compute_features(s, frame(), as_of="2024-01-05 04:00").iloc[0]
    other_zone = compute_features(s, frame(), as_of=pd.Timestamp("2024-01-05T05:00:00+01:00")).iloc[0]
    assert naive["sample_age_hours"] == other_zone["sample_age_hours"] == 100.0


def test_label_attached_only_when_known():
    s = frame(
        {"received_ts": h(10), "extraction_ts": h(20), "qc_status": "fail"},
        {"received_ts": h(10), "extraction_ts": h(20), "sequencing_ts": h(40), "qc_status": "pass"},
    )
    out = compute_features(s, frame(), as_of=h(30))
    assert out["qc_status"].iloc[0] == "fail"  # label_ts = extraction h(20) <= as_of
    assert pd.isna(out["qc_status"].iloc[1])  # label_ts = sequencing h(40) > as_of


def test_as_of_none_uses_each_rows_own_label_time():
    s = frame(
        {"received_ts": h(10)},
        {"received_ts": h(10), "extraction_ts": h(30)},
        {"received_ts": h(10), "extraction_ts": h(30), "sequencing_ts": h(50), "qc_status": "borderline"},
    )
    out = compute_features(s, frame(), as_of=None)
    assert list(out["as_of"]) == [h(10), h(30), h(50)]
    assert list(out["sample_age_hours"]) == [10.0, 30.0, 50.0]
    assert list(out["processing_delay_hours"]) == [0.0, 20.0, 20.0]
    assert out["qc_status"].iloc[2] == "borderline"


def test_training_view_equals_per_row_scalar_as_of():
    """as_of=None is exactly "each sample at its own label_ts", row by row."""
    hist = _history_for_rates()
    train = compute_features(hist, hist, as_of=None)
    assert len(train) == len(hist)
    for sample_id, row in train.iterrows():
        single = hist[hist["sample_id"] == sample_id]
        alone = compute_features(single, hist, as_of=row["as_of"]).iloc[0]
        pd.testing.assert_series_equal(alone, row, check_names=False)


# ------------------------------------------------------------------- history features


def _history_for_rates() -> pd.DataFrame:
    """OP1 at S1: 4 labelled in the past (1 fail), OP2 at S2: 2 labelled (2 fail)."""
    return frame(
        {"received_ts": h(0), "extraction_ts": h(5), "qc_status": "fail", "operator_id": "OP1", "site": "S1"},
        {"received_ts": h(1), "qc_status": "pass", "operator_id": "OP1", "site": "S1"},
        {"received_ts": h(2), "qc_status": "borderline", "operator_id": "OP1", "site": "S1"},
        {"received_ts": h(3), "sequencing_ts": None, "qc_status": "pass", "operator_id": "OP1", "site": "S2"},
        {"received_ts": h(4), "qc_status": "fail", "operator_id": "OP2", "site": "S2"},
        {"received_ts": h(6), "extraction_ts": h(7), "qc_status": "fail", "operator_id": "OP2", "site": "S2"},
        {"received_ts": h(8), "qc_status": None, "operator_id": "OP1", "site": "S1"},  # not QC'd yet
    )


def _query(**row: Any) -> pd.DataFrame:
    q = frame({"received_ts": h(9), **row})
    q["sample_id"] = pd.Series(["TS-2099-000001"], dtype="string")
    return q


def test_operator_and_site_failure_rates_hand_computed():
    out = compute_features(_query(operator_id="OP1", site="S2"), _history_for_rates(), as_of=h(10)).iloc[0]
    assert out["operator_history_count"] == 4  # unlabelled sample not counted
    assert out["operator_failure_rate"] == pytest.approx((1 + 10 * 0.15) / (4 + 10))
    assert out["site_history_count"] == 3
    assert out["site_failure_rate"] == pytest.approx((2 + 1.5) / (3 + 10))
    unknown = compute_features(_query(operator_id="NEW", site="S9"), _history_for_rates(), as_of=h(10)).iloc[0]
    assert unknown["operator_failure_rate"] == pytest.approx(0.15) and unknown["operator_history_count"] == 0


def test_rates_use_label_time_strictly_before_as_of():
    hist = _history_for_rates()
    # at h(5) the first sample's label (label_ts = extraction h(5)) is not yet usable: strictly before
    at5 = compute_features(_query(received_ts=h(4.5), operator_id="OP1"), hist, as_of=h(5)).iloc[0]
    assert at5["operator_history_count"] == 3  # h(1), h(2), h(3)
    assert at5["operator_failure_rate"] == pytest.approx(1.5 / 13)
    after5 = compute_features(_query(received_ts=h(4.5), operator_id="OP1"), hist, as_of=h(5.001)).iloc[0]
    assert after5["operator_history_count"] == 4
    assert after5["operator_failure_rate"] == pytest.approx(2.5 / 14)


def test_freezer_utilisation_point_in_time():
    hist = frame(
        {"received_ts": h(1), "storage_location": "FRZ-01/R1/B1/A1", "box_occupancy": 20},
        {"received_ts": h(2), "storage_location": "FRZ-01/R2/B7/C3", "box_occupancy": 60},
        {"received_ts": h(3), "storage_location": "FRZ-02/R1/B1/A1", "box_occupancy": 100},
        {"received_ts": h(9), "storage_location": "FRZ-01/R1/B1/A2", "box_occupancy": 100},  # after as_of
    )
    q = _query(storage_location="FRZ-01/R5/B5/B5", box_occupancy=90, received_ts=h(1.5))
    assert compute_features(q, hist, as_of=h(5)).iloc[0]["freezer_utilisation"] == pytest.approx(0.4)
    assert compute_features(q, hist, as_of=h(2)).iloc[0]["freezer_utilisation"] == pytest.approx(0.2)  # h(2): not yet
    assert compute_features(q, hist, as_of=h(9.5)).iloc[0]["freezer_utilisation"] == pytest.approx(0.6)  # (20 + 60 + 100) / 3
    # no earlier sample in the freezer: the row's own box
    lonely = _query(storage_location="FRZ-09/R1/B1/A1", box_occupancy=90, received_ts=h(4))
    assert compute_features(lonely, hist, as_of=h(5)).iloc[0]["freezer_utilisation"] == pytest.approx(0.9)


def test_own_label_never_feeds_own_rate():
    hist = _history_for_rates()
    me = _query(operator_id="OP1", site="S1", received_ts=h(8.5), qc_status="fail")
    with_me = pd.concat([hist, me], ignore_index=True)
    # scalar as_of after the sample's own label: its label is returned, but not used in its rates
    a = compute_features(me, hist, as_of=h(20)).iloc[0]
    b = compute_features(me, with_me, as_of=h(20)).iloc[0]
    assert b["qc_status"] == "fail"
    pd.testing.assert_series_equal(a, b)
    assert b["operator_history_count"] == 4
    # yet the same label does count for another OP1 sample
    other = _query(operator_id="OP1", received_ts=h(9))
    other["sample_id"] = pd.Series(["TS-2099-000002"], dtype="string")
    assert compute_features(other, with_me, as_of=h(20)).iloc[0]["operator_history_count"] == 5
    # the training view also excludes it (and everything labelled at or after its own label time)
    train = compute_features(with_me, with_me, as_of=None)
    assert train.loc["TS-2099-000001", "operator_history_count"] == 4
    assert train.loc["TS-2099-000001", "qc_status"] == "fail"


# ---------------------------------------------------------------------------- leakage


def _flip(labels: pd.Series) -> pd.Series:
    return labels.map({"pass": "fail", "fail": "pass", "borderline": "fail"}).astype("string")


def _label_ts(df: pd.DataFrame) -> pd.Series:
    return df["sequencing_ts"].fillna(df["extraction_ts"]).fillna(df["received_ts"])


def test_leakage_future_labels_never_change_past_features():
    T = h(10)
    past = _history_for_rates()  # all labelled before T
    pending = frame(  # received before T, QC'd after T
        {"received_ts": h(6), "extraction_ts": h(12), "qc_status": "fail", "operator_id": "OP1", "site": "S1",
         "storage_location": "FRZ-01/R9/B9/A9", "box_occupancy": 10},
        {"received_ts": h(7), "sequencing_ts": h(10), "extraction_ts": h(8), "qc_status": "fail", "operator_id": "OP1", "site": "S2"},
    )  # fmt: skip
    pending["sample_id"] = pd.Series(["TS-2024-100000", "TS-2024-100001"], dtype="string")
    future = frame(  # received and QC'd after T
        *({"received_ts": h(11 + i), "qc_status": "fail", "operator_id": "OP1", "site": "S1", "box_occupancy": 100}
          for i in range(5))
    )  # fmt: skip
    future["sample_id"] = pd.Series([f"TS-2024-2{i:05d}" for i in range(5)], dtype="string")
    samples = pd.concat([past, pending], ignore_index=True)
    query = pd.concat([samples, _query(operator_id="OP1", site="S1")], ignore_index=True)

    base = compute_features(query, samples, as_of=T)
    # 1) history containing samples whose labels become known after T changes nothing
    with_future = compute_features(query, pd.concat([samples, future], ignore_index=True), as_of=T)
    pd.testing.assert_frame_equal(base, with_future)
    # 2) flipping every label that becomes known at or after T changes nothing
    everything = pd.concat([samples, future], ignore_index=True)
    flipped = everything.copy()
    is_future = _label_ts(flipped) >= T
    assert is_future.sum() == 7  # the flip is not vacuous
    flipped.loc[is_future, "qc_status"] = _flip(flipped.loc[is_future, "qc_status"])
    cols = [*FEATURE_NAMES, "as_of"]
    pd.testing.assert_frame_equal(
        compute_features(query, everything, as_of=T)[cols], compute_features(query, flipped, as_of=T)[cols]
    )
    # 3) ...while changing one past label does change the operator rate (this test can fail)
    past_flip = everything.copy()
    past_flip.loc[1, "qc_status"] = "fail"  # OP1/S1, labelled at h(1) < T
    changed = compute_features(query, past_flip, as_of=T)
    q = "TS-2099-000001"
    assert changed.loc[q, "operator_failure_rate"] > base.loc[q, "operator_failure_rate"]
    assert changed.loc[q, "site_failure_rate"] > base.loc[q, "site_failure_rate"]
    # the pending samples' labels are not attached at T (not known yet), except h(10) == T
    assert pd.isna(base.loc["TS-2024-100000", "qc_status"])
    assert base.loc["TS-2024-100001", "qc_status"] == "fail"


_ROW = st.fixed_dictionaries(
    {
        "received": st.integers(0, 60),
        "ext": st.none() | st.integers(0, 30),
        "seq": st.none() | st.integers(0, 30),
        "operator_id": st.sampled_from(["OP1", "OP2"]),
        "site": st.sampled_from(["S1", "S2"]),
        "freezer": st.sampled_from(["FRZ-01", "FRZ-02"]),
        "box_occupancy": st.integers(0, 100),
        "qc_status": st.none() | st.sampled_from(["pass", "borderline", "fail"]),
    }
)


def _rows_to_frame(rows: list[dict[str, Any]], offset: int, id_base: int) -> pd.DataFrame:
    out = []
    for r in rows:
        rec = offset + r["received"]
        ext = None if r["ext"] is None else rec + r["ext"]
        seq = None if r["seq"] is None or ext is None else ext + r["seq"]
        out.append(
            {
                "received_ts": h(rec), "extraction_ts": None if ext is None else h(ext),
                "sequencing_ts": None if seq is None else h(seq), "operator_id": r["operator_id"], "site": r["site"],
                "storage_location": f"{r['freezer']}/R1/B1/A1", "box_occupancy": r["box_occupancy"],
                "qc_status": r["qc_status"],
            }
        )  # fmt: skip
    df = frame(*out, extra=False)
    df["sample_id"] = pd.Series([f"TS-2024-{id_base + i:06d}" for i in range(len(df))], dtype="string")
    return df


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=st.lists(_ROW, min_size=1, max_size=10),
    future=st.lists(_ROW, min_size=1, max_size=6),
    t=st.integers(0, 80),
    reverse=st.booleans(),
)
def test_property_future_history_never_changes_past_features(past, future, t, reverse):
    T = h(t)
    hist = _rows_to_frame(past, 0, 0)
    later = _rows_to_frame(future, t, 500_000)  # received at or after T
    if reverse:  # any labels, any order
        later = later.iloc[::-1].reset_index(drop=True)
    base = compute_features(hist, hist, as_of=T)
    more = compute_features(hist, pd.concat([later, hist], ignore_index=True), as_of=T)
    pd.testing.assert_frame_equal(base, more)
    # and flipping every label that only becomes known at or after T changes no feature
    flipped = hist.copy()
    unknown = _label_ts(flipped) >= T
    flipped.loc[unknown, "qc_status"] = _flip(flipped.loc[unknown, "qc_status"])
    cols = [*FEATURE_NAMES, "as_of"]
    pd.testing.assert_frame_equal(base[cols], compute_features(hist, flipped, as_of=T)[cols])
    # training view: rows appended after every sample's label time change nothing
    train = compute_features(hist, hist, as_of=None)
    last = int((_label_ts(hist).max() - T0) / pd.Timedelta(hours=1)) + 1
    pd.testing.assert_frame_equal(train, compute_features(hist, pd.concat([hist, _rows_to_frame(future, last, 500_000)]), None))


def test_result_independent_of_input_row_order():
    rng = np.random.default_rng(7)
    rows = []
    for i in range(60):
        rec = float(rng.integers(0, 200))
        ext = rec + float(rng.integers(0, 100)) if rng.random() < 0.7 else None
        rows.append(
            {
                "sample_type": SAMPLE_TYPES[i % len(SAMPLE_TYPES)], "received_ts": h(rec), "collection_ts": h(rec - 5),
                "extraction_ts": None if ext is None else h(ext), "operator_id": f"OP{i % 4}", "site": f"S{i % 3}",
                "storage_location": f"FRZ-0{i % 3}/R1/B{i}/A1", "box_occupancy": int(rng.integers(0, 101)),
                "qc_status": [None, "pass", "borderline", "fail"][i % 4], "rin": 7.0, "din": 6.0,
            }
        )  # fmt: skip
    df = frame(*rows)
    perm = rng.permutation(len(df))
    for as_of in (None, h(150)):
        a = compute_features(df, df, as_of=as_of)
        b = compute_features(df.iloc[perm], df.iloc[rng.permutation(len(df))].reset_index(drop=True), as_of=as_of)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert a.index.is_monotonic_increasing
        assert a["operator_history_count"].sum() > 0  # the history features are exercised


def test_history_aggregates_match_brute_force():
    """The sort/searchsorted implementation equals the definition, row by row (many ties)."""
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(150):
        rec = int(rng.integers(0, 30))
        ext = rec + int(rng.integers(0, 5)) if rng.random() < 0.6 else None
        seq = ext + int(rng.integers(0, 5)) if ext is not None and rng.random() < 0.5 else None
        rows.append(
            {
                "received_ts": h(rec), "extraction_ts": None if ext is None else h(ext),
                "sequencing_ts": None if seq is None else h(seq), "operator_id": f"OP{rng.integers(0, 4)}",
                "site": f"S{rng.integers(0, 3)}", "storage_location": f"FRZ-0{rng.integers(0, 3)}/R1/B1/A1",
                "box_occupancy": int(rng.integers(0, 101)), "qc_status": [None, "pass", "borderline", "fail"][rng.integers(0, 4)],
            }
        )  # fmt: skip
    hist = frame(*rows, extra=False)
    samples = pd.concat([hist.iloc[::3], _query(operator_id="OP1", site="S2")], ignore_index=True)
    label_ts = _label_ts(hist)
    for as_of in (None, h(12), h(40)):
        out = compute_features(samples, hist, as_of=as_of)
        assert len(out) > 10
        for sample_id, row in out.iterrows():
            t = row["as_of"]
            me = samples[samples["sample_id"] == sample_id].iloc[0]
            others = hist[hist["sample_id"] != sample_id]
            known = others[others["qc_status"].notna() & (label_ts[others.index] < t)]
            for key, name in (("operator_id", "operator"), ("site", "site")):
                mine = known[known[key] == me[key]]
                n, fails = len(mine), int((mine["qc_status"] == "fail").sum())
                assert row[f"{name}_history_count"] == n
                assert row[f"{name}_failure_rate"] == pytest.approx((fails + 1.5) / (n + 10))
            freezer = others["storage_location"].str.split("/").str[0] == me["storage_location"].split("/")[0]
            boxes = others[freezer & (others["received_ts"] < t)]["box_occupancy"]
            expected = boxes.mean() / 100 if len(boxes) else me["box_occupancy"] / 100
            assert row["freezer_utilisation"] == pytest.approx(expected)


# ------------------------------------------------------------------------ per-row as_of


def _per_row_queries() -> pd.DataFrame:
    """Seven samples of OP1/OP2 at S1/S2 received between h(0) and h(9), some QC'd."""
    q = _history_for_rates()
    q["sample_id"] = pd.Series([f"TS-2098-{i:06d}" for i in range(len(q))], dtype="string")
    return q


@pytest.mark.parametrize("container", [list, np.array, pd.DatetimeIndex, "series", "naive"])
def test_per_row_as_of_equals_the_scalar_call_row_by_row(container):
    hist = _history_for_rates()
    queries = pd.concat([hist, _per_row_queries()], ignore_index=True)  # own samples and strangers
    instants = [h(x) for x in (0.5, 1, 2.5, 5, 5, 7.5, 20, 0, 3, 1.5, 6.5, 9, 12, 100)]  # h(1.5): before its receipt
    assert len(instants) == len(queries)
    if container == "series":
        as_of = pd.Series(instants, index=queries.index)
    elif container == "naive":
        as_of = [t.tz_localize(None).to_pydatetime() for t in instants]  # naive = UTC
    else:
        as_of = container(instants)
    per_row = compute_features(queries, hist, as_of=as_of)
    expected = [compute_features(queries.iloc[[i]], hist, as_of=t) for i, t in enumerate(instants)]
    expected_frame = pd.concat([e for e in expected if len(e)]).sort_index()
    pd.testing.assert_frame_equal(per_row, expected_frame)
    # a sample received after its own as_of is left out, as in the scalar case
    assert len(per_row) == sum(len(e) for e in expected) < len(queries)
    assert per_row["operator_history_count"].nunique() > 2  # rows really are at different instants


def test_per_row_as_of_a_label_known_after_the_rows_instant_never_feeds_it():
    # one OP1 label becomes known at h(20); row A is as of h(10), row B as of h(30)
    hist = frame({"received_ts": h(1), "extraction_ts": h(20), "qc_status": "fail", "operator_id": "OP1", "site": "S1"})
    hist["sample_id"] = pd.Series(["TS-2097-000001"], dtype="string")
    rows = frame({"received_ts": h(5), "operator_id": "OP1"}, {"received_ts": h(5), "operator_id": "OP1"})
    out = compute_features(rows, hist, as_of=[h(10), h(30)])
    a, b = out.loc["TS-2024-000000"], out.loc["TS-2024-000001"]
    assert a["operator_history_count"] == 0 and a["operator_failure_rate"] == pytest.approx(0.15)
    assert b["operator_history_count"] == 1 and b["operator_failure_rate"] == pytest.approx(2.5 / 11)
    # flipping that label changes B, never A; so does a label exactly at A's instant (strictly before)
    flipped = hist.assign(qc_status=pd.Series(["pass"], dtype="string"))
    again = compute_features(rows, flipped, as_of=[h(10), h(30)])
    pd.testing.assert_series_equal(again.loc["TS-2024-000000"], a)
    assert again.loc["TS-2024-000001", "operator_failure_rate"] == pytest.approx(1.5 / 11)
    at_a = hist.assign(extraction_ts=pd.Series([h(10)], dtype="datetime64[ns, UTC]"))
    assert compute_features(rows, at_a, as_of=[h(10), h(30)]).loc["TS-2024-000000", "operator_history_count"] == 0
    # and each row's own label is attached only when known at its own instant
    mine = frame({"received_ts": h(5), "extraction_ts": h(20), "qc_status": "fail"},
                 {"received_ts": h(5), "extraction_ts": h(20), "qc_status": "fail"})  # fmt: skip
    labels = compute_features(mine, frame(), as_of=[h(19), h(20)])["qc_status"]
    assert pd.isna(labels.iloc[0]) and labels.iloc[1] == "fail"


def test_per_row_as_of_is_checked():
    rows = frame({}, {})
    with pytest.raises(ValueError, match="3 instants for 2 sample rows"):
        compute_features(rows, frame(), as_of=[h(30)] * 3)
    with pytest.raises(ValueError, match="not NaT"):
        compute_features(rows, frame(), as_of=[h(30), pd.NaT])
    with pytest.raises(ValueError, match="samples' index"):
        compute_features(rows, frame(), as_of=pd.Series([h(30), h(40)], index=[5, 6]))
    # an empty sample frame takes an empty per-row as_of
    assert len(compute_features(frame(), frame(), as_of=[])) == 0


def test_per_row_as_of_against_a_history_snapshot_equals_the_history_frame():
    history = frame(*[{"operator_id": f"OP{i % 3}", "site": f"S{i % 2}", "received_ts": h(i), "qc_status": "fail" if i % 4 == 0 else "pass"}
                      for i in range(40)])  # fmt: skip
    queries = frame(*[{"operator_id": f"OP{i % 3}", "site": f"S{i % 2}", "received_ts": h(10 + 5 * i)} for i in range(6)])
    queries["sample_id"] = pd.Series([f"TS-2025-{i:06d}" for i in range(6)], dtype="string")
    instants = [h(41 + 3 * i) for i in range(6)]
    snapshot = F.HistorySnapshot.build(history)
    from_snapshot = F.feature_columns(queries, snapshot, as_of=instants).frame()
    pd.testing.assert_frame_equal(from_snapshot, compute_features(queries, history, as_of=instants), check_dtype=False)
    with pytest.raises(ValueError, match="need the full history"):
        F.feature_columns(queries, snapshot, as_of=[h(41)] * 5 + [h(38)])  # one row before the cutoff h(39)
