"""What a LIMS sends to the prediction service: one raw sample record of the export contract.

The pydantic model is generated from :mod:`tracseq_dagster.contract`, so the HTTP contract
cannot drift from the export contract: the same names, types, enums, ranges and patterns,
and the same timestamp order. A bad record is answered 400 with one entry per bad field
(pydantic's ``loc`` names it); the service never sees it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from tracseq_dagster.contract import (
    COLUMNS,
    CONTRACT_COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    TIMESTAMP_COLUMNS,
    TIMESTAMP_ORDER,
    ContractColumn,
    Kind,
)
from tracseq_dagster.features import SampleColumns
from tracseq_dagster.rules import EARLIEST_PLAUSIBLE_DATE, FUTURE_TOLERANCE

#: The largest batch one call may carry; bigger batches are refused with 400, not queued.
MAX_BATCH_RECORDS = 10_000
_EARLIEST = EARLIEST_PLAUSIBLE_DATE.to_pydatetime()
_TOLERANCE = FUTURE_TOLERANCE.to_pytimedelta()
#: The label is what the model predicts: a request never carries it.
REQUEST_COLUMNS: tuple[str, ...] = tuple(c for c in CONTRACT_COLUMNS if c != "qc_status")


def _field(column: ContractColumn) -> tuple[Any, Any]:
    """The pydantic type and ``Field`` of one contract column."""
    python_type: Any = {Kind.STRING: str, Kind.TIMESTAMP: datetime, Kind.FLOAT: float, Kind.INT: int}.get(column.kind)
    if column.kind is Kind.ENUM:
        python_type = Literal[column.allowed]
    bounds: dict[str, Any] = {}
    if column.minimum is not None:
        bounds["gt" if column.exclusive_minimum else "ge"] = column.minimum
    if column.exclusive_minimum:
        # BentoML publishes OpenAPI 3.0, where exclusiveMinimum is a flag beside minimum
        # (pydantic writes the JSON Schema 2020 number form, which 3.0 tools reject).
        bounds["json_schema_extra"] = {"minimum": column.minimum, "exclusiveMinimum": True}
    if column.maximum is not None:
        bounds["le"] = column.maximum
    if column.pattern is not None:
        bounds["pattern"] = f"^{column.pattern}$"
    if column.kind in (Kind.STRING,) and column.pattern is None:
        bounds["min_length"] = 1
    if column.kind is Kind.FLOAT:
        bounds["allow_inf_nan"] = False
    description = column.description + (f" ({column.unit})" if column.unit else "")
    if column.required:
        return python_type, Field(..., description=description, **bounds)
    return python_type | None, Field(None, description=description, **bounds)


class _RecordBase(BaseModel):
    # Extra columns are what real exports carry (see DESIGN.md): ignored, like the parser does.
    model_config = ConfigDict(extra="ignore", strict=False)

    @field_validator(*TIMESTAMP_COLUMNS, check_fields=False)
    @classmethod
    def _plausible_date(cls, value: datetime | None) -> datetime | None:
        """The export contract's plausible_date rule: 1990 up to a day from now."""
        if value is None:
            return value
        moment = _utc(value)  # plain datetimes: this runs for every timestamp of every request
        if not _EARLIEST <= moment <= datetime.now(UTC) + _TOLERANCE:
            raise ValueError(f"{value.isoformat()} is not a plausible date (from {EARLIEST_PLAUSIBLE_DATE.date()} to tomorrow)")
        return value

    @model_validator(mode="after")
    def _timestamps_in_order(self) -> _RecordBase:
        for earlier, later in TIMESTAMP_ORDER:
            a, b = getattr(self, earlier), getattr(self, later)
            if a is not None and b is not None and _utc(a) > _utc(b):
                raise ValueError(f"{earlier} ({a.isoformat()}) is after {later} ({b.isoformat()})")
        return self


SampleRecord: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "SampleRecord",
    __base__=_RecordBase,
    __doc__="One sample as the LIMS export contract defines it (the qc_status label excluded).",
    **{c.name: _field(c) for c in COLUMNS if c.name in REQUEST_COLUMNS},
)


class BatchRequest(BaseModel):
    """``POST /batch_predict``: many records, answered in order."""

    samples: list[SampleRecord] = Field(..., min_length=1, max_length=MAX_BATCH_RECORDS)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_record_per_sample(self) -> BatchRequest:
        """A batch describes distinct samples: the same id twice must be the same record."""
        seen: dict[str, Any] = {}
        samples: list[BaseModel] = self.samples  # SampleRecord is built at run time: a BaseModel to mypy
        for position, sample in enumerate(samples):
            record = sample.model_dump()
            earlier = seen.setdefault(record["sample_id"], record)
            if earlier != record:
                raise ValueError(f"samples[{position}]: sample_id {record['sample_id']!r} appears earlier with other values")
        return self


class FeatureRequest(BaseModel):
    """``POST /features``: the latest features of these samples."""

    sample_ids: list[str] = Field(..., min_length=1, max_length=MAX_BATCH_RECORDS)


def _utc(value: datetime) -> datetime:
    """Naive timestamps are UTC, as everywhere in the lake."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def records_columns(records: list[dict[str, Any]]) -> SampleColumns:
    """Validated records (``model_dump()`` dicts) as plain column arrays (:data:`~tracseq_dagster.features.SampleColumns`).

    What a micro-batch hands the feature code: a few records, so no frame (whose fixed costs,
    about 4 ms per call, were most of a single prediction's). Timestamps exact to the
    nanosecond, numbers ``float64`` with NaN, strings ``object`` with None.
    """
    columns: dict[str, np.ndarray] = {}
    for name in REQUEST_COLUMNS:
        values = [r.get(name) for r in records]
        if name in TIMESTAMP_COLUMNS:
            columns[name] = np.array([_NAT if v is None else _epoch_ns(v) for v in values], dtype=np.int64).view("datetime64[ns]")
        elif name in FLOAT_COLUMNS or name in INT_COLUMNS:
            columns[name] = np.array(values, dtype=np.float64)  # None -> NaN; ints stay exact below 2**53
        else:
            columns[name] = np.array(values, dtype=object)
    return columns


_NAT = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ns(value: datetime | str) -> int:
    """Exact nanoseconds since the epoch (naive = UTC); float timestamps would lose microseconds."""
    if not isinstance(value, datetime):  # an ISO string from a caller that skipped validation
        moment = pd.Timestamp(value)
        return (moment.tz_localize("UTC") if moment.tzinfo is None else moment).value
    delta = _utc(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
