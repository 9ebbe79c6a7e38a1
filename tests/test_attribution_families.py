"""Risk factors of every family and every kind of catalog model: exact, cheap, signed like occlusion.

For the three catalog models (sample_quality: multiclass toward ``pass``; sequencing_success:
binary toward ``pass``; turnaround_hours: regression) and each of the six AutoML families, a
small model is fitted on generated data through the families' own pipelines, and
:class:`ModelScorer` is checked against the model itself:

* exact methods (linear, tree paths) add up with the scorer's bias to the model's own raw
  output, computed here from the estimator's public answers (decision function, averaged
  probabilities, raw scores, predictions), row by row;
* on the strongest effects (the largest 5% of occlusion's), the signs agree with occlusion
  computed here by hand (linear models: on every row's strongest features);
* every family passes each row through the model at most once (counted on the estimator's
  prediction entry points): the MLP's occlusion is computed from its weights;
* the numpy input path equals the pipeline's (missing numbers, unseen categories included);
* a zero contribution is never a risk factor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import LabelEncoder

from tracseq_dagster.automl.families import FAMILIES
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.automl.preprocessing import prepare_features
from tracseq_dagster.features import FEATURE_NAMES, compute_features, feature_columns
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.models import sequencing_success, turnaround_hours
from tracseq_dagster.models.spec import HOLDOUT_GROUP
from tracseq_dagster.run_generator import generate_runs
from tracseq_dagster.serving.advice import risk_factors, top_risk_factors
from tracseq_dagster.serving.scoring import ModelScorer, QualityScorer, reference_values

#: Small, fixed configurations: the tests are about attributions, not model quality.
PARAMS: dict[str, dict[str, Any]] = {
    "logistic": {"C": 1.0},
    "random_forest": {"n_estimators": 40, "max_depth": 8, "min_samples_leaf": 3, "max_features": 0.5, "bootstrap": True},
    "gradient_boosting": {
        "learning_rate": 0.1,
        "max_iter": 40,
        "max_leaf_nodes": 16,
        "min_samples_leaf": 10,
        "l2_regularization": 1e-3,
        "max_features": 1.0,
    },  # fmt: skip
    "xgboost": {
        "n_estimators": 40,
        "learning_rate": 0.1,
        "max_depth": 4,
        "min_child_weight": 1.0,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "reg_lambda": 1.0,
        "reg_alpha": 0.01,
    },  # fmt: skip
    "lightgbm": {
        "n_estimators": 40,
        "learning_rate": 0.1,
        "num_leaves": 16,
        "min_child_samples": 10,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "reg_lambda": 1.0,
    },  # fmt: skip
    "mlp": {"hidden_layer_sizes": (16,), "alpha": 1e-3, "learning_rate_init": 1e-3, "batch_size": 64},
}
FAMILY_NAMES = tuple(PARAMS)
#: The method each family is explained with.
METHOD = {"logistic": "linear", "random_forest": "tree_path", "gradient_boosting": "tree_path", "xgboost": "tree_path",
          "lightgbm": "tree_path", "mlp": "occlusion"}  # fmt: skip
#: (label, task, target class) per catalog model.
MODELS = {"sample_quality": ("qc_status", "multiclass", "pass"), "sequencing_success": ("run_status", "binary", "pass"),
          "turnaround_hours": ("turnaround_hours", "regression", None)}  # fmt: skip
SCORED_ROWS = 300


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """Each catalog model's labelled rows (features, then label) from one generated lab."""
    samples = generate_samples(1500, seed=3)
    runs = generate_runs(samples, seed=3)
    features = compute_features(samples, samples, as_of=None)
    quality = features[features["qc_status"].notna()][[*FEATURE_NAMES, "qc_status"]]
    return {"sample_quality": quality,
            "sequencing_success": sequencing_success.labelled_rows_from_exports(samples, runs).drop(columns=[HOLDOUT_GROUP]),
            "turnaround_hours": turnaround_hours.labelled_rows_from_exports(samples, runs)}  # fmt: skip


_MODELS: dict[tuple[str, str], Any] = {}


def fitted(frames: dict[str, pd.DataFrame], name: str, family: str) -> tuple[Any, list[str], pd.DataFrame]:
    """The family's pipeline for the catalog model, fitted as the engine fits it (a decoder around classifiers)."""
    label, task, _ = MODELS[name]
    frame = frames[name]
    names = [c for c in frame.columns if c != label]
    if (name, family) not in _MODELS:
        x, columns = prepare_features(frame.drop(columns=[label]), label)
        params = {"alpha": 1.0} if family == "logistic" and task == "regression" else PARAMS[family]
        pipeline = FAMILIES[family].build(params, task, columns, seed=0, balance=False)
        if task == "regression":
            model: Any = pipeline.fit(x, frame[label].to_numpy(dtype=float))
        else:
            y = frame[label].astype(str).to_numpy()
            encoder = LabelEncoder().fit(y)
            model = LabelDecodingClassifier.from_fitted(pipeline.fit(x, encoder.transform(y)), encoder.classes_)
        _MODELS[(name, family)] = model
    return _MODELS[(name, family)], names, frame


def scorer_of(frames: dict[str, pd.DataFrame], name: str, family: str) -> tuple[ModelScorer, pd.DataFrame]:
    model, names, frame = fitted(frames, name, family)
    scorer = ModelScorer(model, names, reference_values(frame, names), MODELS[name][2])
    return scorer, frame[names].iloc[:SCORED_ROWS]


def raw_output(scorer: ModelScorer, x: pd.DataFrame) -> np.ndarray:
    """The model's own output that exact contributions explain, from the estimator's own answers."""
    pipeline = getattr(scorer.model, "estimator_", scorer.model)
    matrix = pipeline[:-1].transform(x)
    estimator = pipeline.steps[-1][1]
    target = None if scorer.target is None else scorer.classes.index(scorer.target)
    family = type(estimator).__name__
    if target is None:
        if family == "LGBMRegressor":
            return estimator.booster_.predict(matrix, raw_score=True)
        return estimator.predict(matrix)
    if family == "RandomForestClassifier":
        return estimator.predict_proba(matrix)[:, target]
    if family == "LogisticRegression":
        z = np.atleast_2d(estimator.decision_function(matrix).T).T
        if z.shape[1] == 1:
            return z[:, 0] if target == 1 else -z[:, 0]
        others = np.arange(z.shape[1]) != target
        return z[:, target] - z[:, others].mean(axis=1)
    if family.startswith("HistGradientBoosting"):
        raw = estimator._raw_predict(matrix)
    elif family.startswith("XGB"):
        raw = estimator.predict(matrix, output_margin=True).reshape(len(matrix), -1)
    else:
        raw = np.asarray(estimator.booster_.predict(matrix, raw_score=True)).reshape(len(matrix), -1)
    return raw[:, target] if raw.shape[1] > 1 else (raw[:, 0] if target == 1 else -raw[:, 0])


def occlusion_by_hand(scorer: ModelScorer, x: pd.DataFrame) -> np.ndarray:
    """Value minus the value with one feature at its reference, feature by feature."""

    def value(frame: pd.DataFrame) -> np.ndarray:
        if scorer.target is None:
            return np.asarray(scorer.model.predict(frame), dtype=float)
        return scorer.model.predict_proba(frame)[:, scorer.classes.index(scorer.target)]

    base = value(x)
    out = np.zeros((len(x), len(scorer.feature_names)))
    for j, name in enumerate(scorer.feature_names):
        reference = scorer.reference[name]
        out[:, j] = base - value(x.assign(**{name: np.nan if reference is None else reference}))
    return out


CASES = [(name, family) for name in MODELS for family in FAMILY_NAMES]


@pytest.mark.parametrize(("name", "family"), CASES)
def test_contributions_add_up_to_the_models_own_output(frames, name: str, family: str) -> None:  # type: ignore[no-untyped-def]
    scorer, x = scorer_of(frames, name, family)
    scores = scorer.score(x)
    assert scorer.method == METHOD[family] and scores.method == METHOD[family]
    assert scores.contributions.shape == (len(x), len(scorer.feature_names))
    # XGBoost answers in float32 (the scorer sums the same leaves in float64); the others in float64
    tolerance = 1e-5 if family == "xgboost" else 1e-9
    if scorer.target is None:
        np.testing.assert_allclose(scores.values, scorer.model.predict(x), rtol=tolerance, atol=tolerance)
    else:
        np.testing.assert_allclose(scores.probabilities, scorer.model.predict_proba(x), rtol=tolerance, atol=tolerance)
    if family == "mlp":
        assert scorer.bias is None  # occlusion does not add up
        return
    assert scorer.bias is not None
    np.testing.assert_allclose(
        scores.contributions.sum(axis=1) + scorer.bias, raw_output(scorer, x), rtol=tolerance * 10, atol=tolerance * 10
    )
    assert np.abs(scores.contributions).sum() > 0


@pytest.mark.parametrize(("name", "family"), CASES)
def test_signs_agree_with_occlusion_on_the_strongest_effects(frames, name: str, family: str) -> None:  # type: ignore[no-untyped-def]
    scorer, x = scorer_of(frames, name, family)
    x = x.iloc[:150]
    exact = scorer.score(x).contributions
    occluded = occlusion_by_hand(scorer, x)
    if family == "mlp":  # occlusion is the method: the same numbers
        np.testing.assert_allclose(exact, occluded, atol=1e-12)
        return
    strong = np.abs(occluded) >= np.quantile(np.abs(occluded), 0.95)
    agree = (np.sign(exact) == np.sign(occluded))[strong].mean()
    assert agree >= (0.99 if family == "logistic" else 0.8), agree
    if family == "logistic":
        # Against the reference, a linear model's contribution is occlusion in its own output: the
        # same sign whenever the effect is not negligible (multiclass: log-odds against the others).
        top = np.argsort(-np.abs(exact), axis=1)[:, :3]
        a, b = np.take_along_axis(exact, top, axis=1), np.take_along_axis(occluded, top, axis=1)
        material = np.abs(b) > 1e-6
        assert (np.sign(a) == np.sign(b))[material].mean() >= (0.99 if MODELS[name][1] == "multiclass" else 1.0)


def _count_rows(target: Any, method: str, seen: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    if hasattr(target, method):
        original = getattr(target, method)

        def counted(data: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(len(data))
            return original(data, *args, **kwargs)

        monkeypatch.setattr(target, method, counted)


@pytest.mark.parametrize(("name", "family"), CASES)
def test_exact_methods_pass_each_row_through_the_model_at_most_once(frames, name: str, family: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Rows evaluated by the model's prediction entry points, once the one-time checks are done."""
    scorer, x = scorer_of(frames, name, family)
    scorer.score(x)  # the one-time checks (at most CHECKED_ROWS rows) happen here
    seen: list[int] = []
    estimator = getattr(scorer.model, "estimator_", scorer.model).steps[-1][1]  # innermost: every path ends here
    for method in ("predict", "predict_proba", "decision_function", "apply", "_raw_predict", "_preprocess_X"):
        _count_rows(estimator, method, seen, monkeypatch)
    booster = getattr(estimator, "booster_", None)
    if booster is not None:
        _count_rows(booster, "predict", seen, monkeypatch)
    scorer.score(x)
    # tree paths: one walk for the leaves at most (none with the compiled kernels); linear and
    # the MLP's occlusion (from its weights): none at all
    assert sum(seen) <= len(x), seen


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_numpy_input_equals_the_pipelines_with_missing_numbers_and_unseen_categories(frames, family: str) -> None:  # type: ignore[no-untyped-def]
    scorer, x = scorer_of(frames, "sequencing_success", family)
    odd = x.iloc[:40].copy()
    numeric = [c for c in odd.columns if pd.api.types.is_numeric_dtype(odd[c])]
    categorical = [c for c in odd.columns if c not in numeric]
    odd.loc[odd.index[::3], numeric[:6]] = np.nan
    for column in categorical:
        odd[column] = odd[column].astype(object)
        odd.loc[odd.index[1::4], column] = "never-seen"
        odd.loc[odd.index[2::5], column] = None
    scores = scorer.score(odd)
    if family != "mlp":
        assert scorer._fast_input is not None and scorer._fast_input.checked  # agreed with the pipeline
    tolerance = 1e-5 if family == "xgboost" else 1e-9  # XGBoost answers in float32
    np.testing.assert_allclose(scores.values, scorer.model.predict_proba(odd)[:, 1], rtol=tolerance, atol=tolerance)
    if scorer.bias is not None:
        np.testing.assert_allclose(scores.contributions.sum(axis=1) + scorer.bias, raw_output(scorer, odd),
                                   rtol=tolerance * 10, atol=tolerance * 10)  # fmt: skip


@pytest.mark.parametrize("family", ["logistic", "random_forest", "gradient_boosting", "lightgbm"])
def test_sample_quality_scores_plain_feature_arrays_like_the_frame(frames, family: str) -> None:  # type: ignore[no-untyped-def]
    """QualityScorer is ModelScorer(model, FEATURE_NAMES, reference, "pass"); the service's FeatureColumns equal the frame."""
    model, names, frame = fitted(frames, "sample_quality", family)
    samples = generate_samples(60, seed=8, id_offset=500_000)
    moment = pd.Timestamp(samples["received_ts"].max()) + pd.Timedelta(days=1)
    columns = feature_columns(samples, samples, as_of=moment)
    reference = reference_values(frame)
    by_frame = ModelScorer(model, FEATURE_NAMES, reference, "pass").score(columns.frame(sort=False)[list(FEATURE_NAMES)])
    by_arrays = QualityScorer(model, reference).score(columns)
    np.testing.assert_allclose(by_arrays.probabilities, by_frame.probabilities, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(by_arrays.contributions, by_frame.contributions, rtol=1e-12, atol=1e-12)
    assert by_arrays.method == METHOD[family] and by_arrays.quality_probability.shape == (60,)


@pytest.mark.parametrize("family", ["logistic", "random_forest", "gradient_boosting"])
def test_zero_contributions_are_never_risk_factors(frames, family: str) -> None:  # type: ignore[no-untyped-def]
    scorer, x = scorer_of(frames, "sequencing_success", family)
    contributions = scorer.score(x).contributions
    indices, values = top_risk_factors(contributions)
    listed = indices >= 0
    assert listed.any()
    assert (values[listed] < 0).all() and np.isnan(values[~listed]).all()
    zero = contributions == 0
    assert zero.any()  # features a row's paths never split on, or at their reference value
    rows, slots = np.nonzero(listed)
    assert not zero[rows, indices[rows, slots]].any()
    if family == "logistic":  # at the reference row nothing moves the log-odds: no risk factor at all
        at_reference = x.iloc[:3].assign(**{k: (np.nan if v is None else v) for k, v in scorer.reference.items()})
        still = scorer.score(at_reference).contributions
        np.testing.assert_array_equal(still, 0.0)
        assert (top_risk_factors(still)[0] == -1).all()


def test_a_contribution_that_rounds_to_zero_is_not_a_risk_factor() -> None:
    """Answers carry six decimals: -1e-9 would be shown as a risk factor of -0.0."""
    contributions = np.zeros(len(FEATURE_NAMES))
    contributions[[0, 1, 2]] = [-1e-9, -0.25, 0.5]
    factors = risk_factors(contributions, {})
    assert [f.feature for f in factors] == [FEATURE_NAMES[1]] and factors[0].contribution == -0.25


def test_a_scorer_refuses_a_target_that_does_not_fit_the_model(frames) -> None:  # type: ignore[no-untyped-def]
    classifier, names, frame = fitted(frames, "sequencing_success", "logistic")
    regressor, r_names, r_frame = fitted(frames, "turnaround_hours", "logistic")
    with pytest.raises(ValueError, match="do not include"):
        ModelScorer(classifier, names, {}, "borderline")
    with pytest.raises(ValueError, match="needs a target class"):
        ModelScorer(classifier, names, {}, None)
    with pytest.raises(ValueError, match="regression model"):
        ModelScorer(regressor, r_names, {}, "pass")
    with pytest.raises(ValueError, match="reads features not given"):
        ModelScorer(classifier, names[:-3], {}, "pass")
