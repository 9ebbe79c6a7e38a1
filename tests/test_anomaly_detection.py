"""Anomaly detection on small hand-made tables, the documented injections, and one generated lab."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracseq_dagster.features import compute_features
from tracseq_dagster.generator import DEFAULT_START, SPAN_DAYS, generate_samples
from tracseq_dagster.operations.alert_sources import anomaly_alerts, check_failure_alert, freezer_risk_alerts
from tracseq_dagster.operations.anomaly_detection import (
    MIN_REFERENCE_ROWS,
    AnomalyDetector,
    empty_scores,
    sample_detector_frame,
    score_freezer_days,
    score_samples,
    split_reference,
)
from tracseq_dagster.operations.anomaly_injection import (
    FREEZER_FAILING,
    IMPOSSIBLE_COMBINATION,
    SENSOR_GLITCH,
    inject_anomalies,
    inject_freezer_failing,
)
from tracseq_dagster.operations.freezer_history import freezer_days


def normal_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temperature": rng.normal(-80.0, 0.8, n),
            "yield": rng.lognormal(3.0, 0.9, n),  # heavy-tailed: large z-scores are normal here
            "cycles": rng.poisson(1.0, n).astype(float),
        }
    )


def test_a_value_beyond_history_is_flagged_and_named_first() -> None:
    detector = AnomalyDetector(false_alarm_budget=0.01).fit(normal_table(2000, 0))
    rows = pd.DataFrame({"temperature": [-80.1, -160.0], "yield": [20.0, 20.0], "cycles": [1.0, 1.0]})
    scores = detector.score(rows)
    assert scores.is_anomaly.tolist() == [False, True]
    assert scores.score[1] > 1.0 > scores.score[0]
    assert scores.reasons[0] == "" and scores.reasons[1].startswith("temperature = -160")


def test_false_alarms_on_fresh_normal_rows_stay_near_the_budget() -> None:
    detector = AnomalyDetector(false_alarm_budget=0.01).fit(normal_table(3000, 1))
    flagged = detector.score(normal_table(3000, 2)).is_anomaly.mean()
    assert flagged <= 0.02


def test_reasons_rank_by_rarity_not_by_z_score() -> None:
    """A heavy-tailed feature at its 99.5th percentile has a larger z than a rare value of a tight one."""
    reference = normal_table(4000, 3)
    detector = AnomalyDetector().fit(reference)
    row = np.array([-83.5, float(reference["yield"].quantile(0.995)), 1.0])  # -83.5: ~4.4 sd, beyond every reference row
    reasons = detector.reasons(row)
    assert [r.split(" ")[0] for r in reasons] == ["temperature", "yield"]
    assert "beyond all 4000 reference rows" in reasons[0] and "rarer than 99." in reasons[1]


def test_missing_values_are_not_a_reason() -> None:
    detector = AnomalyDetector().fit(normal_table(500, 4))
    reasons = detector.reasons(np.array([np.nan, 20.0, 9.0]))
    assert all(not r.startswith("temperature") for r in reasons) and reasons[0].startswith("cycles = 9")


def test_too_little_history_and_missing_columns_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_REFERENCE_ROWS}"):
        AnomalyDetector().fit(normal_table(MIN_REFERENCE_ROWS - 1, 5))
    detector = AnomalyDetector().fit(normal_table(200, 5))
    with pytest.raises(ValueError, match="lack the reference columns cycles"):
        detector.score(pd.DataFrame({"temperature": [1.0], "yield": [1.0]}))
    with pytest.raises(ValueError, match="false_alarm_budget"):
        AnomalyDetector(false_alarm_budget=0.7)
    assert detector.score(normal_table(0, 5)).score.shape == (0,)


def test_consistency_features_by_hand() -> None:
    features = compute_features(generate_samples(3, seed=1), generate_samples(3, seed=1), as_of=None).reset_index()
    features.loc[0, ["storage_temp_deviation_c", "max_temp_deviation_c", "temp_excursion_rate_per_day"]] = [-6.0, 1.0, 0.0]
    features.loc[1, ["storage_temp_deviation_c", "max_temp_deviation_c", "temp_excursion_rate_per_day"]] = [0.5, 12.0, 0.0]
    features.loc[2, ["storage_temp_deviation_c", "max_temp_deviation_c", "temp_excursion_rate_per_day"]] = [0.5, 12.0, 0.2]
    frame = sample_detector_frame(features)
    assert frame["deviation_beyond_record_c"].tolist() == [5.0, -11.5, -11.5]
    assert frame["deviation_without_excursion_c"].tolist() == [-5.0, 11.5, 0.0]
    assert "operator_history_count" not in frame.columns and "weekday_received" not in frame.columns
    with pytest.raises(ValueError, match="sample features lack purity_score"):
        sample_detector_frame(features.drop(columns=["purity_score"]))


def test_empty_scores_have_every_anomalies_column() -> None:
    frame = empty_scores()
    assert list(frame.columns) == ["kind", "entity", "ts", "score", "threshold", "is_anomaly", "reasons", "project_id", "site"]
    assert frame.empty and str(frame["ts"].dtype) == "datetime64[ns, UTC]"


def test_split_reference_is_before_and_at_or_after() -> None:
    frame = pd.DataFrame({"ts": pd.to_datetime(["2026-01-01", "2026-01-05", "2026-01-06"], utc=True), "v": [1, 2, 3]})
    before, after = split_reference(frame, "ts", pd.Timestamp("2026-01-05", tz="UTC"))
    assert before["v"].tolist() == [1] and after["v"].tolist() == [2, 3]


SINCE = DEFAULT_START + pd.Timedelta(days=SPAN_DAYS - 7)


@pytest.fixture(scope="module")
def injected():
    return inject_anomalies(generate_samples(15000, seed=4), since=SINCE, share=0.04, failing_freezers=1, failing_days=4, seed=4)


def test_injections_change_the_documented_columns_and_keep_the_contract(injected) -> None:
    samples, kind = injected.samples, injected.sample_kind
    original = generate_samples(15000, seed=4)
    assert set(kind.dropna()) == {SENSOR_GLITCH, IMPOSSIBLE_COMBINATION, FREEZER_FAILING}
    assert (
        pd.to_datetime(samples.loc[kind.isin([SENSOR_GLITCH, IMPOSSIBLE_COMBINATION]).fillna(False), "received_ts"], utc=True)
        >= SINCE
    ).all()
    untouched = kind.isna()
    pd.testing.assert_frame_equal(samples[untouched], original[untouched])
    touched = ~untouched
    changed = [c for c in original.columns if not samples.loc[touched, c].equals(original.loc[touched, c])]
    assert set(changed) <= {"storage_temp_c", "concentration_ng_ul", "temp_excursions", "max_temp_deviation_c"}
    assert samples["storage_temp_c"].between(-200, 40).all() and (samples["temp_excursions"] >= 0).all()
    assert (samples["max_temp_deviation_c"] >= 0).all() and (samples["concentration_ng_ul"] >= 0).all()
    assert len(injected.failing_days) == 4 and injected.failing_days["freezer_id"].nunique() == 1


def test_a_failing_freezer_warms_day_by_day() -> None:
    samples = pd.DataFrame(
        {
            "sample_type": ["DNA"] * 4,
            "received_ts": pd.to_datetime(
                ["2026-03-01 10:00", "2026-03-02 10:00", "2026-03-04 10:00", "2026-03-02 11:00"], utc=True
            ),
            "storage_location": ["FRZ-07/R1/B1/A1", "FRZ-07/R1/B1/A2", "FRZ-07/R1/B1/A3", "FRZ-08/R1/B1/A1"],
            "storage_temp_c": [-20.0] * 4,
            "temp_excursions": pd.array([0] * 4, dtype="Int64"),
            "max_temp_deviation_c": [0.2] * 4,
        }
    )
    rows = inject_freezer_failing(samples, "FRZ-07", pd.Timestamp("2026-03-01", tz="UTC"), days=4)
    assert rows.tolist() == [0, 1, 2]
    assert samples["storage_temp_c"].tolist() == [-12.0, pytest.approx(-4.7), pytest.approx(10.0), -20.0]
    assert (samples.loc[:2, "temp_excursions"] >= 2).all() and samples.loc[3, "temp_excursions"] == 0


def test_generated_lab_meets_the_goal_on_samples_and_finds_the_failing_freezer(injected) -> None:
    samples, kind = injected.samples, injected.sample_kind
    features = compute_features(samples, samples, as_of=None).reset_index()
    scored = score_samples(features, samples, since=SINCE).set_index("entity")
    truth = kind.set_axis(samples["sample_id"]).reindex(scored.index)
    sample_kinds = truth.isin([SENSOR_GLITCH, IMPOSSIBLE_COMBINATION]).fillna(False)
    assert scored.loc[sample_kinds, "is_anomaly"].mean() >= 0.8
    assert scored.loc[truth.isna(), "is_anomaly"].mean() <= 0.02
    flagged = scored[scored["is_anomaly"]]
    assert flagged["reasons"].str.len().gt(0).all() and (scored["kind"] == "sample").all()

    days = freezer_days(samples)
    day_scores = score_freezer_days(days[days["day"] < DEFAULT_START + pd.Timedelta(days=SPAN_DAYS)], since=SINCE)
    failing = day_scores.merge(
        injected.failing_days.rename(columns={"day": "ts"}).assign(fail=True),
        left_on=["entity", "ts"],
        right_on=["freezer_id", "ts"],
        how="left",
    )
    assert failing.loc[failing["fail"].notna(), "is_anomaly"].mean() >= 0.5


def test_alert_sources() -> None:
    anomalies = pd.DataFrame(
        {
            "kind": ["sample", "sample", "freezer_day"],
            "entity": ["TS-2026-000001", "TS-2026-000002", "FRZ-03"],
            "ts": pd.to_datetime(["2026-12-01 10:00", "2026-12-01 11:00", "2026-12-01 00:00"], utc=True),
            "score": [1.7, 0.5, 2.4],
            "is_anomaly": [True, False, True],
            "reasons": ["storage_temp_deviation_c = -95", "", "mean_storage_deviation_c = 21"],
        }
    )
    alerts = anomaly_alerts(anomalies)
    assert [a.subject for a in alerts] == [
        "Unusual freezer day FRZ-03 (2026-12-01)",
        "Unusual sample TS-2026-000001 (2026-12-01T10:00:00+00:00)",
    ]
    assert alerts[1].message.endswith("storage_temp_deviation_c = -95")
    assert anomaly_alerts(anomalies)[0].key == alerts[0].key  # collected again: the same key

    state = pd.DataFrame(
        {
            "freezer_id": ["FRZ-01", "FRZ-02", "FRZ-03"],
            "excursion_risk_30d": [0.2, 0.55, np.nan],
            "as_of": pd.to_datetime(["2026-12-06"] * 3, utc=True),
        }
    )
    [risk] = freezer_risk_alerts(state, bound=0.5)
    assert risk.kind == "freezer_risk" and "FRZ-02" in risk.subject and "55%" in risk.subject
    assert freezer_risk_alerts(state.drop(columns=["excursion_risk_30d"])) == []

    failed = check_failure_alert(
        asset="validated_samples",
        check="accepted_rows_meet_contract",
        partition="abc",
        run_id="r1",
        description=None,
        drift=False,
    )
    assert failed.kind == "check_failed" and failed.severity == "critical" and "validated_samples[abc]" in failed.subject
    drift = check_failure_alert(
        asset="feature_drift_report", check="x", partition="sample_quality", run_id="r2", description="PSI 0.4", drift=True
    )
    assert drift.kind == "drift" and drift.message == "PSI 0.4" and drift.key != failed.key
