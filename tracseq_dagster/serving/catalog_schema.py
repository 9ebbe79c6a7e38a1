"""What a request to ``/models/{name}/…`` carries, built from a catalog model's declaration.

Every catalog model takes the sample record of the export contract (``SampleRecord``, with its
rules); a model whose ``ServingSpec`` names run context (``run_context``, ``optional_run_context``)
takes those columns of the sequencing run contract too, typed and checked as the run export is
(the ``after_receipt`` rule: a library is not prepared before its sample arrived). Bad input is
a pydantic error whose ``loc`` names the field; the routes answer it 400.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, create_model, model_validator

from tracseq_dagster.contract import Kind
from tracseq_dagster.models import ModelSpec, get_model
from tracseq_dagster.run_contract import RUN_COLUMNS
from tracseq_dagster.serving.request_schema import MAX_BATCH_RECORDS, REQUEST_COLUMNS, SampleRecord, _field, _utc, records_columns

_RUN_COLUMN = {c.name: c for c in RUN_COLUMNS}
_TIMESTAMP_KINDS = (Kind.TIMESTAMP,)


def _prepared_after_receipt(self: BaseModel) -> BaseModel:
    """The run contract's after_receipt rule for a request: library prep at or after the sample's receipt."""
    prep, received = getattr(self, "library_prep_ts", None), getattr(self, "received_ts", None)
    if prep is not None and received is not None and _utc(prep) < _utc(received):
        raise ValueError(f"library_prep_ts ({prep.isoformat()}) is before received_ts ({received.isoformat()})")
    return self


@cache
def request_model(name: str) -> type[BaseModel]:
    """The pydantic model of one request row of catalog model ``name``."""
    spec = get_model(name)
    context = {c: _run_field(c, required=True) for c in spec.serving.run_context}
    context |= {c: _run_field(c, required=False) for c in spec.serving.optional_run_context}
    if not context:
        return SampleRecord
    # the ignore: pydantic's stub wants callables in __validators__; model_validator() returns the
    # decorator proxy that pydantic reads there at run time
    return create_model(  # type: ignore[call-overload]
        f"{name.title().replace('_', '')}Request",
        __base__=SampleRecord,
        __doc__=f"One {name} request: the sample record plus the run context {', '.join(context)}.",
        __validators__={"prepared_after_receipt": model_validator(mode="after")(_prepared_after_receipt)},
        **context,
    )


def _run_field(column: str, *, required: bool) -> tuple[Any, Any]:
    if column not in _RUN_COLUMN:
        raise ValueError(f"{column!r} is not a column of the sequencing run contract")
    python_type, info = _field(replace(_RUN_COLUMN[column], required=True))
    if required:
        return python_type, info
    # Optional: the constraints (pattern, bounds) on the value, None allowed (pydantic does not check them on ``str | None``).
    return Annotated[python_type, *info.metadata] | None, Field(None, description=info.description)


@cache
def batch_model(name: str) -> type[BaseModel]:
    """``{"records": [row, …]}``: many rows, answered in order; one entity twice must be the same row."""
    spec = get_model(name)
    row = request_model(name)

    def _one_row_per_entity(self: BaseModel) -> BaseModel:
        seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for position, record in enumerate(r.model_dump() for r in self.records):  # type: ignore[attr-defined]
            key = tuple(record.get(c) for c in spec.entity)
            if any(k is None for k in key):
                continue  # e.g. a library without a run id yet: it cannot collide with another
            if seen.setdefault(key, record) != record:
                raise ValueError(f"records[{position}]: {'/'.join(map(str, key))} appears earlier with other values")
        return self

    return create_model(
        f"{name.title().replace('_', '')}Batch",
        records=(list[row], Field(..., min_length=1, max_length=MAX_BATCH_RECORDS)),  # type: ignore[valid-type]
        # the ignore: as in request_model (a decorator proxy where the stub wants a callable)
        __validators__={"one_row_per_entity": model_validator(mode="after")(_one_row_per_entity)},  # type: ignore[dict-item]
    )


def request_columns(spec: ModelSpec) -> tuple[str, ...]:
    """The columns a request row of ``spec`` has, sample record first."""
    return (*REQUEST_COLUMNS, *spec.serving.run_context, *spec.serving.optional_run_context)


def request_frame(spec: ModelSpec, records: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated rows (``model_dump()`` dicts) as a typed frame: the contracts' dtypes, in order."""
    columns: dict[str, Any] = {}
    for name, values in records_columns(records).items():
        columns[name] = _typed(values)
    for name in (*spec.serving.run_context, *spec.serving.optional_run_context):
        column = _RUN_COLUMN[name]
        run_values = [r.get(name) for r in records]
        if column.kind in _TIMESTAMP_KINDS:
            columns[name] = pd.to_datetime(pd.Series(run_values, dtype=object), utc=True)
        elif column.kind is Kind.FLOAT:
            columns[name] = pd.Series(run_values, dtype="float64")
        else:
            columns[name] = pd.Series(run_values, dtype="string")
    return pd.DataFrame(columns)


def _typed(values: np.ndarray) -> pd.Series:
    """A plain column of :func:`records_columns` with the typed frame's dtype."""
    if values.dtype.kind == "M":
        return pd.Series(values).dt.tz_localize("UTC")
    if values.dtype == object:
        return pd.Series(values, dtype="string")
    return pd.Series(values, dtype="float64")
