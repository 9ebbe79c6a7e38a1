"""Tests of the synthetic sequencing run generator: contract, consistency with the samples,
determinism, documented rates, the hidden process (failure and turnaround) and the files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import log_loss, r2_score, roc_auc_score
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from tracseq_dagster.cli import app
from tracseq_dagster.export_contract import PANDAS_DTYPE_BY_KIND, Kind
from tracseq_dagster.generator import export_file_seed, generate_samples, hidden_quality_score, messy_plan
from tracseq_dagster.parsing.reader import read_export
from tracseq_dagster.run_contract import RUN_COLUMNS, RUN_CONTRACT, RUN_TIMESTAMP_ORDER
from tracseq_dagster.run_generator import (
    INSTRUMENTS,
    LIBRARY_KITS,
    RUN_EXPORT_STYLE,
    RUN_HIDDEN_PROCESS,
    RUN_LIMS_HEADERS,
    generate_run_exports,
    generate_runs,
    hidden_fail_logit,
    queue_days,
    queue_depth,
    write_run_export,
)
from tracseq_dagster.validation import validate_samples

ROWS, SEED = 12_000, 5


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    return generate_samples(ROWS, seed=SEED)


@pytest.fixture(scope="module")
def runs(samples: pd.DataFrame) -> pd.DataFrame:
    return generate_runs(samples, seed=SEED)


@pytest.fixture(scope="module")
def labelled(samples: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """QC'd run rows with the sample's columns and the documented causes of failure."""
    frame = runs.assign(
        z=hidden_fail_logit(samples, runs),
        queue_at_prep=queue_days(samples, runs, runs["library_prep_ts"]),
    ).merge(samples, on="sample_id", how="left", validate="many_to_one")
    frame["risk"] = hidden_quality_score(frame)
    frame["input_ng"] = frame["concentration_ng_ul"] * frame["volume_ul"]
    frame = frame[frame["run_status"].notna()].reset_index(drop=True)
    frame["failed"] = (frame["run_status"] == "fail").to_numpy(dtype=bool)
    return frame


@pytest.fixture(scope="module")
def first_runs(samples: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each sample's first run, finished, with its turnaround and the queue it arrived into."""
    first = runs.sort_values("run_start_ts", kind="stable").drop_duplicates("sample_id")
    first = first[first["run_end_ts"].notna()].merge(samples, on="sample_id", validate="one_to_one")
    first["turnaround_h"] = (first["run_end_ts"] - first["received_ts"]) / pd.Timedelta(hours=1)
    first["queue_at_receipt"] = queue_depth(samples, runs, first["received_ts"])
    return first.reset_index(drop=True)


@pytest.fixture
def one_thread():
    """Gradient boosting on one thread: on a shared two-core machine OpenMP threads only contend."""
    with threadpool_limits(1):
        yield


def fail_rate(frame: pd.DataFrame, by: pd.Series | str) -> pd.Series:
    return frame["failed"].groupby(frame[by] if isinstance(by, str) else by, observed=True).mean()


# --- contract and consistency with the samples --------------------------------------------------


def test_runs_follow_the_run_contract(runs: pd.DataFrame) -> None:
    assert list(runs.columns) == [c.name for c in RUN_COLUMNS]
    for column in RUN_COLUMNS:
        values = runs[column.name]
        assert str(values.dtype) == PANDAS_DTYPE_BY_KIND[column.kind], column.name
        if column.required:
            assert values.notna().all(), column.name
        present = values.dropna()
        if column.kind is Kind.FLOAT:
            assert present.min() >= (column.minimum or 0) and present.max() <= (column.maximum or np.inf), column.name
        if column.pattern is not None:
            assert present.str.fullmatch(column.pattern).all(), column.name
        if column.allowed is not None:
            assert set(present) == set(column.allowed), column.name
    assert set(runs["instrument_id"]) == set(INSTRUMENTS)
    assert set(runs["library_kit"]) == set(LIBRARY_KITS)
    assert not runs.duplicated(["run_id", "sample_id"]).any()
    assert (runs["run_start_ts"].diff().dropna() >= pd.Timedelta(0)).all()


def test_every_row_passes_the_run_contracts_rules(samples: pd.DataFrame, runs: pd.DataFrame) -> None:
    """The project's validator (every rule of RUN_CONTRACT, unknown_sample and after_receipt included)."""
    result = validate_samples(
        runs, contract=RUN_CONTRACT, accepted_samples=samples[["sample_id", "received_ts"]],
        now=samples["received_ts"].max() + pd.Timedelta(days=30),
    )  # fmt: skip
    assert len(result.quarantined) == 0 and len(result.valid) == len(runs), result.failed_rules


def test_every_run_belongs_to_an_extracted_sample_and_every_extracted_sample_is_sequenced(
    samples: pd.DataFrame, runs: pd.DataFrame
) -> None:
    known = samples.set_index("sample_id")
    assert runs["sample_id"].isin(known.index).all()
    assert known.loc[runs["sample_id"], "extraction_ts"].notna().all()
    sequenced = set(runs["sample_id"])
    extracted = samples[samples["extraction_ts"].notna()]
    # All but the libraries still in prep or in the queue at the export (the most recent ones).
    waiting = extracted[~extracted["sample_id"].isin(sequenced)]
    assert len(waiting) < 0.02 * len(extracted)
    assert waiting["extraction_ts"].min() > extracted["extraction_ts"].quantile(0.9)


def test_timestamps_are_in_order(samples: pd.DataFrame, runs: pd.DataFrame) -> None:
    sample = samples.set_index("sample_id").loc[runs["sample_id"]].reset_index()
    assert (runs["library_prep_ts"] > sample["extraction_ts"]).all()
    assert (sample["extraction_ts"] >= sample["received_ts"]).all()
    for earlier, later in RUN_TIMESTAMP_ORDER:
        present = runs[later].notna()
        assert (runs.loc[present, earlier] <= runs.loc[present, later]).all(), (earlier, later)
    prep = runs["library_prep_ts"]
    assert (prep.dt.weekday < 5).all() and prep.dt.hour.between(8, 17).all()  # working hours only
    assert (runs["run_start_ts"] <= samples["received_ts"].max()).all()  # nothing after the export


def test_a_run_is_one_instrument_flowcell_and_time(runs: pd.DataFrame) -> None:
    per_run = runs.groupby("run_id").agg(
        instruments=("instrument_id", "nunique"), flowcells=("flowcell_id", "nunique"),
        starts=("run_start_ts", "nunique"), size=("sample_id", "size"),
    )  # fmt: skip
    assert (per_run[["instruments", "flowcells", "starts"]] == 1).all().all()
    assert runs.groupby("flowcell_id")["run_id"].nunique().max() == 1
    assert per_run["size"].median() >= RUN_HIDDEN_PROCESS.min_flowcell - 2  # batched, not one library a run
    # One instrument never runs two flowcells at once.
    for _, group in runs.drop_duplicates("run_id").groupby("instrument_id"):
        ends = group["run_end_ts"].iloc[:-1].to_numpy()
        assert (group["run_start_ts"].iloc[1:].to_numpy() >= ends).all()


def test_same_seed_same_runs_and_another_seed_differs(samples: pd.DataFrame, runs: pd.DataFrame) -> None:
    small = samples.iloc[:3000]
    pd.testing.assert_frame_equal(generate_runs(small, seed=1), generate_runs(small, seed=1))
    assert not generate_runs(small, seed=1).equals(generate_runs(small, seed=2))


def test_id_offset_moves_run_serials_and_empty_input_gives_an_empty_frame() -> None:
    frame = generate_samples(800, seed=3, id_offset=250_000)
    offset = generate_runs(frame, seed=3, id_offset=250_000)
    serials = offset["run_id"].str[-5:].astype(int)
    assert serials.min() == 25_001 and serials.max() == 25_000 + offset["run_id"].nunique()
    plain = generate_runs(frame, seed=3)
    pd.testing.assert_frame_equal(offset.drop(columns=["run_id", "flowcell_id"]), plain.drop(columns=["run_id", "flowcell_id"]))
    empty = generate_runs(generate_samples(0, seed=3), seed=3)
    assert empty.empty and list(empty.columns) == [c.name for c in RUN_COLUMNS]


# --- documented rates -----------------------------------------------------------------------------


def test_documented_rates(runs: pd.DataFrame, labelled: pd.DataFrame) -> None:
    assert 0.08 <= labelled["failed"].mean() <= 0.16  # about 11 %
    per_sample = runs.groupby("sample_id").size()
    assert per_sample.max() == 2
    assert 0.05 <= (per_sample == 2).mean() <= 0.14
    unfinished = runs["run_end_ts"].isna()
    unreviewed = runs["run_end_ts"].notna() & runs["run_status"].isna()
    assert 0.001 <= unfinished.mean() <= 0.03 and 0.001 <= unreviewed.mean() <= 0.03
    # Unfinished runs have no metrics; finished ones all have them.
    metrics = ["yield_gb", "q30_pct", "cluster_pf_pct", "duplication_pct"]
    assert runs.loc[unfinished, metrics].isna().all().all()
    assert runs.loc[~unfinished, metrics].notna().all().all()
    # They are the most recent runs: all started in the export's last week, after 98 % of the QC'd ones.
    pending = runs.loc[unfinished | unreviewed, "run_start_ts"]
    assert pending.min() > runs["run_start_ts"].max() - pd.Timedelta(days=7)
    assert pending.min() > runs.loc[runs["run_status"].notna(), "run_start_ts"].quantile(0.98)


def test_a_second_run_follows_a_failed_first_run(runs: pd.DataFrame) -> None:
    twice = runs[runs["sample_id"].duplicated(keep=False)].sort_values(["sample_id", "run_start_ts"])
    first, second = twice.groupby("sample_id").nth(0), twice.groupby("sample_id").nth(1)
    first, second = first.set_index("sample_id"), second.set_index("sample_id").loc[first["sample_id"]]
    assert (first["run_status"] == "fail").all()
    assert (second["library_prep_ts"] > first["run_end_ts"]).all()  # a new library after the failure
    assert (first["library_kit"] == second["library_kit"]).all()


# --- the hidden failure process --------------------------------------------------------------------


def test_the_documented_logit_produced_the_labels(labelled: pd.DataFrame) -> None:
    """``P(fail) = sigmoid(z)`` with ``z`` recomputed from the two exports: calibrated per decile."""
    probability = 1.0 / (1.0 + np.exp(-labelled["z"].to_numpy()))
    assert probability.mean() == pytest.approx(labelled["failed"].mean(), abs=0.015)
    deciles = pd.qcut(probability, 10, labels=False)
    observed = labelled["failed"].groupby(deciles).mean()
    expected = pd.Series(probability).groupby(deciles).mean()
    assert (observed - expected).abs().max() < 0.05
    assert roc_auc_score(labelled["failed"], probability) > 0.78


def test_fail_rate_is_monotone_in_the_samples_hidden_risk(labelled: pd.DataFrame) -> None:
    by_risk = fail_rate(labelled, pd.qcut(labelled["risk"], 5, labels=False))
    assert by_risk.is_monotonic_increasing
    assert by_risk.iloc[-1] > 3 * by_risk.iloc[0]


def test_instruments_and_kits_differ_as_documented(labelled: pd.DataFrame) -> None:
    by_instrument = fail_rate(labelled, "instrument_id")
    plain = labelled[labelled["instrument_id"].isin(["SEQ-01", "SEQ-02"])]["failed"].mean()
    assert by_instrument["SEQ-03"] > plain + 0.04  # INSTRUMENT_EFFECT +0.8
    assert by_instrument["SEQ-04"] < plain - 0.01  # -0.6
    assert by_instrument.idxmin() == "SEQ-04"
    # SEQ-06 drifts: its second half of the year fails more than its first; SEQ-01 does not.
    late = labelled["run_start_ts"] > labelled["run_start_ts"].median()
    seq06, seq01 = labelled["instrument_id"] == "SEQ-06", labelled["instrument_id"] == "SEQ-01"
    assert labelled.loc[seq06 & late, "failed"].mean() > labelled.loc[seq06 & ~late, "failed"].mean() + 0.05
    assert abs(labelled.loc[seq01 & late, "failed"].mean() - labelled.loc[seq01 & ~late, "failed"].mean()) < 0.05
    # DNA-RAPID and DNA-PCRFREE are drawn at random for the same samples: a clean comparison.
    by_kit = fail_rate(labelled, "library_kit")
    assert by_kit["DNA-RAPID"] > by_kit["DNA-PCRFREE"] + 0.03


def test_low_input_and_long_queues_fail_more(labelled: pd.DataFrame) -> None:
    dna = labelled[labelled["library_kit"] == "DNA-LOWINPUT"]
    assert dna.loc[dna["input_ng"] < 25, "failed"].mean() > dna.loc[dna["input_ng"] >= 200, "failed"].mean() + 0.05
    by_queue = fail_rate(labelled, pd.qcut(labelled["queue_at_prep"], 3, labels=False))
    assert by_queue.iloc[-1] > by_queue.iloc[0] + 0.02


def test_metrics_follow_the_same_latent(labelled: pd.DataFrame) -> None:
    failed = labelled["failed"]
    assert labelled.loc[failed, "q30_pct"].median() < labelled.loc[~failed, "q30_pct"].median() - 10
    assert labelled.loc[failed, "cluster_pf_pct"].median() < labelled.loc[~failed, "cluster_pf_pct"].median() - 10
    assert labelled.loc[failed, "duplication_pct"].median() > labelled.loc[~failed, "duplication_pct"].median() + 10
    assert spearmanr(labelled["z"], labelled["q30_pct"]).statistic < -0.4


def test_a_quick_model_learns_run_failure(labelled: pd.DataFrame, one_thread: None) -> None:
    """Columns computable from the two exports before the run beat the base rate by a margin."""
    features = pd.DataFrame({
        "risk": labelled["risk"],
        "queue_at_prep": labelled["queue_at_prep"],
        "input_ng": labelled["input_ng"],
        "instrument": labelled["instrument_id"].map({name: i for i, name in enumerate(INSTRUMENTS)}),
        "kit": labelled["library_kit"].map({name: i for i, name in enumerate(LIBRARY_KITS)}),
        "day": (labelled["run_start_ts"] - labelled["run_start_ts"].min()).dt.days,
    })  # fmt: skip
    train = np.arange(len(features)) % 4 != 0
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, categorical_features=[3, 4], random_state=0)
    model.fit(features[train], labelled["failed"][train])
    predicted = model.predict_proba(features[~train])[:, 1]
    truth = labelled["failed"][~train]
    base = np.full(len(truth), labelled["failed"][train].mean())
    assert roc_auc_score(truth, predicted) > 0.75
    assert log_loss(truth, predicted) < 0.85 * log_loss(truth, base)


# --- turnaround ---------------------------------------------------------------------------------------


def test_turnaround_grows_with_the_queue_at_arrival(first_runs: pd.DataFrame) -> None:
    routine = first_runs[first_runs["priority"] == "routine"]
    assert spearmanr(routine["queue_at_receipt"], routine["turnaround_h"]).statistic > 0.3
    by_queue = routine["turnaround_h"].groupby(pd.qcut(routine["queue_at_receipt"], 4, labels=False)).median()
    assert by_queue.is_monotonic_increasing and by_queue.iloc[-1] > 1.5 * by_queue.iloc[0]


def test_turnaround_is_shorter_for_urgent_samples_and_depends_on_type_and_site(first_runs: pd.DataFrame) -> None:
    by_priority = first_runs.groupby("priority")["turnaround_h"].median()
    assert by_priority["urgent"] < 0.7 * by_priority["routine"]
    routine = first_runs[first_runs["priority"] == "routine"]
    by_type = routine.groupby("sample_type")["turnaround_h"].median()
    assert by_type["FFPE"] > by_type["DNA"] + 24  # PREP_MEDIAN_H 60 vs 18
    by_site = routine.groupby("site")["turnaround_h"].median()
    assert by_site["SITE-MIA"] > by_site["SITE-BOS"] + 12  # SITE_PREP_FACTOR 2.5


def test_a_quick_model_predicts_turnaround_at_receipt(first_runs: pd.DataFrame, one_thread: None) -> None:
    """What is known at receipt (queue, priority, type, site, weekday) explains turnaround."""
    codes = {c: first_runs[c].astype("category").cat.codes for c in ("priority", "sample_type", "site")}
    features = pd.DataFrame({
        "queue": first_runs["queue_at_receipt"], **codes,
        "weekday": first_runs["received_ts"].dt.weekday, "hour": first_runs["received_ts"].dt.hour,
    })  # fmt: skip
    target = np.log(first_runs["turnaround_h"])
    train = np.arange(len(features)) % 4 != 0
    model = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.05, categorical_features=[1, 2, 3, 4], random_state=0)
    model.fit(features[train], target[train])
    assert r2_score(target[~train], model.predict(features[~train])) > 0.25
    without_queue = HistGradientBoostingRegressor(
        max_iter=100, learning_rate=0.05, categorical_features=[0, 1, 2, 3], random_state=0
    )
    without_queue.fit(features.drop(columns="queue")[train], target[train])
    gain = r2_score(target[~train], model.predict(features[~train])) - r2_score(
        target[~train], without_queue.predict(features.drop(columns="queue")[~train])
    )
    assert gain > 0.05  # the queue is a real cause, not a proxy for the other columns


# --- files and the command line --------------------------------------------------------------------


def test_run_lims_headers_map_back_to_the_run_contract() -> None:
    assert set(RUN_LIMS_HEADERS) == set(RUN_CONTRACT.column_names)
    for name, header in RUN_LIMS_HEADERS.items():
        assert RUN_CONTRACT.normalise_column_name(header) == name
    assert RUN_EXPORT_STYLE.notes_column not in RUN_CONTRACT.column_names


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_exports_are_deterministic_split_by_run_and_parse_back(fmt: str, tmp_path) -> None:
    """Clean and messy files: same bytes twice; the project's parser reads them back to the frame."""
    expected = generate_runs(generate_samples(800, seed=4, id_offset=1000), seed=4, id_offset=1000)
    for messy in (False, True):
        paths = generate_run_exports(800, fmt, tmp_path / f"a{messy}", seed=4, files=3, messy=messy, id_offset=1000)
        again = generate_run_exports(800, fmt, tmp_path / f"b{messy}", seed=4, files=3, messy=messy, id_offset=1000)
        assert [p.name for p in paths] == [f"runs_export_{k:04d}.{fmt}" for k in (1, 2, 3)]
        assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
        parts = [read_export(path, contract=RUN_CONTRACT) for path in paths]
        assert all(len(issues) == 0 for _, issues, _ in parts)
        frames = [frame[list(RUN_CONTRACT.column_names)] for frame, _, _ in parts]
        assert not set(frames[0]["run_id"]) & set(frames[1]["run_id"])  # a run is never split
        read = pd.concat(frames, ignore_index=True)
        plan = messy_plan(export_file_seed(4, 1), fmt, RUN_EXPORT_STYLE)  # type: ignore[arg-type]
        want = expected.copy()
        if messy and plan.dialect in ("excel_de", "excel_uk"):  # dates to the minute
            for name in ("library_prep_ts", "run_start_ts", "run_end_ts"):
                want[name] = want[name].dt.floor("min")
        if messy and fmt == "csv":
            # Only file 1's plan is known here: compare it alone, and the others row count only.
            first = len(frames[0])
            pd.testing.assert_frame_equal(read.iloc[:first], want.iloc[:first], check_dtype=False)
            assert len(read) == len(want)
        else:
            pd.testing.assert_frame_equal(read, want, check_dtype=False)


def test_messy_csv_carries_run_headers_and_notes(tmp_path) -> None:
    frame = generate_runs(generate_samples(600, seed=2), seed=2)
    seed = next(
        s
        for s in range(200)
        if (lambda p: p.lims_headers and RUN_EXPORT_STYLE.notes_column in p.extra_columns)(messy_plan(s, "csv", RUN_EXPORT_STYLE))
    )
    data = write_run_export(frame, tmp_path / "m.csv", "csv", messy=True, seed=seed).read_bytes()
    plan = messy_plan(seed, "csv", RUN_EXPORT_STYLE)
    text = data.decode("cp1252" if plan.dialect == "legacy_cp1252" else "utf-8-sig")
    header = text.splitlines()[0]
    assert "Run ID" in header and "% Q30" in header and "run_notes" in header and "freezer_notes" not in header


def test_cli_writes_the_runs_of_the_samples_it_would_write(tmp_path) -> None:
    args = ["generate-exports", "--rows", "700", "--seed", "6", "--id-offset", "5000", "--files", "2", "--format", "jsonl"]
    runner = CliRunner()
    samples_result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    runs_result = runner.invoke(app, [*args, "--out", str(tmp_path), "--kind", "runs"])
    assert samples_result.exit_code == 0 and runs_result.exit_code == 0, runs_result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["lims_export_0001.jsonl", "lims_export_0002.jsonl", "runs_export_0001.jsonl", "runs_export_0002.jsonl"]
    sample_ids = pd.concat([pd.read_json(tmp_path / f"lims_export_000{k}.jsonl", lines=True) for k in (1, 2)])["sample_id"]
    run_rows = pd.concat([pd.read_json(tmp_path / f"runs_export_000{k}.jsonl", lines=True) for k in (1, 2)])
    assert run_rows["sample_id"].isin(set(sample_ids)).all() and len(run_rows) > 500
    wrong = runner.invoke(app, [*args, "--out", str(tmp_path), "--kind", "plates"])
    assert wrong.exit_code == 2 and "--kind must be samples or runs" in wrong.output
