"""A registered AutoML ensemble served and explained like any model: its answers are its members'
probabilities weighted, its risk factors its members' contributions (in probability) weighted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from ensemble_support import ensemble_bundle, fitted_ensemble
from serving_support import recent_samples, request_records
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from tracseq_dagster.automl.ensemble import WeightedEnsemble
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.features import FEATURE_NAMES
from tracseq_dagster.serving import columnar
from tracseq_dagster.serving.advice import top_risk_factors
from tracseq_dagster.serving.ensemble_scoring import EnsembleScorer, scorer_description
from tracseq_dagster.serving.model_scoring import model_scorer
from tracseq_dagster.serving.predictor import SampleQualityPredictor
from tracseq_dagster.serving.scoring import PASS, ModelScorer


@pytest.fixture(scope="module")
def trained() -> dict:  # type: ignore[type-arg]
    return fitted_ensemble()


def _independent_contributions(model: LabelDecodingClassifier, x: pd.DataFrame, reference: dict) -> np.ndarray:  # type: ignore[type-arg]
    """The members' contributions toward ``pass`` weighted, each converted to probability here:
    a log-odds member's contributions c (sum s) take their shares of p − σ(logit p − s)."""
    ensemble = model.estimator_
    total = np.zeros((len(x), len(FEATURE_NAMES)))
    for member, weight in zip(ensemble.members, ensemble.weights, strict=True):
        scorer = ModelScorer(LabelDecodingClassifier.from_fitted(member, model.classes_), FEATURE_NAMES, reference, PASS)
        scores = scorer.score(x)
        c = scores.contributions
        if scorer.units == "log-odds":
            p = scores.values
            s = c.sum(axis=1)
            p0 = 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) - s)))
            converted = c * ((p - p0) / s)[:, None]
            # the converted contributions add up to the member's move in probability
            np.testing.assert_allclose(converted.sum(axis=1), p - p0, atol=1e-12)
            c = converted
        else:
            assert scorer.units == "probability"
        total += weight / sum(ensemble.weights) * c
    return total


def test_ensemble_risk_factors_are_its_members_weighted(trained) -> None:  # type: ignore[no-untyped-def]
    model, reference = trained["model"], trained["reference"]
    x = trained["features"][list(FEATURE_NAMES)].head(300)
    scorer = EnsembleScorer(model, FEATURE_NAMES, reference, PASS)
    assert [m.method for m in scorer.members] == ["linear", "tree_path", "tree_path"]
    assert [m.units for m in scorer.members] == ["log-odds", "log-odds", "probability"]
    scores = scorer.score(x)
    assert scores.method == "ensemble" and scores.classes == tuple(model.classes_)
    # The value is the ensemble's own answer ...
    np.testing.assert_allclose(scores.probabilities, model.predict_proba(x), atol=1e-9)
    np.testing.assert_allclose(scores.values, model.predict_proba(x)[:, list(model.classes_).index(PASS)], atol=1e-9)
    # ... and the contributions its members', weighted, in probability.
    expected = _independent_contributions(model, x, reference)
    np.testing.assert_allclose(scores.contributions, expected, atol=1e-9)
    ours, ours_values = top_risk_factors(scores.contributions)
    theirs, theirs_values = top_risk_factors(expected)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours_values, theirs_values, equal_nan=True)
    assert (ours[:, 0] >= 0).sum() > 50  # most rows have a risk factor: the comparison is not vacuous
    # Not merely the first member's: the weighting matters.
    first = EnsembleScorer(model, FEATURE_NAMES, reference, PASS).members[0].score(x).contributions
    assert not np.allclose(scores.contributions, first)


def test_the_catalog_seam_scores_an_ensemble_through_its_members(trained) -> None:  # type: ignore[no-untyped-def]
    model, reference = trained["model"], trained["reference"]
    x = trained["features"][list(FEATURE_NAMES)].head(40)
    catalog = model_scorer(model, FEATURE_NAMES, reference, PASS)
    assert catalog.method == "ensemble" and not catalog.regression
    described = scorer_description(catalog)  # what the catalog's GET /models/{name} shows of a variant
    assert described["attribution"] == "ensemble" and [m["weight"] for m in described["members"]] == [0.5, 0.3, 0.2]
    scores = catalog.score(x)
    direct = EnsembleScorer(model, FEATURE_NAMES, reference, PASS).score(x)
    np.testing.assert_allclose(scores.contributions, direct.contributions)
    assert scores.probabilities is not None
    np.testing.assert_allclose(scores.probabilities, model.predict_proba(x), atol=1e-9)


def test_a_regression_ensemble_adds_up_to_its_prediction(trained) -> None:  # type: ignore[no-untyped-def]
    """Members in prediction units (here occlusion through two plain pipelines) are weighted as they are."""
    x = trained["features"][list(FEATURE_NAMES)].head(500)
    numeric = [n for n in FEATURE_NAMES if pd.api.types.is_numeric_dtype(x[n])][:4]
    y = x[numeric].fillna(0.0).to_numpy() @ np.array([1.0, -2.0, 0.5, 3.0])
    members = [make_pipeline(ColumnTransformer([("n", SimpleImputer(), numeric)]), Ridge(alpha=a)).fit(x, y) for a in (0.1, 1e4)]
    ensemble = WeightedEnsemble(members, [3.0, 1.0], "regression")  # normalised: 0.75, 0.25
    scorer = EnsembleScorer(ensemble, FEATURE_NAMES, trained["reference"], None)
    assert scorer.units == "prediction"
    scores = scorer.score(x.head(30))
    np.testing.assert_allclose(scores.values, ensemble.predict(x.head(30)))
    each = [ModelScorer(m, FEATURE_NAMES, trained["reference"], None).score(x.head(30)).contributions for m in members]
    np.testing.assert_allclose(scores.contributions, 0.75 * each[0] + 0.25 * each[1])
    assert np.abs(scores.contributions[:, [FEATURE_NAMES.index(n) for n in numeric]]).sum() > 0


def _bundle(folder: Path, trained: dict) -> Path:  # type: ignore[type-arg]
    return ensemble_bundle(folder, trained)[0]


def test_a_served_ensemble_answers_with_risk_factors_and_recommendations(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    predictor = SampleQualityPredictor(_bundle(tmp_path / "bundle", trained))
    assert predictor.variants["champion"].scorer.method == "ensemble"
    champion = predictor.model_info()["variants"]["champion"]
    assert champion["family"] == "ensemble" and champion["attribution"] == "ensemble"
    assert champion["members"] == [
        {"estimator": "LogisticRegression", "weight": 0.5, "attribution": "linear"},
        {"estimator": "LGBMClassifier", "weight": 0.3, "attribution": "tree_path"},
        {"estimator": "RandomForestClassifier", "weight": 0.2, "attribution": "tree_path"},
    ]
    requests = recent_samples(60, seed=99, id_offset=900_000)
    answers = predictor.predict(request_records(requests))
    assert len(answers) == 60
    explained = [a.response for a in answers if a.response["risk_factors"]]
    assert len(explained) >= 10
    for response in (a.response for a in answers):
        assert response["attribution"] == "ensemble"
        assert abs(sum(response["class_probabilities"].values()) - 1.0) < 1e-5
        assert response["quality_probability"] == pytest.approx(response["class_probabilities"][PASS], abs=1e-6)
        contributions = [f["contribution"] for f in response["risk_factors"]]
        assert all(c < 0 for c in contributions) and contributions == sorted(contributions)
    assert any(r["recommendations"] for r in explained)


def test_batch_and_columnar_answers_of_an_ensemble_equal_its_single_answers(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """/batch_predict (many records in one call) and the columnar route answer an ensemble as /predict does."""
    predictor = SampleQualityPredictor(_bundle(tmp_path / "bundle", trained))
    samples = recent_samples(80, seed=31, id_offset=700_000)
    records = request_records(samples)
    # after every sample's receipt: one moment for a record alone and for the batch (else "now" is its latest receipt)
    received = pd.to_datetime(samples["received_ts"], utc=True).max()
    moment = max(predictor.history.cutoff, received) + pd.Timedelta(hours=1)
    batch = [a.response for a in predictor.predict(records, as_of=moment)]
    singles = [predictor.predict([r], as_of=moment)[0].response for r in records[:10]]
    for one, many in zip(singles, batch, strict=False):
        assert one["class_probabilities"] == pytest.approx(many["class_probabilities"], abs=1e-9)
        assert one["risk_factors"] == many["risk_factors"] and one["recommendations"] == many["recommendations"]
    valid = columnar.validate_table(pa.Table.from_pylist(records))
    table = predictor.predict_table(valid, as_of=moment).table("b").to_pylist()
    assert len(table) == len(batch) and {row["attribution"] for row in table} == {"ensemble"}
    for row, want in zip(table, batch, strict=True):
        assert row["quality_probability"] == pytest.approx(want["quality_probability"], abs=1e-6)
        factors = [(row[f"risk_factor_{i}"], row[f"risk_contribution_{i}"]) for i in range(1, 6) if row[f"risk_factor_{i}"]]
        assert factors == [(f["feature"], pytest.approx(f["contribution"], abs=1e-6)) for f in want["risk_factors"]]
