"""MlpOcclusion: the estimator's own probabilities, and occlusion equal to brute force, from the weights.

Brute force here is the definition: the estimator's ``predict_proba`` / ``predict`` on the
matrix with one feature's transformed columns replaced by the reference's, feature by feature;
and, through a real AutoML pipeline, the scorer's pipeline-level occlusion on raw frames.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.neural_network import MLPClassifier, MLPRegressor

from tracseq_dagster.automl.families import FAMILIES
from tracseq_dagster.automl.preprocessing import prepare_features
from tracseq_dagster.serving import mlp_occlusion
from tracseq_dagster.serving.mlp_occlusion import MlpOcclusion
from tracseq_dagster.serving.pipeline_arrays import PreprocessArrays
from tracseq_dagster.serving.scoring import ModelScorer, reference_values

#: Transformed column → feature, deliberately out of order: feature 3 is one-hot over three
#: columns, feature 1 a number with its missing indicator, feature 4 has no column at all.
ORIGINS = np.array([2, 3, 1, 3, 0, 3, 1, 5])
FEATURES = 6
IRRELEVANT = 5  # its one column gets zero first-layer weights after fitting

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fit quality is beside the point


def matrix(rows: int, seed: int) -> np.ndarray:
    """Rows shaped like a scaled, one-hot input of ORIGINS' layout."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(ORIGINS)))
    one_hot = np.flatnonzero(ORIGINS == 3)
    x[:, one_hot] = np.eye(3)[rng.integers(0, 3, rows)]
    x[:, 6] = rng.random(rows) < 0.3  # feature 1's missing indicator
    return x


def reference_row() -> np.ndarray:
    """Typical values: zeros for the numbers, the first category, not missing."""
    r = np.zeros(len(ORIGINS))
    r[1] = 1.0
    return r


def labels(x: np.ndarray, task: str) -> np.ndarray:
    score = x[:, 0] - 2 * x[:, 1] * x[:, 3] + x[:, 2] + np.tanh(x[:, 4]) + x[:, 6]
    if task == "regression":
        return score
    if task == "binary":
        return (score > 0).astype(int)
    return np.digitize(score, [-0.7, 0.7])


@functools.cache
def fitted(task: str, activation: str, hidden: tuple[int, ...]) -> Any:
    """A small network, fitted once per configuration (how well it fits is beside the point)."""
    x = matrix(400, seed=1)
    kind = MLPRegressor if task == "regression" else MLPClassifier
    model = kind(hidden_layer_sizes=hidden, activation=activation, max_iter=100, random_state=0).fit(x, labels(x, task))
    model.coefs_[0][ORIGINS == IRRELEVANT] = 0.0
    return model


def value(model: Any, x: np.ndarray, target: int | None) -> np.ndarray:
    return model.predict(x) if target is None else model.predict_proba(x)[:, target]


def brute_force(model: Any, x: np.ndarray, reference: np.ndarray, target: int | None) -> np.ndarray:
    """Value minus the value with one feature's columns at the reference's, with the model's own predictions."""
    base = value(model, x, target)
    out = np.zeros((len(x), FEATURES))
    for j in range(FEATURES):
        occluded = x.copy()
        columns = j == ORIGINS
        occluded[:, columns] = reference[columns]
        out[:, j] = base - value(model, occluded, target)
    return out


CASES = [(task, activation, hidden, target)
         for task, targets in (("binary", (0, 1)), ("multiclass", (0, 2)), ("regression", (None,)))
         for activation in ("relu", "tanh") for hidden in ((12,), (10, 6)) for target in targets]  # fmt: skip
CASES += [
    (task, "relu", (), target) for task, target in (("binary", 0), ("multiclass", 1), ("regression", None))
]  # no hidden layer


@pytest.mark.parametrize(("task", "activation", "hidden", "target"), CASES)
def test_outputs_and_contributions_equal_the_estimator_and_brute_force(task, activation, hidden, target) -> None:  # type: ignore[no-untyped-def]
    model = fitted(task, activation, hidden)
    reference = reference_row()
    x = matrix(400, seed=2)
    x[:5] = reference  # rows entirely at the reference
    occlusion = MlpOcclusion.of(model, ORIGINS, reference, target, FEATURES)

    outputs, contributions = occlusion.outputs_and_contributions(x)

    if target is None:
        assert outputs.shape == (len(x),)
        np.testing.assert_allclose(outputs, model.predict(x), rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(outputs, model.predict_proba(x), rtol=1e-12, atol=1e-12)
    expected = brute_force(model, x, reference, target)
    np.testing.assert_allclose(contributions, expected, rtol=0, atol=1e-9)
    moving = np.count_nonzero(contributions[5:, :4], axis=0)  # the features with weights move most rows' value
    assert np.all(moving > 0.5 * (len(x) - 5)) and np.abs(contributions).max() > 1e-3, moving
    assert np.all(contributions[:5] == 0.0)  # at the reference, exactly nothing
    assert np.all(contributions[:, 4] == 0.0)  # no transformed column
    assert np.all(contributions[:, IRRELEVANT] == 0.0)  # zero weight
    assert occlusion.bias == pytest.approx(value(model, reference[None, :], target)[0], abs=1e-12)


def test_a_feature_at_its_reference_contributes_exactly_zero_on_other_rows_too() -> None:
    model = fitted("multiclass", "relu", (12,))
    reference = reference_row()
    x = matrix(300, seed=3)
    at_reference = np.arange(0, 300, 3)
    x[np.ix_(at_reference, np.flatnonzero(ORIGINS == 3))] = reference[ORIGINS == 3]  # the reference category
    contributions = MlpOcclusion.of(model, ORIGINS, reference, 1, FEATURES).outputs_and_contributions(x)[1]
    assert np.all(contributions[at_reference, 3] == 0.0)
    others = np.flatnonzero(x[:, 1] == 0)  # rows of another category
    assert np.count_nonzero(contributions[others, 3]) > 0.9 * len(others)
    np.testing.assert_allclose(contributions, brute_force(model, x, reference, 1), rtol=0, atol=1e-9)


def test_binary_targets_have_opposite_contributions() -> None:
    """P(class 0) = 1 − P(class 1): every occlusion changes them by opposite amounts."""
    model = fitted("binary", "relu", (12,))
    x = matrix(200, seed=4)
    toward = {t: MlpOcclusion.of(model, ORIGINS, reference_row(), t, FEATURES).outputs_and_contributions(x)[1] for t in (0, 1)}
    np.testing.assert_allclose(toward[0], -toward[1], rtol=0, atol=1e-12)
    assert np.abs(toward[1]).max() > 0.05


def test_multilabel_targets_read_their_own_logistic_output() -> None:
    x = matrix(600, seed=1)
    y = np.column_stack([labels(x, "binary"), x[:, 2] > 0.5, x[:, 0] * x[:, 6] > 0])
    model = MLPClassifier(hidden_layer_sizes=(12,), max_iter=100, random_state=0).fit(x, y)
    rows = matrix(200, seed=7)
    for target in (0, 2):
        probabilities, contributions = MlpOcclusion.of(
            model, ORIGINS, reference_row(), target, FEATURES
        ).outputs_and_contributions(rows)
        np.testing.assert_allclose(probabilities, model.predict_proba(rows), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(contributions, brute_force(model, rows, reference_row(), target), rtol=0, atol=1e-9)


def test_chunks_give_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    model = fitted("multiclass", "tanh", (10, 6))
    x = matrix(250, seed=5)
    occlusion = MlpOcclusion.of(model, ORIGINS, reference_row(), 2, FEATURES)
    whole = occlusion.outputs_and_contributions(x)
    monkeypatch.setattr(mlp_occlusion, "CHUNK_ROWS", 64)  # 250 rows: three full chunks and a partial one
    chunked = occlusion.outputs_and_contributions(x)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked[1], brute_force(model, x, reference_row(), 2), rtol=0, atol=1e-9)


def test_arguments_that_do_not_fit_the_model_are_refused() -> None:
    classifier, regressor = fitted("binary", "relu", (12,)), fitted("regression", "relu", (12,))
    with pytest.raises(ValueError, match="target class"):
        MlpOcclusion.of(classifier, ORIGINS, reference_row(), None, FEATURES)
    with pytest.raises(ValueError, match="target class"):
        MlpOcclusion.of(classifier, ORIGINS, reference_row(), 2, FEATURES)
    with pytest.raises(ValueError, match="no target class"):
        MlpOcclusion.of(regressor, ORIGINS, reference_row(), 0, FEATURES)
    with pytest.raises(ValueError, match="origins"):
        MlpOcclusion.of(classifier, ORIGINS[:-1], reference_row(), 1, FEATURES)
    with pytest.raises(ValueError, match="origins"):
        MlpOcclusion.of(classifier, ORIGINS, reference_row(), 1, FEATURES - 1)
    with pytest.raises(ValueError, match="transformed columns"):
        MlpOcclusion.of(classifier, ORIGINS, reference_row(), 1, FEATURES).outputs_and_contributions(np.zeros((3, 7)))


def lab_frame(rows: int, seed: int) -> pd.DataFrame:
    """Raw features as a lab sends them: numbers with gaps, a category with gaps, an unrelated column."""
    rng = np.random.default_rng(seed)
    concentration = rng.lognormal(3, 0.5, rows)
    concentration[rng.random(rows) < 0.15] = np.nan
    frame = pd.DataFrame({
        "concentration": concentration,
        "volume": rng.normal(50, 10, rows),
        "kit": rng.choice(np.array(["a", "b", "c", None], dtype=object), rows, p=[0.4, 0.3, 0.2, 0.1]),
        "age_days": rng.integers(0, 30, rows).astype(float),
    })  # fmt: skip
    score = np.nan_to_num(np.log(frame["concentration"]) - 3, nan=-1) + (frame["kit"] == "b") - frame["age_days"] / 15 + 1
    frame["status"] = np.where(score > 0.3, "pass", np.where(score < -0.3, "fail", "review"))
    return frame


def test_through_an_automl_pipeline_it_equals_the_scorers_pipeline_occlusion() -> None:
    """The served path: PreprocessArrays' matrix and origins in, the scorer's own occlusion out."""
    frame = lab_frame(800, seed=6)
    x, columns = prepare_features(frame.drop(columns=["status"]), "status")
    pipeline = FAMILIES["mlp"].build({"hidden_layer_sizes": (16, 8)}, "multiclass", columns, seed=0, balance=False)
    pipeline.fit(x, frame["status"].to_numpy())
    names = ["age_days", "kit", "volume", "concentration", "unused"]  # served order differs from the pipeline's
    served = frame.assign(unused=1.0)[names]
    scorer = ModelScorer(pipeline, names, reference_values(served, names), "review")
    assert scorer.method == "occlusion"
    arrays = PreprocessArrays.of(pipeline)
    assert arrays is not None
    position = np.array([names.index(c) for c in arrays.inputs.columns])
    reference = arrays.transform(pd.DataFrame({n: [np.nan if v is None else v] for n, v in scorer.reference.items()}))[0]
    estimator = pipeline.named_steps["model"]
    target = list(estimator.classes_).index("review")
    occlusion = MlpOcclusion.of(estimator, position[arrays.origins], reference, target, len(names))

    rows = served.iloc[:200]
    probabilities, contributions = occlusion.outputs_and_contributions(arrays.transform(rows))

    slow = scorer.score(rows)
    np.testing.assert_allclose(probabilities, slow.probabilities, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(contributions, slow.contributions, rtol=0, atol=1e-9)
    assert np.all(contributions[:, names.index("unused")] == 0.0)
    assert np.abs(contributions).max() > 0.01
