"""The prediction log: Parquet with several writer processes, partial files, PostgreSQL, the background writer;
every catalog model's features and entity key, and logs written before them (Parquet files, a PostgreSQL table)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prediction_log_helpers import prediction_rows

from tracseq_dagster.features import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES, compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.models import catalog, get_model
from tracseq_dagster.serving.prediction_log import (
    LOG_FEATURES,
    PREDICTION_LOG_COLUMNS,
    SCHEMA,
    BackgroundLogWriter,
    ParquetPredictionLog,
    PostgresPredictionLog,
    entity_key,
    log_table,
    open_prediction_log,
    typed_frame,
)

START = pd.Timestamp("2026-03-01T23:59:30Z")  # batches straddle midnight


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    samples = generate_samples(120, seed=2)
    return compute_features(samples, samples, as_of=None).reset_index()


def _check_types(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == PREDICTION_LOG_COLUMNS
    assert str(frame["ts"].dtype).startswith("datetime64") and str(frame["ts"].dt.tz) == "UTC"
    for name in ("quality_probability", "latency_ms", *NUMERIC_FEATURES):
        assert frame[name].dtype == "float64", name
    for name in ("request_id", "sample_id", "variant", "model_version", "category", "predicted_status", *CATEGORICAL_FEATURES):
        assert frame[name].dtype == "string", name


def test_open_prediction_log_picks_the_store_from_the_target(tmp_path: Path) -> None:
    assert isinstance(open_prediction_log(str(tmp_path / "log")), ParquetPredictionLog)
    from_url = open_prediction_log((tmp_path / "log").as_uri())
    assert isinstance(from_url, ParquetPredictionLog) and from_url.root == tmp_path / "log"
    assert isinstance(open_prediction_log("postgresql://postgres@127.0.0.1/x"), PostgresPredictionLog)
    assert open_prediction_log("postgresql+psycopg2://u@h/db").url == "postgresql://u@h/db"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="s3://"):
        open_prediction_log("s3://bucket/log")


def test_parquet_log_round_trip_partitions_and_window(tmp_path: Path, features: pd.DataFrame) -> None:
    log = ParquetPredictionLog(tmp_path / "log")
    rows = prediction_rows(features, start=START)
    log.append(rows)
    days = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert days == ["date=2026-03-01", "date=2026-03-02"]  # 30 rows before midnight, 90 after
    assert len(log.files(until=pd.Timestamp("2026-03-01T12:00Z"))) == 1

    frame = log.read()
    _check_types(frame)
    assert len(frame) == 120 and frame["request_id"].is_unique and frame["ts"].is_monotonic_increasing
    # The feature vector comes back as it went in (categoricals as their labels).
    back = frame.set_index("request_id").loc[[r["request_id"] for r in rows]]
    assert back["sample_id"].tolist() == features["sample_id"].tolist()
    pd.testing.assert_series_equal(
        back["purity_score"].reset_index(drop=True), features["purity_score"].reset_index(drop=True), check_names=False
    )
    assert back["sample_type"].tolist() == features["sample_type"].astype(str).tolist()

    window = log.read(since=pd.Timestamp("2026-03-02T00:00:00Z"), until=pd.Timestamp("2026-03-02T00:00:10Z"))
    assert len(window) == 10 and window["ts"].min() == pd.Timestamp("2026-03-02T00:00:00Z")
    assert log.read(since=pd.Timestamp("2027-01-01")).empty
    _check_types(ParquetPredictionLog(tmp_path / "nothing").read())


WRITER = """
import sys, time
import pandas as pd
sys.path.insert(0, {tests!r})
from prediction_log_helpers import prediction_rows
from tracseq_dagster.features import compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.serving.prediction_log import BackgroundLogWriter, open_prediction_log

samples = generate_samples(20, seed=int(sys.argv[1]))
features = compute_features(samples, samples, as_of=None).reset_index()
writer = BackgroundLogWriter(open_prediction_log(sys.argv[2]), flush_interval_s=0.01)
for batch in range(40):
    writer.submit(prediction_rows(features, start=pd.Timestamp.now(tz="UTC"), prefix=f"w{{sys.argv[1]}}-{{batch}}"))
    time.sleep(0.005)
writer.close()
print(writer.written, writer.dropped, writer.failed)
"""


def test_parquet_log_with_two_writer_processes_and_a_reader(tmp_path: Path) -> None:
    root = tmp_path / "log"
    script = WRITER.format(tests=str(Path(__file__).parent))
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(seed), str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for seed in (1, 2)
    ]
    log = ParquetPredictionLog(root)
    seen = []
    while any(w.poll() is None for w in writers):  # read while both write: only whole files are ever seen
        seen.append(len(log.read()))
        time.sleep(0.02)
    outputs = [w.communicate() for w in writers]
    assert all(w.returncode == 0 for w in writers), outputs
    assert [o[0].split() for o in outputs] == [["800", "0", "0"]] * 2

    frame = log.read()
    assert len(frame) == 1600 and frame["request_id"].is_unique
    assert all(n % 20 == 0 for n in seen) and seen == sorted(seen)  # whole submits only, never fewer
    pids = {p.name.split("-")[2] for p in log.files()}
    assert len(pids) == 2 and not list(root.rglob(".*.tmp"))


def test_parquet_log_skips_partial_and_temporary_files(
    tmp_path: Path, features: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    log = ParquetPredictionLog(tmp_path / "log")
    log.append(prediction_rows(features.head(10), start=pd.Timestamp("2026-03-01T10:00Z")))
    (good,) = log.files()
    # A writer killed mid-write leaves its hidden temporary file; a careless copy leaves half a file.
    (good.parent / f".{good.name}.tmp").write_bytes(good.read_bytes()[:100])
    (good.parent / "part-copied-in-half.parquet").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (good.parent / "part-empty.parquet").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="tracseq_dagster.serving.prediction_log"):
        frame = log.read()
    assert len(frame) == 10
    assert "part-copied-in-half.parquet" in caplog.text and "part-empty.parquet" in caplog.text
    # Writing goes on beside the broken files.
    log.append(prediction_rows(features.head(5), start=pd.Timestamp("2026-03-01T11:00Z"), prefix="more"))
    assert len(log.read()) == 15


def test_postgres_log_creates_its_table_and_reads_a_window(postgres_url: str, features: pd.DataFrame) -> None:
    workers = [PostgresPredictionLog(postgres_url) for _ in range(3)]
    rows = prediction_rows(features, start=START)
    # Three workers creating the table and writing at once.
    threads = [threading.Thread(target=w.append, args=(rows[i::3],)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    frame = open_prediction_log(postgres_url).read()
    _check_types(frame)
    assert len(frame) == 120 and frame["request_id"].is_unique and frame["ts"].is_monotonic_increasing
    first = frame.set_index("request_id").loc["req-0"]
    assert first["sample_id"] == features["sample_id"].iloc[0] and first["ts"] == START
    assert first["sample_type"] == str(features["sample_type"].iloc[0])
    assert first["integrity_score"] == pytest.approx(features["integrity_score"].iloc[0], nan_ok=True)
    window = workers[0].read(since=pd.Timestamp("2026-03-02T00:00:00Z"), until=pd.Timestamp("2026-03-02T00:00:10Z"))
    assert window["request_id"].tolist() == [f"req-{i}" for i in range(30, 40)]
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT sample_id) FROM prediction_log")
        assert cursor.fetchone() == (120, 120)
        cursor.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'prediction_log' AND column_name = 'ts'"
        )
        assert cursor.fetchone()[0] == "timestamp with time zone"


class _SlowLog:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.rows = seconds, []

    def append(self, rows: list[dict]) -> None:
        time.sleep(self.seconds)
        self.rows += rows

    def read(self, since=None, until=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        return pd.DataFrame(self.rows)


class _BlockedLog(_SlowLog):
    def __init__(self) -> None:
        super().__init__(0.0)
        self.release = threading.Event()

    def append(self, rows: list[dict]) -> None:
        self.release.wait(30)
        self.rows += rows


class _FlakyLog(_SlowLog):
    def __init__(self) -> None:
        super().__init__(0.0)
        self.broken = True

    def append(self, rows: list[dict]) -> None:
        if self.broken:
            raise ConnectionError("database is down")
        self.rows += rows


def _submit_in_a_thread(writer: BackgroundLogWriter, count: int) -> threading.Thread:
    """``count`` single-row submits on their own thread, joined (30 s at most: a hang, not a pace)."""
    submitter = threading.Thread(target=lambda: [writer.submit([{"request_id": str(i)}]) for i in range(count)])
    submitter.start()
    submitter.join(timeout=30)
    return submitter


def test_background_writer_submit_does_not_wait_for_a_slow_log() -> None:
    log = _BlockedLog()  # every write waits until released: as slow a log as can be
    writer = BackgroundLogWriter(log, flush_interval_s=0.01)
    # All 2000 submits return while the log has not finished a single write (no wall-clock bound:
    # a submit that waited for the write would still be blocked when the join gives up).
    assert not _submit_in_a_thread(writer, 2000).is_alive() and log.rows == []
    log.release.set()
    writer.close()
    assert len(log.rows) == 2000 and writer.written == 2000 and writer.dropped == 0
    assert not writer._thread.is_alive()


def test_background_writer_drops_and_counts_when_the_queue_is_full() -> None:
    log = _BlockedLog()
    writer = BackgroundLogWriter(log, flush_interval_s=0.01, max_queue_rows=100)
    assert not _submit_in_a_thread(writer, 300).is_alive() and log.rows == []  # a blocked store never blocks submit
    assert writer.dropped >= 100 and writer.queued <= 100
    log.release.set()
    writer.close()
    assert writer.written + writer.dropped == 300 and len(log.rows) == writer.written
    writer.submit([{"request_id": "late"}])  # after close: dropped, counted, no error
    assert writer.written + writer.dropped == 301


def test_background_writer_survives_a_failing_log(caplog: pytest.LogCaptureFixture) -> None:
    log = _FlakyLog()
    writer = BackgroundLogWriter(log, flush_interval_s=60)
    writer.submit([{"request_id": "a"}, {"request_id": "b"}])
    with caplog.at_level(logging.ERROR, logger="tracseq_dagster.serving.prediction_log"):
        writer.flush()  # must not raise
    assert writer.failed == 2 and "database is down" in caplog.text
    writer.submit(None)  # type: ignore[arg-type]  # nonsense is swallowed too
    log.broken = False
    writer.submit([{"request_id": "c"}])
    writer.close()
    assert [r["request_id"] for r in log.rows] == ["c"] and writer.written == 1


def test_background_writer_into_parquet_keeps_every_row(tmp_path: Path, features: pd.DataFrame) -> None:
    log = ParquetPredictionLog(tmp_path / "log")
    writer = BackgroundLogWriter(log, flush_interval_s=0.05)
    for i in range(0, 120, 12):
        writer.submit(prediction_rows(features.iloc[i : i + 12], start=START, prefix=f"b{i}"))
    writer.flush()
    assert len(log.read()) == 120
    writer.close()
    assert set(log.read()[list(FEATURE_NAMES)].columns) == set(FEATURE_NAMES)


def test_rows_queued_when_the_process_exits_are_still_written(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from tracseq_dagster.serving.prediction_log import BackgroundLogWriter, open_prediction_log\n"
        "writer = BackgroundLogWriter(open_prediction_log(sys.argv[1]), flush_interval_s=3600)\n"
        "writer.submit([{'request_id': 'last-words', 'sample_id': 'TS-2026-000001', 'ts': '2026-03-01T10:00:00Z'}])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "log")], check=True, timeout=120)
    frame = ParquetPredictionLog(tmp_path / "log").read()
    assert frame["request_id"].tolist() == ["last-words"] and frame["ts"].iloc[0] == pd.Timestamp("2026-03-01T10:00:00Z")


# -- every catalog model's features and entity key; logs written before them -------------------

#: The log's columns before it kept the model, its answer and the entity key: the sample features only.
OLD_COLUMNS = ("request_id", "ts", "sample_id", "variant", "model_version", "quality_probability", "category",
               "predicted_status", "latency_ms", *FEATURE_NAMES)  # fmt: skip
RUN = "RUN-2026-00007"


def _library_row(sample_id: str, request_id: str) -> dict:
    """A sequencing_success row as the catalog predictor logs it: its 38 features, the run/sample key."""
    spec = get_model("sequencing_success")
    vector = {
        name: (f"SEQ-0{len(name) % 4}" if name in ("instrument_id", "library_kit") else float(len(name)))
        for name in spec.features
    }
    vector |= {"sample_type": "DNA", "processing_delay_category": "same_day"}
    return {"request_id": request_id, "ts": START, "sample_id": sample_id, "variant": "champion", "model_version": "3",
            "model": spec.name, "prediction": 0.8, "quality_probability": 0.8,
            "entity_key": entity_key(spec.entity, {"run_id": RUN, "sample_id": sample_id}, request_id), **vector}  # fmt: skip


def test_the_log_has_every_catalog_models_features_typed_by_their_declarations() -> None:
    union = {name for spec in catalog().values() for name in spec.features}
    assert set(LOG_FEATURES) == union and len(LOG_FEATURES) == len(union) and LOG_FEATURES[: len(FEATURE_NAMES)] == FEATURE_NAMES
    assert {"instrument_failure_rate", "instrument_id", "queue_length", "priority", "hour_received"} <= set(LOG_FEATURES)
    frame = ParquetPredictionLog("/nonexistent").read(model=None)
    assert tuple(frame.columns) == PREDICTION_LOG_COLUMNS
    for name in ("instrument_id", "library_kit", "priority", "site", *CATEGORICAL_FEATURES):
        assert frame[name].dtype == "string", name
    for name in ("instrument_failure_rate", "queue_length", "is_rerun", "hour_received", "recent_median_turnaround_hours"):
        assert frame[name].dtype == "float64", name
    # The key as labelled_rows spells it; without a run id, the request's own key that never joins.
    assert entity_key(("run_id", "sample_id"), {"run_id": RUN, "sample_id": "TS-2026-000001"}, "r1") == f"{RUN}/TS-2026-000001"
    assert entity_key(("run_id", "sample_id"), {"sample_id": "TS-2026-000001"}, "r1") == "unassigned:r1/TS-2026-000001"
    assert (
        entity_key(("run_id", "sample_id"), {"run_id": None, "sample_id": "TS-2026-000001"}, "r2")
        == "unassigned:r2/TS-2026-000001"
    )
    assert entity_key(("sample_id",), {"sample_id": "TS-2026-000001", "run_id": RUN}, "r1") == "TS-2026-000001"


def _check_old_and_new(log: ParquetPredictionLog | PostgresPredictionLog, old: pd.DataFrame) -> None:
    """Old rows read as sample_quality's, keyed by sample_id, other models' features empty; the new row whole."""
    frame = log.read(model=None)
    _check_types(frame)
    assert len(frame) == len(old) + 1
    before = frame[frame["request_id"].isin(old["request_id"])]
    assert (before["model"] == "sample_quality").all() and (before["entity_key"] == before["sample_id"]).all()
    assert (
        before["instrument_failure_rate"].isna().all()
        and before["instrument_id"].isna().all()
        and before["prediction"].isna().all()
    )
    pd.testing.assert_series_equal(before.set_index("request_id")["purity_score"].loc[old["request_id"]].reset_index(drop=True),
                                   old["purity_score"].reset_index(drop=True), check_names=False)  # fmt: skip
    (library,) = log.read(model="sequencing_success").to_dict("records")
    expected = _library_row("TS-2026-000001", "new-0")
    assert library["entity_key"] == f"{RUN}/TS-2026-000001" and library["instrument_id"] == expected["instrument_id"]
    assert (
        library["instrument_failure_rate"] == expected["instrument_failure_rate"] and library["is_rerun"] == expected["is_rerun"]
    )
    assert library["sample_type"] == "DNA" and pd.isna(library["hour_received"])  # turnaround_hours' own feature: empty
    assert len(log.read()) == len(old)  # the default model's rows: the old ones


def test_an_old_format_parquet_log_still_reads_beside_new_files(tmp_path: Path, features: pd.DataFrame) -> None:
    old = pd.DataFrame(prediction_rows(features.head(6), start=START - pd.Timedelta(hours=1), prefix="old"))[list(OLD_COLUMNS)]
    old = old.astype({name: "string" for name in ("sample_type", "processing_delay_category")})
    folder = tmp_path / "log" / f"date={START:%Y-%m-%d}"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(old, preserve_index=False), folder / "part-20260301T000000-1-old.parquet")
    log = ParquetPredictionLog(tmp_path / "log")
    log.append([_library_row("TS-2026-000001", "new-0")])
    assert len(log.files()) == 2
    _check_old_and_new(log, old)


def test_an_old_postgres_table_gets_the_new_columns_and_still_reads(postgres_url: str, features: pd.DataFrame) -> None:
    old = pd.DataFrame(prediction_rows(features.head(6), start=START - pd.Timedelta(hours=1), prefix="old"))[list(OLD_COLUMNS)]
    types = {"ts": "timestamptz", **{c: "double precision" for c in ("quality_probability", "latency_ms", *NUMERIC_FEATURES)}}
    columns = ", ".join(f"{name} {types.get(name, 'text')}" for name in OLD_COLUMNS)
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE prediction_log ({columns})")  # as the log created it before
        for record in old.astype(object).where(old.notna(), None).itertuples(index=False, name=None):
            cursor.execute(
                f"INSERT INTO prediction_log VALUES ({', '.join(['%s'] * len(OLD_COLUMNS))})",
                tuple(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in record),
            )
    log = PostgresPredictionLog(postgres_url)
    assert len(log.read(model=None)) == 6  # opening the log adds the columns; the old rows read
    log.append([_library_row("TS-2026-000001", "new-0")])
    _check_old_and_new(log, old)
    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'prediction_log'")
        columns = dict(cursor.fetchall())
    assert set(columns) == set(PREDICTION_LOG_COLUMNS)
    assert (
        columns["entity_key"] == columns["instrument_id"] == "text" and columns["instrument_failure_rate"] == "double precision"
    )


def test_the_arrow_path_types_rows_exactly_as_the_pandas_path(features: pd.DataFrame) -> None:
    """``log_table`` (what the Parquet log writes) builds Arrow columns directly; it must keep
    what :func:`typed_frame` keeps: category labels, text of numbers and booleans in undeclared
    text columns, nulls for None/NaN/NA, another model's columns empty, the model and the
    entity key filled in."""
    rows = prediction_rows(features.head(12), start=START)
    frame = pd.DataFrame(rows)
    frame[CATEGORICAL_FEATURES[0]] = pd.Categorical([None, *["x", "y"] * 5, "x"])
    frame["category"] = [True, False, None, 3, "low", 2.5, None, "high", "medium", "low", "x", None]
    frame["model"] = None
    frame["entity_key"] = [None] * 6 + [f"k{i}" for i in range(6)]
    expected = pa.Table.from_pandas(typed_frame(frame), schema=SCHEMA, preserve_index=False)
    assert log_table(frame).equals(expected)
    assert log_table(frame)["model"].to_pylist() == ["sample_quality"] * 12
    without_time = log_table(frame.drop(columns=["ts"]))["ts"]
    assert without_time.null_count == 0  # a row is never lost for want of a time
