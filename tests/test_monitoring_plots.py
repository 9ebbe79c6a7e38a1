"""Monitoring plots and the A/B bootstrap: the drift histograms and the A/B figure as PNGs, in the
assets' metadata and in MLflow; scipy's bootstrap giving the interval a known case must give."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster_helpers import latest_materialization
from mlflow import MlflowClient
from PIL import Image
from prediction_log_helpers import prediction_rows
from sklearn.metrics import roc_auc_score

from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.features import compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import Lake
from tracseq_dagster.monitoring.ab_report import (
    ABReport,
    ABSettings,
    _auc,
    _auc_many,
    _hit_rate,
    _interval,
    _mae,
    _paired_gain,
    bootstrap,
)
from tracseq_dagster.monitoring.drift import MISSING, feature_drift
from tracseq_dagster.monitoring.plots import ab_figure, drift_figure
from tracseq_dagster.plots import markdown_image, png_bytes
from tracseq_dagster.serving.prediction_log import open_prediction_log
from tracseq_dagster.tracking import PARENT_TAG

PNG_MARKDOWN = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def decoded_png(markdown: str) -> Image.Image:
    """The image a Markdown metadata value embeds (fails unless it is one data: PNG)."""
    match = PNG_MARKDOWN.fullmatch(markdown)
    assert match, markdown[:80]
    image = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
    assert image.format == "PNG"
    return image


# -- the bootstrap --------------------------------------------------------------------------


def test_bootstrap_interval_of_a_proportion_matches_the_normal_approximation() -> None:
    """A hit rate of 0.3 on 4,000 rows: the 95 % interval is 0.3 ± 1.96·sqrt(0.3·0.7/4000) = ± 0.0142."""
    hits = np.zeros(4000)
    hits[:1200] = 1.0
    replicates = bootstrap(_hit_rate, hits, hits, hits, ABSettings(bootstrap=2000, seed=1))
    low, high = _interval(replicates, 0.95)
    half = 1.96 * np.sqrt(0.3 * 0.7 / 4000)
    assert low == pytest.approx(0.3 - half, abs=0.002) and high == pytest.approx(0.3 + half, abs=0.002)
    # Same seed, same resamples: the report is reproducible.
    assert np.array_equal(replicates, bootstrap(_hit_rate, hits, hits, hits, ABSettings(bootstrap=2000, seed=1)))


def test_vectorised_auc_equals_scikit_learn_with_ties_and_is_undefined_for_one_class() -> None:
    rng = np.random.default_rng(3)
    outcome = (rng.uniform(size=(5, 300)) < 0.4).astype(float)
    score = np.round(rng.uniform(size=(5, 300)), 1)  # many ties
    many = _auc_many(outcome, score, outcome)
    assert np.allclose(many, [roc_auc_score(o, s) for o, s in zip(outcome, score)], atol=1e-12)
    assert np.isnan(_auc_many(np.ones((1, 10)), score[:1, :10], np.ones((1, 10))))[0]
    # Replicates of an AUC on a sample with one positive: most resamples miss it, so no interval.
    one = np.zeros(50)
    one[0] = 1.0
    replicates = bootstrap(_auc, one, rng.uniform(size=50), one, ABSettings(bootstrap=200))
    assert np.isnan(replicates).mean() > 0.2 and _interval(replicates, 0.95) == (None, None)


def test_paired_gain_bootstrap_is_centred_on_the_known_difference() -> None:
    """Challenger's answers are the champion's minus 1 on every row: its MAE is lower by exactly 1 (when above)."""
    rng = np.random.default_rng(5)
    outcome = rng.normal(0, 1, 500)
    champion = outcome + 3.0 + rng.normal(0, 0.1, 500)
    both = np.column_stack([champion, champion - 1.0])
    replicates = bootstrap(_paired_gain(_mae), outcome, both, outcome, ABSettings(bootstrap=300))
    assert np.allclose(replicates, -1.0)


# -- the figures ------------------------------------------------------------------------------


def test_drift_figure_draws_the_psi_bins_of_the_most_shifted_features() -> None:
    samples = generate_samples(1200, seed=11)
    features = compute_features(samples, samples, as_of=None).reset_index()
    reference, current = features.iloc[:800], features.iloc[800:]
    shifted = current.assign(storage_temp_deviation_c=current["storage_temp_deviation_c"] + 20.0, integrity_score=np.nan)
    report = feature_drift(reference, shifted)
    by_name = {h.feature: h for h in report.histograms}
    assert set(by_name) == {f.feature for f in report.features}
    temperature = by_name["storage_temp_deviation_c"]
    assert sum(temperature.reference) == 800 and sum(temperature.current) == 400
    assert temperature.current[-2] == 400  # every shifted value above the reference's last decile
    assert by_name["integrity_score"].bins[-1] == MISSING and by_name["integrity_score"].current[-1] == 400
    assert "histograms" not in report.to_dict()  # the JSON report is as it was

    image = decoded_png(markdown_image(drift_figure(report), "drift"))
    assert image.width >= 600 and image.height >= 300
    assert 10_000 < len(png_bytes(drift_figure(report))) < 150_000  # tens of kB for metadata
    empty = drift_figure(feature_drift(reference, current.head(0), features=()))
    assert decoded_png(markdown_image(empty, "none")).width > 0


def test_ab_figure_with_and_without_labelled_metrics() -> None:
    histogram = pd.DataFrame({"p_pass": ["0-0.5", "0.5-1"], "challenger": [10, 30], "champion": [25, 15]})
    labelled = pd.DataFrame(
        {
            "variant": ["challenger", "champion"],
            "labelled": [40, 40],
            "roc_auc": [0.82, 0.74],
            "roc_auc_low": [0.75, 0.66],
            "roc_auc_high": [0.88, 0.81],
            "brier": [0.15, 0.19],
            "brier_low": [None, 0.15],
            "brier_high": [None, 0.23],
        }
    )
    differences = pd.DataFrame(
        [{"metric": "roc_auc", "challenger_minus_champion": 0.08, "low": 0.01, "high": 0.15, "significant": True}]
    )
    report = ABReport("sample_quality", "classification", 80, pd.DataFrame(), histogram, labelled, differences, None, [])
    with_metrics = decoded_png(markdown_image(ab_figure(report), "ab"))
    bare = ABReport(
        "sample_quality", "classification", 0, pd.DataFrame(), histogram[["p_pass"]], pd.DataFrame(), pd.DataFrame(), None, []
    )
    without = decoded_png(markdown_image(ab_figure(bare), "ab"))
    assert with_metrics.height > without.height  # a second row of per-metric interval panels


# -- the assets ------------------------------------------------------------------------------


@dataclass
class Lab:
    """A lake with labelled samples, a prediction log of both variants and an MLflow store: enough for both
    reports (the A/B report's metrics need labels, not registered versions)."""

    lake: Lake
    log_dir: Path
    tracking_uri: str
    optuna_storage: str


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("monitoring-plots")
    lake = Lake(root / "lake")
    samples = generate_samples(1500, seed=8)
    lake.write_table(lake.validated_path("export-a"), samples)
    lake.write_record("export-a", "a.csv", len(samples))
    features = compute_features(samples, samples, as_of=None).reset_index()
    lake.write_table(lake.features_path, features)
    served = features.sample(400, random_state=1).reset_index(drop=True)
    rng = np.random.default_rng(2)
    rows = prediction_rows(
        served.assign(storage_temp_deviation_c=served["storage_temp_deviation_c"] + 20.0),
        start=pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1),
        variant=["champion" if i % 2 else "challenger" for i in range(len(served))],
        model_version=[None] * len(served),  # versions this registry does not hold: the report re-scores nothing
        probability=rng.uniform(size=len(served)),
        status=rng.choice(["pass", "fail"], size=len(served)),
    )
    open_prediction_log(str(root / "log")).append(rows)
    return Lab(lake, root / "log", f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}")


def _run(lab: Lab, instance: dg.DagsterInstance, tracking_uri: str) -> dg.ExecuteInProcessResult:
    definitions = build_definitions(
        lake_dir=str(lab.lake.root),
        mlflow_tracking_uri=tracking_uri,
        optuna_storage=lab.optuna_storage,
        prediction_log_url=str(lab.log_dir),
    )
    return definitions.resolve_job_def("monitoring_reports").execute_in_process(
        instance=instance, partition_key="sample_quality", raise_on_error=False,
        run_config={"ops": {"ab_test_report": {"config": {"bootstrap": 100}}}},
    )  # fmt: skip


@pytest.mark.slow
def test_monitoring_assets_show_their_plots_and_log_them_to_mlflow(
    lab: Lab, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    assert _run(lab, sqlite_instance, lab.tracking_uri).success
    drift = latest_materialization(sqlite_instance, "feature_drift_report", "sample_quality").metadata
    ab = latest_materialization(sqlite_instance, "ab_test_report", "sample_quality").metadata
    assert drift["verdict"].value == "drift" and ab["labelled_predictions"].value > 100
    assert decoded_png(drift["histograms"].value).width > 0 and decoded_png(ab["plot"].value).width > 0

    client = MlflowClient(lab.tracking_uri)
    for metadata, artifact in ((drift, "plots/feature_drift.png"), (ab, "plots/ab_test_report.png")):
        run = client.get_run(metadata["mlflow_run_id"].value)
        assert run.data.tags["model"] == "sample_quality" and run.data.tags[PARENT_TAG]
        assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == [artifact]
        with Image.open(client.download_artifacts(run.info.run_id, artifact, str(tmp_path))) as image:
            assert image.format == "PNG"


@pytest.mark.slow
def test_the_plots_stay_in_the_metadata_when_mlflow_is_down(
    lab: Lab, sqlite_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    result = _run(lab, sqlite_instance, "http://127.0.0.1:9/")  # nothing listens on the discard port
    drift = latest_materialization(sqlite_instance, "feature_drift_report", "sample_quality").metadata
    assert drift["mlflow_run_id"].value == "not logged" and drift["predictions"].value == 400
    assert decoded_png(drift["histograms"].value).width > 0
    assert any("not logged to MLflow" in entry.user_message for entry in sqlite_instance.all_logs(result.run_id))
