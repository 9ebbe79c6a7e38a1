"""Grouped cross-validation in the AutoML engine: rows of one group (one freezer's days of a month,
the runs of one sample) are never split between folds, nor between holdout and training; too few
groups is a clear input error; without groups nothing changes; the training set carries its groups."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from tracseq_dagster.automl import AutoMLConfig, AutoMLInputError, prepare_problem, run_automl
from tracseq_dagster.models import HOLDOUT_GROUP, get_model
from tracseq_dagster.training_set import build_training_set, frame_fingerprint

optuna.logging.set_verbosity(optuna.logging.WARNING)


def grouped_frame(groups: int = 60, per_group: int = 12, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Near-duplicate rows per group: a group-level feature value (plus a little noise) and a
    group-level label that is pure noise. A model can memorise groups; it cannot predict a new one."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0, 1, groups)
    label = rng.random(groups) < 0.4
    g = np.repeat(np.arange(groups), per_group)
    frame = pd.DataFrame(
        {
            "level": level[g] + rng.normal(0, 0.01, len(g)),
            "other": rng.normal(0, 1, len(g)),
            "label": np.where(label[g], "excursion", "none"),
            "amount": level[g] * 3 + rng.normal(0, 0.01, len(g)),
        },
        index=pd.Index([f"row-{i:05d}" for i in range(len(g))]),
    )
    return frame, pd.Series([f"G{k:03d}" for k in g], index=frame.index)


def sweep_groups(problem, groups: pd.Series) -> np.ndarray:  # type: ignore[no-untyped-def]
    return groups.reindex(problem.x_sweep.index).to_numpy()


@pytest.mark.parametrize("target", ["label", "amount"])
def test_no_group_is_split_across_folds_nor_between_holdout_and_training(target: str) -> None:
    frame, groups = grouped_frame()
    data = frame.drop(columns=["amount" if target == "label" else "label"])
    problem = prepare_problem(data, AutoMLConfig(target=target, cv_folds=4), groups=groups)
    held, trained = set(groups[problem.x_holdout.index]), set(groups[problem.x_train.index])
    assert held and trained and not held & trained
    assert 0.1 < len(problem.x_holdout) / len(frame) < 0.3
    g = sweep_groups(problem, groups)
    np.testing.assert_array_equal(problem.groups_sweep, g)
    assert len(problem.folds) == 4
    for train, valid in problem.folds:
        assert not set(g[train]) & set(g[valid])
    # Every sweep row is validated exactly once.
    assert sorted(np.concatenate([v for _, v in problem.folds]).tolist()) == list(range(len(g)))


def test_the_sweep_sample_keeps_whole_groups() -> None:
    frame, groups = grouped_frame(groups=80, per_group=10)
    problem = prepare_problem(frame.drop(columns=["amount"]), AutoMLConfig(target="label", max_sweep_rows=200), groups=groups)
    assert 100 <= len(problem.y_sweep) <= 200
    g = sweep_groups(problem, groups)
    sampled = pd.Series(g).value_counts()
    assert (sampled == 10).all()  # every sampled group came with all its training rows
    for train, valid in problem.folds:
        assert not set(g[train]) & set(g[valid])


def test_a_fixed_holdout_is_kept_and_must_not_split_a_group() -> None:
    frame, groups = grouped_frame()
    data = frame.drop(columns=["amount"])
    labels = frame.groupby(groups)["label"].first()
    chosen = [*labels[labels == "excursion"].index[:6], *labels[labels == "none"].index[:6]]
    by_group = groups.isin(chosen)
    problem = prepare_problem(data, AutoMLConfig(target="label"), holdout=by_group, groups=groups)
    assert set(problem.x_holdout.index) == set(frame.index[by_group])
    by_row = pd.Series(np.arange(len(frame)) % 5 == 0, index=frame.index)
    with pytest.raises(AutoMLInputError, match=r"splits \d+ group\(s\) between holdout and training"):
        prepare_problem(data, AutoMLConfig(target="label"), holdout=by_row, groups=groups)


def test_too_few_groups_is_a_clear_error() -> None:
    frame, groups = grouped_frame(groups=4, per_group=30)
    data = frame.drop(columns=["amount"]).assign(label=np.repeat(["excursion", "none", "none", "excursion"], 30))
    with pytest.raises(AutoMLInputError, match="only 4 distinct group"):
        prepare_problem(data, AutoMLConfig(target="label"), groups=groups)
    # A holdout of groups 0 and 1 leaves excursions in one training group: no two folds can see them.
    frame, groups = grouped_frame(groups=5, per_group=30)
    data = frame.drop(columns=["amount"]).assign(label=np.repeat(["excursion", "none", "none", "excursion", "none"], 30))
    two = groups.isin(["G000", "G001"])
    with pytest.raises(AutoMLInputError, match="every class in at least 2 groups; .* rarest class is in 1 of 3"):
        prepare_problem(data, AutoMLConfig(target="label"), holdout=two, groups=groups)
    with pytest.raises(AutoMLInputError, match="have no group"):
        prepare_problem(data, AutoMLConfig(target="label"), groups=groups.iloc[5:])


def test_without_groups_the_holdout_and_folds_are_what_they_were() -> None:
    frame, _ = grouped_frame()
    data = frame.drop(columns=["amount"])
    config = AutoMLConfig(target="label", cv_folds=3, seed=4)
    problem = prepare_problem(data, config)
    assert problem.groups_sweep is None
    y = (data["label"] == "none").astype(int).to_numpy()  # LabelEncoder: excursion=0, none=1
    x_train, x_holdout, y_train, _ = train_test_split(data[["level", "other"]], y, test_size=0.2, random_state=4, stratify=y)
    assert list(problem.x_holdout.index) == list(x_holdout.index)
    expected = StratifiedKFold(n_splits=3, shuffle=True, random_state=4).split(x_train, y_train)
    for (train, valid), (e_train, e_valid) in zip(problem.folds, expected, strict=True):
        np.testing.assert_array_equal(train, e_train)
        np.testing.assert_array_equal(valid, e_valid)
    regression = prepare_problem(frame.drop(columns=["label"]), AutoMLConfig(target="amount", cv_folds=3, seed=4))
    x_train = train_test_split(frame[["level", "other"]], test_size=0.2, random_state=4)[0]
    expected = KFold(n_splits=3, shuffle=True, random_state=4).split(x_train)
    for (train, _), (e_train, _) in zip(regression.folds, expected, strict=True):
        np.testing.assert_array_equal(train, e_train)


def test_grouped_cv_does_not_reward_memorising_groups() -> None:
    """The label is noise per group: row-wise CV scores a forest that memorises groups far above
    chance, grouped CV scores it near chance, as a new group would."""
    frame, groups = grouped_frame(groups=80, per_group=12, seed=2)
    data = frame.drop(columns=["amount"])
    config = AutoMLConfig(target="label", families=("random_forest",), max_trials=1, time_budget_s=30, cv_folds=4,
                          ensemble=False)  # fmt: skip
    row_wise = run_automl(data, config).leaderboard[0].cv_mean
    grouped = run_automl(data, config, groups=groups).leaderboard[0].cv_mean
    assert row_wise > 0.8 and grouped < 0.65 and row_wise - grouped > 0.2, (row_wise, grouped)


def test_the_training_set_carries_its_groups() -> None:
    spec = get_model("freezer_excursion_risk")
    frame, groups = grouped_frame(groups=30, per_group=5)
    rows = pd.DataFrame({f: np.random.default_rng(1).normal(size=len(frame)) for f in spec.features}, index=frame.index).assign(
        **{spec.label: frame["label"].to_numpy(), HOLDOUT_GROUP: groups.to_numpy()}
    )
    grouped = build_training_set(spec, rows)
    assert grouped.groups is not None and grouped.groups.index.equals(grouped.frame.index)
    assert (grouped.groups == groups).all()
    # The holdout is made of whole groups, by the hash of the group.
    held = set(groups[grouped.holdout])
    assert not held & set(groups[~grouped.holdout])
    plain = build_training_set(spec, rows.drop(columns=[HOLDOUT_GROUP]))
    assert plain.groups is None and plain.fingerprint == frame_fingerprint(plain.frame)
    assert grouped.fingerprint != plain.fingerprint  # grouped CV scores never share a study with row-wise ones


def test_the_dagster_sweep_step_cross_validates_on_the_training_sets_groups(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``sweep_one_family`` (what the automl_trials partitions run) passes the training set's groups:
    on rows that are near-duplicates per group with a noise label, its best CV score is the grouped
    one (near chance), not the row-wise one a forest reaches by memorising groups."""
    from tracseq_dagster.tracking import ensure_experiment, open_client, parent_run
    from tracseq_dagster.training import SweepSettings, sweep_one_family

    spec = get_model("freezer_excursion_risk")
    frame, groups = grouped_frame(groups=80, per_group=12, seed=2)
    rng = np.random.default_rng(3)
    rows = pd.DataFrame({f: frame["level"] + rng.normal(0, 0.01, len(frame)) for f in spec.features}, index=frame.index)
    rows = rows.assign(**{spec.label: frame["label"].to_numpy(), HOLDOUT_GROUP: groups.to_numpy()})
    training_set = build_training_set(spec, rows)
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = ensure_experiment(client, spec.name, (tmp_path / "artifacts").as_uri())
    settings = SweepSettings(time_budget_s=30, max_trials=1, cv_folds=4)
    outcome = sweep_one_family(training_set, "random_forest", settings, storage=None, client=client, experiment_id=experiment,
                               parent_run_id=parent_run(client, experiment, "run-1"), dagster_run_id="run-1")  # fmt: skip
    grouped = outcome.leaderboard["cv_mean"]  # type: ignore[index]
    config = AutoMLConfig(target=spec.label, families=("random_forest",), max_trials=1, time_budget_s=30, cv_folds=4,
                          ensemble=False)  # fmt: skip
    row_wise = run_automl(training_set.frame, config, holdout=training_set.holdout).leaderboard[0].cv_mean
    assert grouped < 0.65 and row_wise > 0.8, (grouped, row_wise)
