"""Tests of the synthetic LIMS export generator: contract, determinism, hidden process, files."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracseq_dagster import generator as gen
from tracseq_dagster.contract import (
    COLUMN_BY_NAME,
    COLUMNS,
    CONTRACT_COLUMNS,
    DNA_TYPES,
    QC_STATUSES,
    RNA_TYPES,
    TIMESTAMP_COLUMNS,
    TIMESTAMP_ORDER,
    Kind,
    normalise_column_name,
)
from tracseq_dagster.generator import (
    HIDDEN_PROCESS,
    LIMS_HEADERS,
    MESSY_CSV_DIALECTS,
    generate_exports,
    generate_samples,
    hidden_quality_score,
    messy_plan,
    write_export,
)

DTYPE_OF_KIND = {
    Kind.STRING: "string",
    Kind.ENUM: "string",
    Kind.TIMESTAMP: "datetime64[ns, UTC]",
    Kind.FLOAT: "float64",
    Kind.INT: "Int64",
}


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    return generate_samples(20_000, seed=7)


@pytest.fixture(scope="module")
def labelled(samples: pd.DataFrame) -> pd.DataFrame:
    return samples[samples["qc_status"].notna()]


def contract_violations(frame: pd.DataFrame) -> list[str]:
    """Every contract rule, checked from contract.COLUMNS rather than restated."""
    problems = []
    for column in COLUMNS:
        values = frame[column.name]
        present = values.notna()
        if column.required and not present.all():
            problems.append(f"{column.name}: {int((~present).sum())} missing")
        values = values[present]
        if column.kind in (Kind.FLOAT, Kind.INT):
            numbers = values.astype(float)
            if column.minimum is not None:
                low = numbers <= column.minimum if column.exclusive_minimum else numbers < column.minimum
                if low.any():
                    problems.append(f"{column.name}: {int(low.sum())} below {column.minimum}")
            if column.maximum is not None and (numbers > column.maximum).any():
                problems.append(f"{column.name}: above {column.maximum}")
        if column.allowed is not None and not values.isin(column.allowed).all():
            problems.append(f"{column.name}: values outside {column.allowed}")
        if column.pattern is not None and not values.str.fullmatch(column.pattern).all():
            problems.append(f"{column.name}: values not matching {column.pattern}")
    for earlier, later in TIMESTAMP_ORDER:
        if (frame[later] < frame[earlier]).any():  # NaT compares False: order only when present
            problems.append(f"{earlier} after {later}")
    if (frame["sequencing_ts"].notna() & frame["extraction_ts"].isna()).any():
        problems.append("sequenced without extraction")
    if frame.loc[~frame["sample_type"].isin(RNA_TYPES), "rin"].notna().any():
        problems.append("rin outside RNA_TYPES")
    if frame.loc[~frame["sample_type"].isin(DNA_TYPES), "din"].notna().any():
        problems.append("din outside DNA_TYPES")
    return problems


def as_contract_types(frame: pd.DataFrame, timestamp_format: str = "ISO8601") -> pd.DataFrame:
    """A frame read by plain pandas, cast to the types generate_samples returns."""
    out = {}
    for name in CONTRACT_COLUMNS:
        kind = COLUMN_BY_NAME[name].kind
        values = frame[name]
        if kind is Kind.TIMESTAMP:
            out[name] = pd.to_datetime(values, utc=True, format=timestamp_format).astype("datetime64[ns, UTC]")
        elif kind in (Kind.STRING, Kind.ENUM):
            out[name] = values.astype("string")
        else:
            out[name] = values.astype(DTYPE_OF_KIND[kind])
    return pd.DataFrame(out)


def fail_rate(frame: pd.DataFrame, by: pd.Series) -> pd.Series:
    return (frame["qc_status"] == "fail").groupby(by, observed=True).mean()


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank sum."""
    ranks = pd.Series(score).rank().to_numpy()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# --- schema and contract ------------------------------------------------------------------------


def test_schema_and_dtypes_follow_the_contract(samples: pd.DataFrame) -> None:
    assert tuple(samples.columns) == CONTRACT_COLUMNS
    for column in COLUMNS:
        assert samples[column.name].dtype == DTYPE_OF_KIND[column.kind], column.name
    assert len(samples) == 20_000
    assert samples.index.equals(pd.RangeIndex(20_000))


def test_every_value_satisfies_the_contract(samples: pd.DataFrame) -> None:
    assert contract_violations(samples) == []


@settings(max_examples=15, deadline=None)
@given(
    rows=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
    id_offset=st.integers(0, 999_700),
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)),
    label_fraction=st.floats(0.0, 1.0),
)
def test_contract_holds_for_any_arguments(rows: int, seed: int, id_offset: int, start: datetime, label_fraction: float) -> None:
    frame = generate_samples(rows, seed=seed, id_offset=id_offset, start=pd.Timestamp(start), label_fraction=label_fraction)
    assert tuple(frame.columns) == CONTRACT_COLUMNS and len(frame) == rows
    assert contract_violations(frame) == []
    serials = frame["sample_id"].str.slice(8).astype(int)
    assert serials.tolist() == [n % 1_000_000 for n in range(id_offset + 1, id_offset + rows + 1)]
    assert frame["qc_status"].notna().sum() == rows - round((1 - label_fraction) * rows)


def test_ids_are_unique_numbered_in_receipt_order_and_carry_the_collection_year(samples: pd.DataFrame) -> None:
    assert samples["sample_id"].is_unique
    assert samples["received_ts"].is_monotonic_increasing
    assert samples["sample_id"].iloc[0] == f"TS-{samples['collection_ts'].iloc[0].year}-000001"
    years = samples["sample_id"].str.slice(3, 7).astype(int)
    assert (years == samples["collection_ts"].dt.year).all()
    assert set(years) == {2025}  # a year of collections from 2025-01-01 (UTC)
    mid_year = generate_samples(500, start=pd.Timestamp("2025-07-01", tz="UTC"))["sample_id"]
    assert set(mid_year.str.slice(3, 7)) == {"2025", "2026"}


def test_the_millionth_serial_fits_six_digits() -> None:
    ids = generate_samples(10, id_offset=999_990)["sample_id"]
    assert ids.is_unique and ids.str.fullmatch(COLUMN_BY_NAME["sample_id"].pattern).all()
    assert ids.str.slice(8).tolist() == [f"{n:06d}" for n in range(999_991, 1_000_000)] + ["000000"]


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="six serial digits"):
        generate_samples(11, id_offset=999_990)
    with pytest.raises(ValueError, match="label_fraction"):
        generate_samples(10, label_fraction=1.5)
    with pytest.raises(ValueError, match="unknown format"):
        generate_exports(10, "xlsx", Path("unused"))


# --- realistic distributions -------------------------------------------------------------------


def test_time_distributions_are_realistic(samples: pd.DataFrame) -> None:
    span = samples["collection_ts"].max() - samples["collection_ts"].min()
    assert pd.Timedelta(days=350) < span <= pd.Timedelta(days=366)
    transit_h = (samples["received_ts"] - samples["collection_ts"]) / pd.Timedelta(hours=1)
    assert 2 < transit_h.median() < 48
    assert (transit_h > 72).mean() > 0.02  # some samples spend days in transit
    delay_h = (samples["extraction_ts"] - samples["received_ts"]) / pd.Timedelta(hours=1)
    assert 12 < delay_h.median() < 96 and delay_h.max() > 14 * 24
    assert 0.01 < samples["extraction_ts"].isna().mean() < 0.1
    assert samples["sequencing_ts"].isna().mean() > samples["extraction_ts"].isna().mean()


def test_measurements_are_realistic(samples: pd.DataFrame) -> None:
    median_temp = samples.groupby("sample_type")["storage_temp_c"].median()
    for sample_type, target in gen.STORAGE_TARGET_C.items():
        assert abs(median_temp[sample_type] - target) < 1.0, sample_type
    off_target = (samples["storage_temp_c"] - samples["sample_type"].map(gen.STORAGE_TARGET_C).astype(float)).abs()
    assert 0.02 < (off_target > 3).mean() < 0.1
    assert (samples["max_temp_deviation_c"] >= off_target - 1e-9).all()
    rna = samples["sample_type"].isin(RNA_TYPES)
    assert 0.9 < samples.loc[rna, "rin"].notna().mean() < 1.0  # a few missing even for RNA
    assert 0.9 < samples.loc[~rna, "din"].notna().mean() < 1.0
    assert samples["storage_location"].str.fullmatch(COLUMN_BY_NAME["storage_location"].pattern).all()
    assert samples["operator_id"].nunique() == 25 and samples["site"].nunique() == 8
    assert 0.03 < (samples["priority"] == "urgent").mean() < 0.12


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_the_same_frame_and_another_seed_does_not() -> None:
    first = generate_samples(2_000, seed=11)
    pd.testing.assert_frame_equal(first, generate_samples(2_000, seed=11))
    other = generate_samples(2_000, seed=12)
    assert not first.equals(other)
    assert (first["a260_280"] != other["a260_280"]).mean() > 0.5


def test_messy_files_are_deterministic(tmp_path: Path) -> None:
    frame = generate_samples(500, seed=3)
    for fmt in ("csv", "jsonl"):
        a = write_export(frame, tmp_path / f"a.{fmt}", fmt, messy=True, seed=5).read_bytes()
        b = write_export(frame, tmp_path / f"b.{fmt}", fmt, messy=True, seed=5).read_bytes()
        assert a == b


# --- labels and the hidden process -------------------------------------------------------------


def test_label_distribution_is_as_documented(samples: pd.DataFrame, labelled: pd.DataFrame) -> None:
    assert samples["qc_status"].notna().mean() == pytest.approx(0.85, abs=0.001)
    share = labelled["qc_status"].value_counts(normalize=True)
    assert set(share.index) == set(QC_STATUSES)
    assert share["pass"] == pytest.approx(0.65, abs=0.04)
    assert share["borderline"] == pytest.approx(0.20, abs=0.04)
    assert share["fail"] == pytest.approx(0.15, abs=0.04)
    # Not yet QC'd: mostly the most recent receipts.
    position = np.arange(len(samples)) / len(samples)
    unlabelled = samples["qc_status"].isna().to_numpy()
    assert position[unlabelled].mean() > 0.85
    assert (position[unlabelled] > 0.75).mean() > 0.95


def test_fail_rate_rises_with_freeze_thaw_cycles(labelled: pd.DataFrame) -> None:
    buckets = pd.cut(labelled["freeze_thaw_cycles"].astype(int), [-1, 0, 1, 2, 4, 50])
    rates = fail_rate(labelled, buckets)
    assert rates.is_monotonic_increasing and rates.iloc[-1] > rates.iloc[0] + 0.3, rates


def test_fail_rate_rises_with_worse_purity(labelled: pd.DataFrame) -> None:
    ideal = labelled["sample_type"].map(gen.A260_280_IDEAL).astype(float)
    distance = (labelled["a260_280"] - ideal).abs()
    rates = fail_rate(labelled, pd.cut(distance, [-0.01, 0.05, 0.1, 0.2, 0.35, 5]))
    assert rates.is_monotonic_increasing and rates.iloc[-1] > rates.iloc[0] + 0.2, rates
    salt = (labelled["a260_230"] - gen.A260_230_IDEAL).abs()
    rates_230 = fail_rate(labelled, pd.qcut(salt, 4))
    assert rates_230.is_monotonic_increasing, rates_230


def test_bad_operators_and_sites_fail_more(labelled: pd.DataFrame) -> None:
    overall = (labelled["qc_status"] == "fail").mean()
    by_operator = fail_rate(labelled, labelled["operator_id"])
    by_site = fail_rate(labelled, labelled["site"])
    assert by_operator["OP-007"] > overall + 0.08
    assert by_site["SITE-HOU"] > overall + 0.05
    assert by_site["SITE-BOS"] < by_site["SITE-HOU"]


def test_hidden_score_predicts_the_labels(labelled: pd.DataFrame) -> None:
    score = hidden_quality_score(labelled)
    grade = labelled["qc_status"].map({"pass": 0, "borderline": 1, "fail": 2}).astype(float).to_numpy()
    spearman = pd.Series(score).rank().corr(pd.Series(grade).rank())  # without importing scipy
    assert spearman > 0.6
    assert auc(score, grade == 2) > 0.9
    assert auc(score, grade >= 1) > 0.85
    # Ordered classes: mean score rises from pass to borderline to fail.
    means = pd.Series(score).groupby(grade).mean()
    assert means.is_monotonic_increasing


def test_hidden_score_is_the_documented_formula() -> None:
    """One hand-built sample, every term of the module docstring computed by hand."""
    row = generate_samples(1, seed=0).iloc[:0].copy()
    t0 = pd.Timestamp("2025-03-01", tz="UTC")
    values = {
        "sample_id": "TS-2025-000001",
        "project_id": "PRJ-0001",
        "sample_type": "RNA",
        "collection_ts": t0,
        "received_ts": t0 + pd.Timedelta(days=1),
        "extraction_ts": t0 + pd.Timedelta(days=6),
        "sequencing_ts": t0 + pd.Timedelta(days=11),
        "storage_temp_c": -70.0,
        "temp_excursions": 2,
        "max_temp_deviation_c": 10.0,
        "freeze_thaw_cycles": 3,
        "concentration_ng_ul": 50.0,
        "volume_ul": 40.0,
        "a260_280": 1.9,
        "a260_230": 1.6,
        "rin": 5.0,
        "din": None,
        "storage_location": "FRZ-01/R1/B1/A1",
        "box_occupancy": 10,
        "operator_id": "OP-007",
        "site": "SITE-HOU",
        "priority": "routine",
        "qc_status": None,
    }
    row.loc[0] = values
    row = row.astype(generate_samples(1).dtypes.to_dict())
    p = HIDDEN_PROCESS
    expected = (
        p.age_per_day * 11  # collected -> sequenced
        + p.deviation_per_c * 10.0
        + p.per_excursion * 2
        + p.per_freeze_thaw * 3
        + p.purity_280_per_unit * 0.1  # RNA ideal 2.0
        + p.purity_230_per_unit * 0.5
        + p.integrity_per_point * (p.integrity_floor - 5.0)
        + p.delay_per_day * (5 - p.delay_grace_days)
        + p.storage_offset_per_c * 10.0  # RNA target -80
        + gen.OPERATOR_EFFECT["OP-007"]
        + gen.SITE_EFFECT["SITE-HOU"]
    )
    assert hidden_quality_score(row)[0] == pytest.approx(expected)
    # Missing steps and measurements add nothing; age then runs to receipt.
    row["extraction_ts"] = row["sequencing_ts"] = pd.Series([pd.NaT], dtype="datetime64[ns, UTC]")
    row["rin"] = np.nan
    shorter = expected - p.age_per_day * 10 - p.integrity_per_point * 2 - p.delay_per_day * 2
    assert hidden_quality_score(row)[0] == pytest.approx(shorter)


# --- export files ------------------------------------------------------------------------------


def test_generate_exports_splits_rows_with_disjoint_ids(tmp_path: Path) -> None:
    paths = generate_exports(3_001, "csv", tmp_path, seed=2, files=4, id_offset=5_000)
    assert [p.name for p in paths] == [f"lims_export_{i:04d}.csv" for i in range(1, 5)]
    ids = [set(pd.read_csv(p)["sample_id"]) for p in paths]
    assert sum(map(len, ids)) == 3_001 and len(set().union(*ids)) == 3_001
    serials = sorted(int(i[-6:]) for chunk in ids for i in chunk)
    assert serials == list(range(5_001, 8_002))
    more = generate_exports(100, "parquet", tmp_path / "next", files=2, id_offset=8_001)
    assert not set().union(*ids) & set(pd.concat(pd.read_parquet(p) for p in more)["sample_id"])


def test_clean_csv_round_trips_through_plain_pandas(tmp_path: Path) -> None:
    frame = generate_samples(2_000, seed=4)
    path = write_export(frame, tmp_path / "x.csv", "csv")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(",".join(CONTRACT_COLUMNS) + "\n")
    assert re.search(r",\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z,", text)
    pd.testing.assert_frame_equal(as_contract_types(pd.read_csv(path)), frame)


def test_clean_parquet_round_trips_with_types(tmp_path: Path) -> None:
    frame = generate_samples(2_000, seed=4)
    path = write_export(frame, tmp_path / "x.parquet", "parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)


def test_clean_jsonl_round_trips_through_plain_pandas(tmp_path: Path) -> None:
    frame = generate_samples(2_000, seed=4)
    path = write_export(frame, tmp_path / "x.jsonl", "jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2_000
    first = json.loads(lines[0])
    assert list(first) == list(CONTRACT_COLUMNS)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", first["received_ts"])
    assert any(json.loads(line)["rin"] is None for line in lines[:50])  # null for missing
    read = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    pd.testing.assert_frame_equal(as_contract_types(read), frame)


def seed_with(predicate, fmt: str = "csv") -> int:
    """The first seed whose messy plan satisfies ``predicate``."""
    return next(seed for seed in range(200) if predicate(messy_plan(seed, fmt)))


def test_fast_date_formatting_agrees_with_pandas() -> None:
    rng = np.random.default_rng(0)
    stamps = pd.to_datetime(rng.integers(-2_000_000_000, 4_000_000_000, 2_000), unit="s").to_numpy()
    stamps[::97] = np.datetime64("NaT")
    for pattern in ("%Y-%m-%dT%H:%M:%SZ", "%d.%m.%Y %H:%M", "%d/%m/%Y %H:%M"):
        ours = gen._strftime(stamps, pattern).to_pylist()
        theirs = pd.Series(stamps).dt.strftime(pattern).astype(object).where(lambda s: s.notna(), None).tolist()
        assert ours == theirs, pattern


def test_lims_headers_map_back_to_the_contract() -> None:
    assert set(LIMS_HEADERS) == set(CONTRACT_COLUMNS)
    for name, header in LIMS_HEADERS.items():
        assert normalise_column_name(header) == name
    for extra in ("freezer_notes", "LIMS Batch", "Operator Note"):
        assert normalise_column_name(extra) not in CONTRACT_COLUMNS


def test_messy_csv_dialects_really_appear(tmp_path: Path) -> None:
    frame = generate_samples(400, seed=8)

    def written(dialect: str) -> bytes:
        seed = seed_with(lambda plan: plan.dialect == dialect)
        return write_export(frame, tmp_path / f"{dialect}.csv", "csv", messy=True, seed=seed).read_bytes()

    german = written("excel_de")
    assert german.startswith(b"\xef\xbb\xbf")
    text = german.decode("utf-8-sig")
    assert text.splitlines()[0].count(";") >= len(CONTRACT_COLUMNS)
    assert re.search(r";-?\d+,\d+;", text)  # decimal comma
    assert re.search(r";\d{2}\.\d{2}\.\d{4} \d{2}:\d{2};", text)
    british = written("excel_uk").decode("utf-8-sig")
    assert re.search(r",\d{2}/\d{2}/\d{4} \d{2}:\d{2},", british)
    offsets = written("iso_offsets").decode("utf-8")
    assert re.search(r"T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}[,\n]", offsets)
    assert re.search(r"T\d{2}:\d{2}:\d{2}[,\n]", offsets)  # naive ones mixed in
    legacy = written("legacy_cp1252")
    with pytest.raises(UnicodeDecodeError):
        legacy.decode("utf-8")
    legacy_text = legacy.decode("cp1252")
    assert "Operator Note" in legacy_text and re.search("[éüö]", legacy_text)


def test_messy_csv_extra_reordered_lims_columns_and_blank_lines(tmp_path: Path) -> None:
    frame = generate_samples(300, seed=9)
    seed = seed_with(lambda p: p.reorder and p.lims_headers and p.trailing_blank_lines > 0 and p.dialect == "iso_offsets")
    plan = messy_plan(seed, "csv")
    text = write_export(frame, tmp_path / "m.csv", "csv", messy=True, seed=seed).read_text(encoding="utf-8")
    header = text.splitlines()[0].split(",")
    assert set(plan.extra_columns) <= set(header)
    assert "Sample ID" in header and "A260/280" in header
    contract_order = [normalise_column_name(h) for h in header if normalise_column_name(h) in CONTRACT_COLUMNS]
    assert sorted(contract_order) == sorted(CONTRACT_COLUMNS) and contract_order != list(CONTRACT_COLUMNS)
    assert text.endswith("\n" * (plan.trailing_blank_lines + 1))


@pytest.mark.parametrize("dialect", list(MESSY_CSV_DIALECTS))
def test_messy_csv_keeps_every_value(dialect: str, tmp_path: Path) -> None:
    """A tolerant reader that knows the dialect recovers the frame (day-first dates to the minute)."""
    frame = generate_samples(500, seed=21)
    spec = MESSY_CSV_DIALECTS[dialect]
    seed = seed_with(lambda plan: plan.dialect == dialect)
    path = write_export(frame, tmp_path / "m.csv", "csv", messy=True, seed=seed)
    read = pd.read_csv(path, sep=spec.delimiter, decimal=spec.decimal, encoding=spec.encoding)
    read = read.rename(columns=normalise_column_name)
    timestamp_format = "mixed" if spec.date_format is None else spec.date_format
    expected = frame.copy()
    if spec.date_format is not None and "%S" not in spec.date_format:
        for name in TIMESTAMP_COLUMNS:
            expected[name] = expected[name].dt.floor("min")
    pd.testing.assert_frame_equal(as_contract_types(read, timestamp_format), expected)


def test_messy_parquet_has_extra_reordered_and_zoned_columns(tmp_path: Path) -> None:
    frame = generate_samples(500, seed=13)
    path = write_export(frame, tmp_path / "m.parquet", "parquet", messy=True, seed=1)
    read = pd.read_parquet(path)
    assert set(messy_plan(1, "parquet").extra_columns) <= set(read.columns)
    assert [c for c in read.columns if c in CONTRACT_COLUMNS] != list(CONTRACT_COLUMNS)
    zones = {str(getattr(read[name].dt, "tz", None)) for name in TIMESTAMP_COLUMNS}
    assert "Europe/Berlin" in zones and "None" in zones  # zone-aware and naive (UTC) columns
    for name in TIMESTAMP_COLUMNS:
        values = read[name]
        values = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        pd.testing.assert_series_equal(values.astype("datetime64[ns, UTC]"), frame[name])


def test_messy_jsonl_has_extra_reordered_keys_and_offsets(tmp_path: Path) -> None:
    frame = generate_samples(500, seed=13)
    path = write_export(frame, tmp_path / "m.jsonl", "jsonl", messy=True, seed=2)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 500
    keys = list(records[0])
    assert set(messy_plan(2, "jsonl").extra_columns) <= set(keys)
    assert [k for k in keys if k in CONTRACT_COLUMNS] != list(CONTRACT_COLUMNS)
    stamps = [r["collection_ts"] for r in records]
    assert any(re.search(r"[+-]\d{2}:\d{2}$", s) for s in stamps) and any(len(s) == 19 for s in stamps)
    read = pd.DataFrame.from_records(records)
    pd.testing.assert_frame_equal(as_contract_types(read, "mixed"), frame)
