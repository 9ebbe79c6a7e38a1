"""The prediction log: one row per prediction the service made, for the A/B and drift reports.

Two stores behind one interface (:class:`PredictionLog`), chosen by :func:`open_prediction_log`:

* **Parquet** (a folder path or ``file://`` URL, the default): one file per flush,
  ``<root>/date=YYYY-MM-DD/part-<utc time>-<pid>-<uuid>.parquet``. Several service workers
  write at once without coordinating: every file has a name no other writer can pick, and
  is written under a hidden temporary name and renamed, so a reader sees whole files or
  none. A file that still cannot be read (copied in half by hand, a full disk) is skipped
  with a warning, never fatal.
* **PostgreSQL** (``postgresql://…``): the table ``prediction_log``, created when missing,
  filled in batches with ``execute_values``.

The request path never writes: it hands rows to a :class:`BackgroundLogWriter`, whose thread
writes a batch every ``flush_interval_s``. When the store is slow or down the queue fills up
to ``max_queue_rows`` and then further rows are dropped and counted, so serving never waits on
the log and never fails because of it. With ``retry_s`` (the service sets it), a batch whose
write failed goes back to the head of the queue and is written once the store answers again,
through a circuit breaker (:mod:`.dependencies`) that reports the outage to ``/readyz``.
PostgreSQL writes are idempotent (a unique index on ``request_id``, ``ON CONFLICT DO NOTHING``),
so a batch retried after a commit whose acknowledgement was lost is not logged twice.

Columns (:data:`PREDICTION_LOG_COLUMNS`): the answer (request id, time, variant, model version,
P(pass), category, predicted status, latency, the catalog model that answered, its answered
value and the entity key) then the feature vector the model saw. The feature columns
(:data:`LOG_FEATURES`) are the union of every catalog model's features, read from the catalog
when this module is imported (so a new model's features are logged with no change here):
numeric as float64, categorical as text; a row fills its own model's and leaves the others
empty. ``entity_key`` is the row's key exactly as the model's ``labelled_rows`` index spells it
(:func:`entity_key`: ``RUN-…/TS-…`` for a run-and-sample entity), so labels join exactly.

Older logs still read: Parquet files written before a column existed get nulls for it, and a
PostgreSQL table gets every missing column added when first opened. Rows written before the log
kept the model read as the original service's (:data:`~tracseq_dagster.serving.SERVED_MODEL`),
and rows without an entity key read with their ``sample_id`` as key. ``read`` returns one
model's rows (that one by default, which the drift and A/B reports read), or every model's with
``model=None``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tracseq_dagster.features import FEATURE_SPEC_BY_NAME, SAMPLE_ID, FeatureSpec
from tracseq_dagster.models import ModelSpec, catalog
from tracseq_dagster.serving import SERVED_MODEL
from tracseq_dagster.serving.dependencies import CircuitBreaker

__all__ = [
    "ENTITY_KEY_COLUMN",
    "LOG_FEATURES",
    "PREDICTION_LOG_COLUMNS",
    "BackgroundLogWriter",
    "ParquetPredictionLog",
    "PostgresPredictionLog",
    "PredictionLog",
    "entity_key",
    "feature_specs",
    "last_hours",
    "open_prediction_log",
]

logger = logging.getLogger(__name__)

#: The answer's columns, in order; the feature vector follows.
ANSWER_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",
    "sample_id",
    "variant",
    "model_version",
    "quality_probability",
    "category",
    "predicted_status",
    "latency_ms",
    "model",  # the catalog model that answered
    "prediction",  # its answered value: P(target class), or a regressor's prediction
    "entity_key",  # the model's entity key, as its labelled_rows index spells it
)
TIME_COLUMN = "ts"
MODEL_COLUMN = "model"
ENTITY_KEY_COLUMN = "entity_key"
#: Separator of the parts of a multi-column entity key ("RUN-…/TS-…"), as ``labelled_rows`` joins them.
KEY_SEPARATOR = "/"
#: The stand-in for an entity column a request does not carry (a library not yet on a run):
#: followed by the request id, so the key is the request's own and never equals a real one.
UNASSIGNED = "unassigned:"


def feature_specs(spec: ModelSpec) -> dict[str, FeatureSpec]:
    """How each feature of a model is read: its serving declaration, else the sample features'."""
    return {**FEATURE_SPEC_BY_NAME, **{s.name: s for s in spec.serving.feature_specs}}


def _log_features() -> dict[str, bool]:
    """Every catalog model's features (the original service's model first), each True when stored as text.

    A feature is text when a model declares it categorical, or declares nothing about it (text
    keeps any value; drift reads numbers back from it); otherwise float64.
    """
    models = sorted(catalog().values(), key=lambda spec: spec.name != SERVED_MODEL)  # stable: catalog order otherwise
    text: dict[str, bool] = {}
    for spec in models:
        declared = feature_specs(spec)
        for name in spec.features:
            if name in ANSWER_COLUMNS:
                raise ValueError(f"{spec.name}: the feature {name!r} has the name of a prediction log column; rename it")
            known = declared.get(name)
            text[name] = text.get(name, False) or known is None or known.kind == "categorical"
    return text


_TEXT_FEATURE = _log_features()
#: The feature columns of the log: the union of every catalog model's features.
LOG_FEATURES: tuple[str, ...] = tuple(_TEXT_FEATURE)
PREDICTION_LOG_COLUMNS: tuple[str, ...] = (*ANSWER_COLUMNS, *LOG_FEATURES)
_FLOAT_COLUMNS = frozenset(
    {"quality_probability", "latency_ms", "prediction", *(n for n, text in _TEXT_FEATURE.items() if not text)}
)

#: The Arrow schema of every Parquet file (and of what ``read`` returns, as pandas).
SCHEMA = pa.schema(
    [
        pa.field(
            name, pa.timestamp("us", tz="UTC") if name == TIME_COLUMN else pa.float64() if name in _FLOAT_COLUMNS else pa.string()
        )
        for name in PREDICTION_LOG_COLUMNS
    ]
)


class PredictionLog(Protocol):
    """Where predictions are kept. ``append`` writes one batch synchronously (rows, or a frame of
    the log's columns from a columnar batch); ``read`` a time window."""

    def append(self, rows: list[dict[str, Any]] | pd.DataFrame | pa.Table) -> None: ...

    def read(
        self, since: datetime | None = None, until: datetime | None = None, *, model: str | None = SERVED_MODEL
    ) -> pd.DataFrame: ...


def open_prediction_log(target: str) -> PredictionLog:
    """The log at ``target``: ``postgresql://…`` → PostgreSQL; a folder path or ``file://`` URL → Parquet."""
    scheme = urlparse(target).scheme.split("+")[0]
    if scheme in ("postgresql", "postgres"):
        return PostgresPredictionLog(target)
    if scheme == "file":
        return ParquetPredictionLog(url2pathname(urlparse(target).path))
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ValueError(f"prediction log {target!r}: use a folder path, file://… or postgresql://…")
    return ParquetPredictionLog(target)


def entity_key(entity: Sequence[str], record: dict[str, Any], request_id: str) -> str:
    """The row's entity key as ``labelled_rows`` spells it: the entity columns' values joined by
    :data:`KEY_SEPARATOR`. A column the request does not carry (a library without ``run_id``)
    becomes ``unassigned:<request id>``: no labelled row has that key, so the row never joins."""
    parts = (record.get(column) for column in entity)
    return KEY_SEPARATOR.join(f"{UNASSIGNED}{request_id}" if part is None or part == "" else str(part) for part in parts)


def last_hours(hours: float) -> tuple[datetime, datetime]:
    """The window ``[now - hours, now)`` in UTC, as ``read`` takes it."""
    until = datetime.now(UTC)
    return until - timedelta(hours=hours), until


# -- rows → a typed frame ---------------------------------------------------------------------


def rows_to_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a frame with exactly :data:`PREDICTION_LOG_COLUMNS`, typed; unknown keys are ignored.

    A missing ``ts`` becomes now: a row is never lost for want of a time.
    """
    frame = pd.DataFrame.from_records(list(rows), columns=list(PREDICTION_LOG_COLUMNS))
    typed = typed_frame(frame)
    if typed[TIME_COLUMN].isna().any():
        typed[TIME_COLUMN] = typed[TIME_COLUMN].fillna(pd.Timestamp.now(tz="UTC"))
    return typed


def as_log_frame(rows: Sequence[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Rows (dicts) or a frame of log columns, typed as the log keeps them."""
    return typed_frame(rows) if isinstance(rows, pd.DataFrame) else rows_to_frame(rows)


def typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Any frame of log columns with the log's types: ts UTC, floats float64, the rest ``string``."""
    out = {}
    for name in PREDICTION_LOG_COLUMNS:
        if name not in frame.columns:  # another model's feature, a column older rows lack: all empty, made cheaply
            out[name] = pd.Series(None, index=frame.index, dtype=_empty_dtype(name))
            continue
        column = frame[name]
        if name == TIME_COLUMN:
            out[name] = pd.to_datetime(column, utc=True, errors="coerce", format="mixed")
        elif name in _FLOAT_COLUMNS:
            out[name] = pd.to_numeric(column, errors="coerce").astype("float64")
        else:
            # Categorical features arrive as pandas categoricals from compute_features: keep the
            # labels (None, NaN and NA all become NA).
            out[name] = column.astype("string")
    out[MODEL_COLUMN] = out[MODEL_COLUMN].fillna(SERVED_MODEL)  # rows from before the log kept the model
    out[ENTITY_KEY_COLUMN] = out[ENTITY_KEY_COLUMN].fillna(out[SAMPLE_ID])  # ... or the entity key: a sample's
    return pd.DataFrame(out, index=frame.index)


def log_table(rows: Sequence[dict[str, Any]] | pd.DataFrame | pa.Table) -> pa.Table:
    """Rows, a frame of log columns or a table, as an Arrow table of :data:`SCHEMA`: what the Parquet log writes.

    The types of :func:`typed_frame`, built column by column straight into Arrow: assembling a
    pandas frame of every catalog model's columns first (most of them empty) cost a fifth of a
    columnar batch's CPU in the service (py-spy, 100,000-row batches). A missing ``ts`` becomes now.
    """
    if isinstance(rows, pa.Table):
        return rows
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    n = len(frame)
    columns: dict[str, pa.Array] = {}
    for field in SCHEMA:
        name = field.name
        column = frame[name] if name in frame.columns else None
        if column is None and name != TIME_COLUMN:  # another model's feature, a column older rows lack
            columns[name] = pa.nulls(n, field.type)
            continue
        if name == TIME_COLUMN:
            values = pd.to_datetime(
                pd.Series(pd.NaT, index=frame.index) if column is None else column, utc=True, errors="coerce", format="mixed"
            )
            values = values.fillna(pd.Timestamp.now(tz="UTC")) if values.isna().any() else values
        elif name in _FLOAT_COLUMNS:
            values = pd.to_numeric(column, errors="coerce").astype("float64")
        else:
            columns[name] = _text_array(column)
            continue
        columns[name] = pa.array(values, type=field.type, from_pandas=True)
    columns[MODEL_COLUMN] = pc.fill_null(columns[MODEL_COLUMN], SERVED_MODEL)
    columns[ENTITY_KEY_COLUMN] = pc.coalesce(columns[ENTITY_KEY_COLUMN], columns[SAMPLE_ID])
    return pa.table(columns, schema=SCHEMA)


def _text_array(column: pd.Series) -> pa.Array:
    """A text column as the log keeps it: categoricals by their labels, None, NaN and NA as null.

    Text (or text categories) goes straight to Arrow; anything else (numbers or mixed values
    in a column no model declared) is worded by pandas, as :func:`typed_frame` does. pandas'
    ``astype("string")`` checks every value in Python: 55 ms for a 100,000-row column.
    """
    try:
        array = pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if array is not None:
        kind = array.type.value_type if pa.types.is_dictionary(array.type) else array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
            return array.cast(pa.string())
    return pa.array(column.astype("string"), type=pa.string(), from_pandas=True)


#: Parquet dictionary-encodes only the columns with few distinct values: encoding the unique
#: ids and the float features tried and gave up on each, and cost two thirds of a write.
_DICTIONARY_COLUMNS = [name for name in PREDICTION_LOG_COLUMNS
                       if name not in _FLOAT_COLUMNS and name not in (TIME_COLUMN, "request_id", SAMPLE_ID, ENTITY_KEY_COLUMN)]  # fmt: skip


def _empty_dtype(name: str) -> str:
    return "datetime64[ns, UTC]" if name == TIME_COLUMN else "float64" if name in _FLOAT_COLUMNS else "string"


def of_model(frame: pd.DataFrame, model: str | None) -> pd.DataFrame:
    """The rows of one model (all with None)."""
    return frame if model is None else frame[frame[MODEL_COLUMN] == model].reset_index(drop=True)


def _in_window(frame: pd.DataFrame, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= frame[TIME_COLUMN] >= _utc(since)
    if until is not None:
        keep &= frame[TIME_COLUMN] < _utc(until)
    return frame[keep].sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)


def _utc(moment: datetime | pd.Timestamp | str) -> pd.Timestamp:
    """Naive times are UTC, as everywhere in the project."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# -- Parquet ----------------------------------------------------------------------------------


class ParquetPredictionLog:
    """A folder of Parquet files under date partitions; safe with many writer processes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def append(self, rows: list[dict[str, Any]] | pd.DataFrame | pa.Table) -> None:
        table = log_table(rows)
        if not table.num_rows:
            return
        # A batch that straddles midnight goes to both days' partitions.
        days = pc.floor_temporal(table[TIME_COLUMN], unit="day")
        first, last = (v.as_py() for v in pc.min_max(days).values())
        if first == last:  # the usual case: one file, no copy of the table
            self._write_file(self.root / f"date={first:%Y-%m-%d}", table)
            return
        for day in pc.unique(days).to_pylist():
            self._write_file(self.root / f"date={day:%Y-%m-%d}", table.filter(pc.equal(days, pa.scalar(day, days.type))))

    def _write_file(self, folder: Path, table: pa.Table) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"part-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"
        # Hidden while being written: readers list only visible *.parquet names.
        tmp = folder / f".{name}.tmp"
        try:
            pq.write_table(table, tmp, use_dictionary=_DICTIONARY_COLUMNS)
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        return folder / name

    def files(self, since: datetime | None = None, until: datetime | None = None) -> list[Path]:
        """The finished files of the date partitions that can hold rows of [since, until)."""
        first = None if since is None else _utc(since).strftime("%Y-%m-%d")
        last = None if until is None else _utc(until).strftime("%Y-%m-%d")
        out = []
        for folder in sorted(self.root.glob("date=*")):
            day = folder.name.removeprefix("date=")
            if (first is None or day >= first) and (last is None or day <= last):
                out += sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
        return out

    def read(
        self, since: datetime | None = None, until: datetime | None = None, *, model: str | None = SERVED_MODEL
    ) -> pd.DataFrame:
        files = self.files(since, until)
        if not files:
            return typed_frame(pd.DataFrame(columns=list(PREDICTION_LOG_COLUMNS)))
        try:
            # One multi-threaded scan; files written before a feature was added get nulls for it.
            table = ds.dataset([str(f) for f in files], schema=SCHEMA, format="parquet").to_table()
        except (pa.ArrowException, OSError):
            table = self._read_one_by_one(files)
        return of_model(_in_window(typed_frame(table.to_pandas()), since, until), model)

    def _read_one_by_one(self, files: list[Path]) -> pa.Table:
        """The slow path when some file is unreadable: every other file, and a warning per bad one."""
        tables = []
        for path in files:
            try:
                tables.append(ds.dataset(str(path), schema=SCHEMA, format="parquet").to_table())
            except (pa.ArrowException, OSError) as error:
                logger.warning("prediction log: skipping unreadable file %s (%s)", path, error)
        return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


# -- PostgreSQL -------------------------------------------------------------------------------


class PostgresPredictionLog:
    """The table ``prediction_log`` in a PostgreSQL database (created on first use).

    Connections give up after ``connect_timeout_s`` (unless the URL sets ``connect_timeout``),
    so a server that is unreachable holds the background writer for seconds, not minutes.
    """

    def __init__(self, url: str, table: str = "prediction_log", connect_timeout_s: int = 3) -> None:
        # psycopg2 (libpq) takes postgresql:// URLs, not SQLAlchemy's postgresql+psycopg2://.
        scheme, rest = url.split("://", 1)
        self.url = f"{scheme.split('+')[0]}://{rest}"
        self.table = table
        self.connect_timeout_s = connect_timeout_s
        self._ready = False

    def _connect(self) -> Any:  # psycopg2 ships no types: its connection is Any here
        import psycopg2

        options = {} if "connect_timeout" in self.url else {"connect_timeout": self.connect_timeout_s}
        connection = psycopg2.connect(self.url, **options)
        if not self._ready:
            try:
                self._create_table(connection)
            except Exception:
                connection.close()
                raise
            self._ready = True
        return connection

    def ping(self) -> None:
        """Raises when the database does not answer (the readiness probe)."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            connection.close()

    def _create_table(self, connection) -> None:  # type: ignore[no-untyped-def]
        sql_types = {
            name: "timestamptz" if t == pa.timestamp("us", tz="UTC") else "double precision" if t == pa.float64() else "text"
            for name, t in zip(SCHEMA.names, SCHEMA.types)
        }
        columns = ", ".join(f'"{name}" {sql_types[name]}' for name in PREDICTION_LOG_COLUMNS)
        with connection, connection.cursor() as cursor:
            # Several workers start at once: IF NOT EXISTS alone races on the catalog.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
            cursor.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" ({columns})')
            cursor.execute(f'CREATE INDEX IF NOT EXISTS "{self.table}_ts" ON "{self.table}" (ts)')
            for name in PREDICTION_LOG_COLUMNS:  # a table made before a column was added gets it
                cursor.execute(f'ALTER TABLE "{self.table}" ADD COLUMN IF NOT EXISTS "{name}" {sql_types[name]}')
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
                # Makes retried batches idempotent (ON CONFLICT DO NOTHING in append).
                cursor.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{self.table}_request_id" ON "{self.table}" (request_id)')
        except Exception as error:  # an older table that already holds a repeated id: plain inserts
            logger.warning(
                "prediction log: no unique index on %s.request_id (%s); a retried batch may repeat rows", self.table, error
            )

    def append(self, rows: list[dict[str, Any]] | pd.DataFrame | pa.Table) -> None:
        frame = as_log_frame(rows.to_pandas() if isinstance(rows, pa.Table) else rows)
        if frame.empty:
            return
        from psycopg2.extras import execute_values

        values = [
            tuple(None if _missing(v) else v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in record)
            for record in frame.astype(object).itertuples(index=False, name=None)
        ]
        names = ", ".join(f'"{c}"' for c in PREDICTION_LOG_COLUMNS)
        connection = self._connect()
        try:
            with connection, connection.cursor() as cursor:
                # ON CONFLICT without a target: idempotent where the unique index exists, a plain insert otherwise.
                execute_values(
                    cursor, f'INSERT INTO "{self.table}" ({names}) VALUES %s ON CONFLICT DO NOTHING', values, page_size=1000
                )
        finally:
            connection.close()

    def read(
        self, since: datetime | None = None, until: datetime | None = None, *, model: str | None = SERVED_MODEL
    ) -> pd.DataFrame:
        names = ", ".join(f'"{c}"' for c in PREDICTION_LOG_COLUMNS)
        where, params = [], []
        if model is not None:
            where.append("COALESCE(model, %s) = %s")
            params += [SERVED_MODEL, model]
        if since is not None:
            where.append("ts >= %s")
            params.append(_utc(since).to_pydatetime())
        if until is not None:
            where.append("ts < %s")
            params.append(_utc(until).to_pydatetime())
        sql = f'SELECT {names} FROM "{self.table}"' + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY ts"
        connection = self._connect()
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(sql, params)
                records = cursor.fetchall()
        finally:
            connection.close()
        return typed_frame(pd.DataFrame.from_records(records, columns=list(PREDICTION_LOG_COLUMNS)))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value))


# -- the writer the request path uses ---------------------------------------------------------


class BackgroundLogWriter:
    """Queues rows in memory; a daemon thread writes them to ``log`` every ``flush_interval_s``.

    ``submit`` only takes a lock for an append to a deque: it never waits for a write, never
    raises, and when ``max_queue_rows`` are already waiting it drops the rows and adds them to
    ``dropped`` (and calls ``on_dropped(count)``). ``written`` counts rows the log accepted.

    A failed write is logged and counted in ``write_failures``. Without ``retry_s`` its rows are
    lost (added to ``failed``). With ``retry_s`` they go back to the head of the queue (rows
    beyond ``max_queue_rows`` are dropped and counted, the newest first, as ``submit`` would
    have), and the writer tries again after ``retry_s``: an outage of the store costs rows only
    once the queue is full. ``breaker`` (if given) hears of every write's outcome, for
    ``/readyz`` and ``/metrics``.

    Create one per process, after the server forks its workers (a thread does not survive a
    fork). ``close()`` at shutdown writes what is queued; an interpreter that exits without it
    still flushes, from an ``atexit`` hook.
    """

    def __init__(
        self,
        log: PredictionLog,
        *,
        flush_interval_s: float = 1.0,
        max_queue_rows: int = 200_000,
        retry_s: float | None = None,
        breaker: CircuitBreaker | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.log = log
        self.flush_interval_s = flush_interval_s
        self.max_queue_rows = max_queue_rows
        self.retry_s = retry_s
        self.breaker = breaker
        self.on_dropped = on_dropped
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self.write_failures = 0
        self._pending: deque[list[dict[str, Any]] | pd.DataFrame] = deque()
        self._pending_rows = 0
        self._closed = False
        self._retry_at = 0.0  # monotonic time before which the thread does not try again
        self._queue_lock = threading.Lock()  # guards the queue; never held while writing
        self._write_lock = threading.Lock()  # one write at a time, from the thread or flush()
        self._wake = threading.Event()
        # A big burst (a batch request) is written at once rather than after the interval.
        self._wake_rows = max(1, max_queue_rows // 4)
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    @property
    def queued(self) -> int:
        return self._pending_rows

    def submit(self, rows: list[dict[str, Any]] | pd.DataFrame) -> None:
        """Queue rows: dicts, or a frame of the log's columns (a columnar batch logs in bulk)."""
        try:
            count = len(rows)
            if not count:
                return
            with self._queue_lock:
                if self._closed or self._pending_rows + count > self.max_queue_rows:
                    self.dropped += count
                    dropped = count
                else:
                    dropped = 0
                    self._pending.append(rows if isinstance(rows, pd.DataFrame) else list(rows))
                    self._pending_rows += count
                wake = self._pending_rows >= self._wake_rows
            if dropped:
                self._report_dropped(dropped)
            elif wake:
                self._wake.set()
        except Exception:  # the request path must never fail because of the log
            logger.exception("prediction log: could not queue rows")

    def flush(self) -> None:
        """Write everything queued so far (waits for a write in progress first)."""
        with self._write_lock:
            with self._queue_lock:
                batches, self._pending = self._pending, deque()
                count, self._pending_rows = self._pending_rows, 0
            if not count:
                return
            try:
                rows = [row for batch in batches if not isinstance(batch, pd.DataFrame) for row in batch]
                frames = [b for b in batches if isinstance(b, pd.DataFrame)]
                if frames:  # columnar batches came: one table, the single predictions' rows in it
                    self.log.append(pa.concat_tables([log_table(f) for f in ([rows] if rows else []) + frames]))
                else:
                    self.log.append(rows)
            except Exception as error:
                self.write_failures += 1
                if self.breaker is not None:
                    self.breaker.failed(error, "write", went_without=self.retry_s is None)
                if self.retry_s is None:
                    self.failed += count
                    logger.exception("prediction log: could not write %d rows; they are lost", count)
                else:
                    self._retry_at = time.monotonic() + self.retry_s
                    self._requeue(batches)
                    logger.warning(
                        "prediction log: could not write %d rows (%s); kept, trying again in %.1f s", count, error, self.retry_s
                    )
                return
            self.written += count
            self._retry_at = 0.0
            if self.breaker is not None:
                self.breaker.succeeded()

    def _requeue(self, batches: deque[list[dict[str, Any]] | pd.DataFrame]) -> None:
        """Failed batches back at the head of the queue; what no longer fits is dropped from the tail."""
        with self._queue_lock:
            self._pending.extendleft(reversed(batches))
            self._pending_rows += sum(len(b) for b in batches)
            excess = self._pending_rows - self.max_queue_rows
            dropped = 0
            while excess > 0 and self._pending:
                last = self._pending.pop()
                if len(last) > excess:  # keep the head of the newest batch
                    self._pending.append(
                        last.iloc[: len(last) - excess] if isinstance(last, pd.DataFrame) else last[: len(last) - excess]
                    )
                    dropped += excess
                    excess = 0
                else:
                    dropped += len(last)
                    excess -= len(last)
            self._pending_rows -= dropped
            self.dropped += dropped
        if dropped:
            self._report_dropped(dropped)

    def _report_dropped(self, count: int) -> None:
        if self.on_dropped is not None:
            try:
                self.on_dropped(count)
            except Exception:
                logger.exception("prediction log: on_dropped failed")

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking rows, write what is queued, stop the thread. Safe to call twice."""
        with self._queue_lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout_s)
        self.flush()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._closed:
                self.flush()
                return
            if time.monotonic() >= self._retry_at:  # after a failure, wait out the retry interval
                self.flush()


def _close_at_exit(writer: weakref.ref[BackgroundLogWriter]) -> None:
    """Flush a writer nobody closed (a weak reference: the hook must not keep writers alive)."""
    alive = writer()
    if alive is not None:
        alive.close(timeout_s=5.0)
