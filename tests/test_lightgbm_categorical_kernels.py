"""LightGBM's native categorical splits in the compiled kernels, against LightGBM itself.

The AutoML's LightGBM splits categorical columns natively (``automl.families.native_categories``):
its trees hold ``decision_type == "=="`` splits, which :func:`.tree_dumps.numeric_category_splits`
writes as chains of numeric splits for :mod:`.compiled_trees`. Checked here to the bit against
``Booster.predict`` on the values LightGBM reads in its own way: NaN, negative codes, codes in
(-1, 0) (truncated to 0), fractional codes, codes never seen in training, huge values and
infinities; for binary, multiclass and regression boosters, both kernels; and a served AutoML
pipeline whose scorer takes the compiled path and whose risk factors add up to LightGBM's raw
score.
"""

from __future__ import annotations

import dataclasses

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import LabelEncoder

import tracseq_dagster.serving.category_splits as category_splits
from tracseq_dagster.automl.families import FAMILIES, NATIVE_CATEGORIES
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.automl.preprocessing import prepare_features
from tracseq_dagster.serving.category_splits import CategorySplits
from tracseq_dagster.serving.compiled_trees import CompiledForest, _internal_nodes
from tracseq_dagster.serving.scoring import ModelScorer, _LeafPaths, reference_values

CATEGORIES = 30


def _data(rows: int = 4000, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Two numbers and two categorical codes (30 and 6 values, some missing) that drive the target."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.normal(size=rows),
            rng.integers(0, CATEGORIES, rows).astype(float),
            rng.normal(size=rows),
            rng.integers(0, 6, rows).astype(float),
        ]
    )
    x[rng.random(rows) < 0.1, 1] = np.nan
    x[rng.random(rows) < 0.05, 3] = np.nan
    effect = rng.normal(0, 2, CATEGORIES)
    signal = x[:, 0] + np.where(np.isnan(x[:, 1]), 3.0, effect[np.nan_to_num(x[:, 1]).astype(int)]) + 0.5 * np.nan_to_num(x[:, 3])
    return x, signal + rng.normal(0, 0.3, rows)


def _booster(task: str, *, leaves: int = 15, rounds: int = 30) -> lgb.Booster:
    x, signal = _data()
    params = {"num_leaves": leaves, "min_data_per_group": 10, "cat_smooth": 1.0, "verbose": -1, "seed": 1,
              "categorical_column": [1, 3], "max_bin": 63}  # fmt: skip
    if task == "regression":
        y = signal
        params["objective"] = "regression"
    elif task == "binary":
        y = (signal > np.median(signal)).astype(int)
        params["objective"] = "binary"
    else:
        y = np.digitize(signal, np.quantile(signal, [0.33, 0.66]))
        params |= {"objective": "multiclass", "num_class": 3}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)


def _odd_rows(n: int, seed: int = 7) -> np.ndarray:
    """Rows whose categorical codes include everything LightGBM reads in its own way."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.integers(0, CATEGORIES, n).astype(float), rng.normal(size=n),
                         rng.integers(0, 6, n).astype(float)])  # fmt: skip
    odd = [np.nan, -1.0, -0.5, -1e-40, 0.0, 1e-40, 0.5, 1.0, 1.999, 2.0, 2.5, CATEGORIES - 1.0, CATEGORIES, 57.0, 2.0**40,
           np.inf, -np.inf, -7.0]  # fmt: skip
    x[::2, 1] = np.resize(odd, len(x[::2]))
    x[1::3, 3] = np.resize(odd[::-1], len(x[1::3]))
    return x


def _categorical_splits(booster: lgb.Booster) -> int:
    dump = booster.dump_model()
    return sum(n["decision_type"] == "==" for info in dump["tree_info"] for n in _internal_nodes(info["tree_structure"]))


@pytest.fixture
def any_number_of_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile however many distinct categorical splits (past the cap, LightGBM's walk answers)."""
    monkeypatch.setattr(category_splits, "MAX_SPLIT_COLUMNS", 1_000_000)


@pytest.mark.usefixtures("any_number_of_splits")
@pytest.mark.parametrize(("task", "classes"), [("binary", 2), ("multiclass", 3), ("regression", 1)])
def test_categorical_splits_compile_to_lightgbms_own_answers(task: str, classes: int) -> None:
    booster = _booster(task)
    assert _categorical_splits(booster) > 0  # the trees really split on categories
    paths = _LeafPaths.of(booster, pass_index=1 if classes > 1 else 0, n_classes=max(classes, 1))
    forest = paths.forest
    assert forest is not None and forest.categories is not None
    # the bit vectors take forests of up to 128 columns (features and derived ones): the binary
    # booster's distinct splits fit, the others' (one tree per class, or 30 rounds of deeper
    # regression trees) do not, and the node walk answers alone
    assert (forest.bitvectors is not None) == (forest.cuts.shape[0] <= 128)
    if task == "binary":
        assert forest.bitvectors is not None
    for n in (1, 40, 2100):  # a single record (node walk), a partial block, the parallel kernel
        x = _odd_rows(n)
        raw, credit = forest.raw_and_credit(x)
        np.testing.assert_array_equal(raw, np.asarray(booster.predict(x, raw_score=True)).reshape(raw.shape))
        np.testing.assert_array_equal(paths.sign * credit, paths.contributions(booster.predict(x, pred_leaf=True)))
        if forest.bitvectors is None:
            continue
        walked_raw, walked_credit = dataclasses.replace(forest, bitvectors=None).raw_and_credit(x)
        np.testing.assert_array_equal(raw, walked_raw)
        np.testing.assert_array_equal(credit, walked_credit)


def test_a_dump_without_categorical_splits_is_left_as_it_is() -> None:
    x, signal = _data()
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 7}, lgb.Dataset(x, signal), num_boost_round=3)
    dump = booster.dump_model()
    assert CategorySplits.of(dump) == (dump, None)


@pytest.mark.usefixtures("any_number_of_splits")
def test_each_distinct_categorical_split_gets_one_derived_column_and_the_trees_keep_their_size() -> None:
    booster = _booster("binary")
    dump = booster.dump_model()
    derived = CategorySplits.of(dump)
    assert derived is not None
    rewritten, splits = derived
    assert splits is not None
    distinct = {(n["split_feature"], n["threshold"]) for info in dump["tree_info"] for n in _internal_nodes(info["tree_structure"])
                if n["decision_type"] == "=="}  # fmt: skip
    assert len(splits.source) == len(distinct) and rewritten["max_feature_idx"] == dump["max_feature_idx"] + len(distinct)
    for before, after in zip(dump["tree_info"], rewritten["tree_info"], strict=True):
        assert len(_internal_nodes(after["tree_structure"])) == len(_internal_nodes(before["tree_structure"]))
        assert all(n["decision_type"] == "<=" for n in _internal_nodes(after["tree_structure"]))


@pytest.mark.usefixtures("any_number_of_splits")
def test_a_lookup_table_too_large_is_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Then LightGBM's own predictor answers for the forest (``CompiledForest.of`` returns None)."""
    booster = _booster("binary")
    assert CompiledForest.of(booster.dump_model(), {}) is not None
    monkeypatch.setattr(category_splits, "MAX_TABLE_BYTES", 10)
    assert CompiledForest.of(booster.dump_model(), {}) is None


def test_more_distinct_splits_than_the_cap_are_not_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each split column is binned for every row: past MAX_SPLIT_COLUMNS LightGBM's walk answers."""
    monkeypatch.setattr(category_splits, "MAX_SPLIT_COLUMNS", 100)
    booster = _booster("multiclass")
    dump = booster.dump_model()
    distinct = {(n["split_feature"], n["threshold"]) for info in dump["tree_info"] for n in _internal_nodes(info["tree_structure"])
                if n["decision_type"] == "=="}  # fmt: skip
    assert len(distinct) > category_splits.MAX_SPLIT_COLUMNS
    assert CategorySplits.of(dump) is None and CompiledForest.of(dump, {}) is None
    few = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4, "categorical_column": [1], "seed": 1},
                    lgb.Dataset(_data()[0], (_data()[1] > 0).astype(int)), num_boost_round=3)  # fmt: skip
    assert _categorical_splits(few) > 0 and CompiledForest.of(few.dump_model(), {}) is not None


def _lab_table(rows: int = 3000, seed: int = 2) -> pd.DataFrame:
    """A lab-like table: an 80-value site (a wide categorical) and a 5-value sample type drive a binary outcome."""
    rng = np.random.default_rng(seed)
    site = rng.integers(0, 80, rows)
    kind = rng.integers(0, 5, rows)
    age = rng.uniform(0, 100, rows)
    logit = rng.normal(0, 1.5, 80)[site] + np.array([0.0, 1.0, -1.0, 0.5, 0.0])[kind] - age / 50
    frame = pd.DataFrame({"site": [f"S{s:02d}" for s in site], "sample_type": [f"T{k}" for k in kind], "age_days": age})
    frame.loc[rng.random(rows) < 0.05, "site"] = None
    frame["status"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "pass", "fail")
    return frame


@pytest.mark.usefixtures("any_number_of_splits")
def test_a_served_automl_lightgbm_with_native_categories_is_compiled_and_explained() -> None:
    frame = _lab_table()
    features, columns = prepare_features(frame, "status")
    assert columns.wide == ("site",) and columns.categorical == ("sample_type",)
    params = FAMILIES["lightgbm"].default_params("binary", columns)
    pipeline = FAMILIES["lightgbm"].build(params, "binary", columns, seed=0, balance=False)
    encoder = LabelEncoder().fit(frame["status"])
    model = LabelDecodingClassifier.from_fitted(pipeline.fit(features, encoder.transform(frame["status"])), encoder.classes_)
    booster = pipeline.steps[-1][1].booster_
    assert _categorical_splits(booster) > 0  # both categorical columns are split natively
    names = list(columns.all)
    scorer = ModelScorer(model, names, reference_values(frame, names), "pass")
    assert scorer.method == "tree_path" and scorer._forest is not None
    x = frame[names].iloc[:700].copy()
    x.loc[x.index[::7], "site"] = "S-never-seen"
    x.loc[x.index[3::11], "sample_type"] = None
    scores = scorer.score(x)
    assert scorer._forest_checked and scorer._forest is not None  # the compiled path answered, checked against LightGBM
    np.testing.assert_allclose(scores.probabilities, model.predict_proba(x), rtol=0, atol=1e-12)
    matrix = pipeline[:-1].transform(x)
    raw = np.asarray(booster.predict(matrix, raw_score=True))
    assert scorer.bias is not None
    np.testing.assert_allclose(scores.contributions.sum(axis=1) + scorer.bias, raw, rtol=1e-9, atol=1e-9)
    site = names.index("site")
    assert np.abs(scores.contributions[:, site]).mean() > 0  # the site's credit reaches its own column


def test_a_served_lightgbm_past_the_cap_answers_the_same_through_lightgbms_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(category_splits, "MAX_SPLIT_COLUMNS", 20)
    frame = _lab_table()
    features, columns = prepare_features(frame, "status")
    pipeline = FAMILIES["lightgbm"].build(FAMILIES["lightgbm"].default_params("binary", columns), "binary", columns,
                                          seed=0, balance=False)  # fmt: skip
    encoder = LabelEncoder().fit(frame["status"])
    model = LabelDecodingClassifier.from_fitted(pipeline.fit(features, encoder.transform(frame["status"])), encoder.classes_)
    assert CategorySplits.of(pipeline.steps[-1][1].booster_.dump_model()) is None  # 100 trees: more splits than 20
    names = list(columns.all)
    scorer = ModelScorer(model, names, reference_values(frame, names), "pass")
    assert scorer.method == "tree_path" and scorer._forest is None
    x = frame[names].iloc[:300]
    scores = scorer.score(x)
    np.testing.assert_allclose(scores.probabilities, model.predict_proba(x), rtol=0, atol=1e-12)
    raw = np.asarray(pipeline.steps[-1][1].booster_.predict(pipeline[:-1].transform(x), raw_score=True))
    assert scorer.bias is not None
    np.testing.assert_allclose(scores.contributions.sum(axis=1) + scorer.bias, raw, rtol=1e-9, atol=1e-9)


def test_lightgbms_native_choice_switches_set_splits_on_and_off() -> None:
    """``native_categories`` is a tuned parameter of LightGBM's trials; without it, native (LightGBM's default)."""
    frame = _lab_table()
    features, columns = prepare_features(frame, "status")
    y = LabelEncoder().fit_transform(frame["status"])
    family = FAMILIES["lightgbm"]
    base = {k: v for k, v in family.default_params("binary", columns).items() if k != NATIVE_CATEGORIES}
    for params, expect_sets in (
        (base, True),
        ({**base, NATIVE_CATEGORIES: True}, True),
        ({**base, NATIVE_CATEGORIES: False}, False),
    ):
        pipeline = family.build(params, "binary", columns, seed=0, balance=False).fit(features, y)
        assert (_categorical_splits(pipeline.steps[-1][1].booster_) > 0) == expect_sets, params
