"""The columnar batch contract: a table of raw LIMS records in, a table of answers out.

``POST /fast/batch_predict`` takes an Apache Arrow IPC stream
(``application/vnd.apache.arrow.stream``) or a Parquet file (``application/vnd.apache.parquet``)
whose columns are the export contract's (the ``SampleRecord`` fields; extra columns and
``qc_status`` are ignored), and answers a table of the same format, one row per input row, in
order. Nothing here is per record: the body is read by Arrow, typed by the parser's
:func:`~tracseq_dagster.parsing.coerce_columns` and checked by the contract's vectorised rules
(:mod:`tracseq_dagster.rules`, through :func:`~tracseq_dagster.validation.validate_samples`),
the same code the ingest runs, so a JSON record and an Arrow row are held to one contract.
A bad table is refused as a whole, 400, one entry per bad cell: ``loc`` is
``["samples", <0-based row>, <field>…]`` like ``/batch_predict``'s, with the rule and a message
naming the value.

Why a second contract beside JSON ``/batch_predict``: per record, pydantic validation and a
JSON answer cost about 0.25 ms, which caps a JSON batch near 4,000 rows/s whatever the model;
Arrow in and out costs microseconds per row (see BENCHMARKS.md).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from tracseq_dagster.contract import REQUIRED_COLUMNS
from tracseq_dagster.features import FEATURE_NAMES, FeatureColumns
from tracseq_dagster.parsing import coerce_columns
from tracseq_dagster.rules import Rule, UniqueInExportRule, contract_rules
from tracseq_dagster.serving.advice import CATEGORIES, answered, categories, top_risk_factors
from tracseq_dagster.serving.request_schema import REQUEST_COLUMNS
from tracseq_dagster.serving.scoring import PASS
from tracseq_dagster.validation import validate_samples

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
#: Media types a columnar body may have (``application/x-parquet`` is what older tools send).
MEDIA_TYPES: dict[str, str] = {ARROW_STREAM: ARROW_STREAM, PARQUET: PARQUET, "application/x-parquet": PARQUET}
#: The largest table one call may carry; bigger ones are refused with 400, not queued.
MAX_TABLE_ROWS = 1_000_000
#: At most this many bad cells are listed in a 400 (``count`` says how many there were).
MAX_LISTED_ERRORS = 1_000

# Duplicated ids are judged as /batch_predict judges them (the same record twice is fine, two
# different records under one id are not), below; the cross-export rule is the ingest's business.
_RULES: tuple[Rule, ...] = tuple(r for r in contract_rules(include_cross_export_uniqueness=False)
                                 if not isinstance(r, UniqueInExportRule))  # fmt: skip


class ColumnarError(ValueError):
    """A body the columnar contract refuses: ``detail`` names each bad row and field (400)."""

    def __init__(self, message: str, detail: list[dict[str, Any]] | None = None, count: int | None = None) -> None:
        super().__init__(message)
        self.detail = detail or []
        self.count = len(self.detail) if count is None else count

    def payload(self) -> dict[str, Any]:
        return {"error": str(self), "count": self.count, "detail": self.detail}


def media_type(header: str | None) -> str | None:
    """The columnar media type a Content-Type (or Accept) header names, else None."""
    if not header:
        return None
    for part in header.split(","):
        found = MEDIA_TYPES.get(part.split(";", 1)[0].strip().lower())
        if found:
            return found
    return None


def read_table(body: bytes, kind: str) -> pa.Table:
    """The request's table; an unreadable body is a ColumnarError, never a 500."""
    try:
        if kind == PARQUET:
            return pq.read_table(pa.BufferReader(body))
        with ipc.open_stream(pa.BufferReader(body)) as reader:
            return reader.read_all()
    except (pa.ArrowException, OSError, ValueError) as error:
        raise ColumnarError(f"the body is not a readable {kind} table: {error}") from error


def write_table(table: pa.Table, kind: str) -> bytes:
    """The answer in the request's format."""
    sink = io.BytesIO()
    if kind == PARQUET:
        pq.write_table(table, sink, compression="none")
    else:
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue()


@dataclass(frozen=True)
class ValidTable:
    """A validated request: the typed frame of its distinct samples, and where each row went."""

    frame: pd.DataFrame  # the typed export frame (parser convention), one row per distinct record
    rows: np.ndarray  # for every request row, its row in ``frame``


def validate_table(table: pa.Table, *, now: pd.Timestamp | None = None) -> ValidTable:
    """Type and check every row against the export contract, or raise ColumnarError naming them."""
    n = table.num_rows
    if n == 0:
        raise ColumnarError("the table has no rows", [{"loc": ["samples"], "msg": "at least 1 row is required"}])
    if n > MAX_TABLE_ROWS:
        raise ColumnarError(f"the table has {n:,} rows; at most {MAX_TABLE_ROWS:,} per call",
                            [{"loc": ["samples"], "msg": f"at most {MAX_TABLE_ROWS} rows"}])  # fmt: skip
    names = set(table.column_names)
    missing = [c for c in REQUEST_COLUMNS if c in REQUIRED_COLUMNS and c not in names]
    if missing:
        detail = [{"loc": ["samples", c], "rule": f"required:{c}", "msg": "required column is missing"} for c in missing]
        raise ColumnarError(f"{len(missing)} required columns are missing", detail)
    raw = {name: table.column(name) for name in REQUEST_COLUMNS if name in names}
    try:
        frame, issues, _ = coerce_columns(raw, np.arange(1, n + 1, dtype=np.int64))
    except (pa.ArrowException, ValueError, TypeError) as error:  # a nested or binary column, say
        raise ColumnarError(f"the table's columns cannot be read as the export contract's: {error}") from error
    checked = validate_samples(frame, issues, rules=_RULES, now=now)
    bad = checked.violations
    detail = [_entry(row, rule, column, message) for row, rule, column, message in
              zip(bad["_row_number"].head(MAX_LISTED_ERRORS).tolist(), bad["rule"].head(MAX_LISTED_ERRORS).tolist(),
                  bad["column"].head(MAX_LISTED_ERRORS).tolist(), bad["message"].head(MAX_LISTED_ERRORS).tolist())]  # fmt: skip
    conflicts = _conflicting_repeats(frame)
    detail += conflicts[: max(0, MAX_LISTED_ERRORS - len(detail))]
    if detail:
        count = len(bad) + len(conflicts)
        raise ColumnarError(f"{count} validation errors", detail, count)
    return _distinct(frame)


def _entry(row: int, rule: str, column: str, message: str) -> dict[str, Any]:
    return {"loc": ["samples", int(row) - 1, *column.split(",")], "rule": rule, "msg": message}


def _conflicting_repeats(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows that repeat an earlier row's sample_id with other values (as /batch_predict refuses)."""
    ids = frame["sample_id"]
    repeated = ids.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return []
    part = frame.loc[repeated, list(REQUEST_COLUMNS)]
    hashes = pd.util.hash_pandas_object(part, index=False).to_numpy()
    first_hash = pd.Series(hashes, index=part.index).groupby(part["sample_id"].to_numpy()).transform("first").to_numpy()
    conflict = part.index[hashes != first_hash]
    return [{"loc": ["samples", int(i), "sample_id"], "rule": "unique:sample_id",
             "msg": f"sample_id {sid!r} appears earlier with other values"}
            for i, sid in zip(conflict, ids.iloc[conflict])]  # fmt: skip


def _distinct(frame: pd.DataFrame) -> ValidTable:
    """One row per sample id (the feature code needs unique ids); repeats point at their first row."""
    ids = frame["sample_id"]
    if not ids.duplicated().any():
        return ValidTable(frame, np.arange(len(frame)))
    first = ~ids.duplicated().to_numpy()
    unique = frame.loc[first].reset_index(drop=True)
    rows = pd.Index(unique["sample_id"]).get_indexer(ids)
    return ValidTable(unique, rows)


@dataclass(frozen=True)
class TableAnswers:
    """What :meth:`SampleQualityPredictor.predict_table` computed, per distinct sample (``valid.frame``'s rows)."""

    valid: ValidTable
    features: FeatureColumns  # in ``valid.frame``'s order
    classes: tuple[str, ...]
    probabilities: np.ndarray  # (n, classes)
    contributions: np.ndarray  # (n, FEATURE_NAMES), toward pass
    variant_code: np.ndarray  # index into ``variants``
    variants: tuple[str, ...]
    versions: tuple[str, ...]  # per variant
    methods: tuple[str, ...]  # attribution method per variant
    model_name: str
    bundle: str
    recommendations: list[list[str]] | None = None
    # what the recommendations were worded from, per distinct row (plain record, feature values): kept for
    # their SOP citations (table_citations.py), which would otherwise convert every row again
    worded_from: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None

    @property
    def quality_probability(self) -> np.ndarray:
        return self.probabilities[:, self.classes.index(PASS)]

    @cached_property
    def status_code(self) -> np.ndarray:
        """Per distinct sample, the index in ``classes`` of its most probable status (answer and log share it)."""
        return np.nanargmax(np.nan_to_num(self.probabilities, nan=-1.0), axis=1)

    def table(self, batch_id: str, *, cached: bool = False) -> pa.Table:
        """The answer: one row per request row, in order; per row what /batch_predict answers
        (risk factors as ``risk_factor_<i>`` feature names and ``risk_contribution_<i>``)."""
        rows = self.valid.rows
        p_pass = answered(self.quality_probability)[rows]
        status = self.status_code[rows]
        factor, contribution = top_risk_factors(self.contributions)
        columns: dict[str, pa.Array] = {
            "sample_id": pa.array(self.valid.frame["sample_id"].to_numpy(dtype=object)[rows], pa.string()),
            "request_id": request_ids(batch_id, len(rows)),
            "quality_probability": pa.array(p_pass),
            "category": _labels(categories(p_pass), CATEGORIES),
            "predicted_status": _labels(status, self.classes),
            **{f"p_{c}": pa.array(answered(self.probabilities[rows, k])) for k, c in enumerate(self.classes)},
            "variant": _labels(self.variant_code[rows], self.variants),
            "model_version": _labels(self.variant_code[rows], self.versions),
            "attribution": _labels(self.variant_code[rows], self.methods),
        }
        for i in range(factor.shape[1]):
            columns[f"risk_factor_{i + 1}"] = _labels(factor[rows, i], FEATURE_NAMES)
            columns[f"risk_contribution_{i + 1}"] = pa.array(contribution[rows, i], from_pandas=True)
        if self.recommendations is not None:
            columns["recommendations"] = pa.array([self.recommendations[r] for r in rows], pa.list_(pa.string()))
        metadata = {"model": self.model_name, "bundle": self.bundle, "batch_id": batch_id, "cached": str(cached).lower()}
        return pa.table(columns).replace_schema_metadata(metadata)

    def log_frame(self, batch_id: str, latency_ms: float) -> pd.DataFrame:
        """The prediction log's rows (:data:`~.prediction_log.PREDICTION_LOG_COLUMNS`), one per request row."""
        rows = self.valid.rows
        frame = self.features.take(rows).frame(sort=False).reset_index(drop=True)
        p_pass = answered(self.quality_probability)[rows]  # what the answer showed, and its category
        status = self.status_code[rows]
        answer = {
            "request_id": request_ids(batch_id, len(rows)).to_pandas(),
            "ts": pd.Timestamp.now(tz="UTC"),
            "sample_id": self.valid.frame["sample_id"].to_numpy(dtype=object)[rows],
            "variant": np.asarray(self.variants, dtype=object)[self.variant_code[rows]],
            "model_version": np.asarray(self.versions, dtype=object)[self.variant_code[rows]],
            "quality_probability": p_pass,
            "category": np.asarray(CATEGORIES, dtype=object)[categories(p_pass)],
            "predicted_status": np.asarray(self.classes, dtype=object)[status],
            "latency_ms": latency_ms / max(len(rows), 1),
        }
        return pd.concat([pd.DataFrame(answer), frame[list(FEATURE_NAMES)]], axis=1)


def request_ids(batch_id: str, n: int) -> pa.Array:
    """``<batch id>-<row>``: every row's request id, without a uuid per row."""
    return pc.binary_join_element_wise(batch_id, pc.cast(pa.array(np.arange(n)), pa.string()), "-")


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    """Codes (-1 = none) as a dictionary-encoded string column: no Python string per row."""
    codes = np.asarray(codes)
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32), mask=codes < 0), pa.array(names, pa.string()))


def reissued(table: pa.Table, batch_id: str) -> pa.Table:
    """A cached answer under this request's ids, marked ``cached``."""
    at = table.schema.get_field_index("request_id")
    table = table.set_column(at, "request_id", request_ids(batch_id, table.num_rows))
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"batch_id": batch_id.encode(), b"cached": b"true"})
