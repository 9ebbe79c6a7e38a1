"""The lab export contract's rules, defined once, rendered twice.

Every rule here is derived from :mod:`tracseq_dagster.contract` and has a stable name
(``required:sample_id``, ``range:storage_temp_c``, ``order:collection_ts<=received_ts`` ...).
A rule renders itself in two ways from the same fields:

* :meth:`Rule.mask` / :meth:`Rule.violations`: a vectorised pandas check that returns the
  violating rows of a typed sample frame, with one message per violating row naming the field
  and the bad value (``storage_temp_c = 55.0 is above the maximum 40``). The row-level
  validator (:mod:`tracseq_dagster.validation`) uses this to quarantine rows.
* :meth:`Rule.expectations`: the Great Expectations 1.x expectation(s) that encode the same
  rule, each carrying ``meta={"rule": <rule name>}`` so a GX result maps back to the rule
  (:mod:`tracseq_dagster.expectations` builds the suite from these).

Rule families (see :data:`RULES` for the full ordered list):

``required:<col>``
    Required contract columns must be present and non-null.
``type:<col>``
    The cell could be typed as the contract kind. Row level, this comes from the parser's
    ``parse_issues`` (cells it could not type are NA in the frame) and, for a frame that does
    not follow the typed convention, from values that do not coerce. In GX it is a column-level
    dtype check (``ExpectColumnValuesToBeOfType``).
``enum:<col>``, ``range:<col>``, ``pattern:<col>``
    From ``allowed``, ``minimum``/``maximum``/``exclusive_minimum`` and ``pattern`` (full match).
``order:<a><=<b>``
    Timestamps in :data:`~tracseq_dagster.contract.TIMESTAMP_ORDER` are in order when both are
    present. Non-adjacent pairs of the chain (``collection_ts<=extraction_ts``, ...) are compared
    only when every timestamp between them is missing, so one bad timestamp is reported once.
``plausible_date:<col>``
    Every timestamp lies between :data:`EARLIEST_PLAUSIBLE_DATE` (1990-01-01 UTC: this lab's
    LIMS and its sample stores are younger than that, so an earlier date is a typo or an
    Excel serial-date mistake) and *now* plus :data:`FUTURE_TOLERANCE` (one day, so a local
    time read as UTC never fails; a sample cannot be collected, received, extracted or
    sequenced in the future).
``rin_only_rna`` / ``din_only_dna``
    A non-null RIN on a sample whose ``sample_type`` is not in ``RNA_TYPES`` (DIN: not in
    ``DNA_TYPES``) is a violation. Rows with an empty ``sample_type`` are left to
    ``required:sample_type``.
``unique:<key>``
    The contract's identity key (``sample_id``; ``run_id,sample_id`` for run exports) is
    unique inside one export: all rows sharing a duplicated key violate it.
``field_count``
    A CSV row has no more fields than the header. Its surplus fields belong to no column and
    its other cells may be shifted, so the row cannot be trusted. Only the parser sees this
    (its ``fields`` issues, column :data:`~tracseq_dagster.contract.WHOLE_ROW`): a typed
    frame holds the header's fields only, so this rule has no GX rendering
    (:attr:`Rule.in_gx_suite` is False) and GX never sees such a row.
``unique_across_exports:<key>``
    The key was not already accepted from another export of the same kind. Row level this
    is checked against ``known_keys``; in GX by running the suite on the union of all accepted
    exports (the caller builds that frame), where it is a (compound) uniqueness expectation.
the kind's own rules
    From :attr:`~tracseq_dagster.export_contract.ExportContract.extra_rules`: ``rin_only_rna``
    and ``din_only_dna`` for samples; ``unknown_sample`` and ``after_receipt`` for runs
    (:mod:`tracseq_dagster.run_rules`).

:func:`contract_rules` derives the list from any contract (default: the sample contract).

Great Expectations is imported lazily (only by :meth:`Rule.expectations`), so the row-level
validator does not pay GX's import time.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tracseq_dagster.contract import (
    COLUMN_BY_NAME,
    PANDAS_DTYPE_BY_KIND,
    ROW_NUMBER,
    SAMPLE_CONTRACT,
    SOURCE_FILE,
    TIMESTAMP_ORDER,
    WHOLE_ROW,
    ContractColumn,
    ExportContract,
    Kind,
)

if TYPE_CHECKING:  # pragma: no cover
    from great_expectations.expectations.expectation import Expectation

logger = logging.getLogger(__name__)

# GX must never phone home (there is no network here, and we do not want it anyway).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

# Column names the hand-written (non per-column) rules refer to; looked up in the contract so
# a rename there fails at import instead of silently checking nothing.
SAMPLE_ID = COLUMN_BY_NAME["sample_id"].name
SAMPLE_TYPE = COLUMN_BY_NAME["sample_type"].name

#: Earliest timestamp accepted by the ``plausible_date:<col>`` rules.
EARLIEST_PLAUSIBLE_DATE = pd.Timestamp("1990-01-01", tz="UTC")
#: How far past "now" a timestamp may lie before ``plausible_date:<col>`` rejects it.
FUTURE_TOLERANCE = pd.Timedelta(days=1)

#: The scalar type GX's ``ExpectColumnValuesToBeOfType`` compares a pandas dtype's ``.type``
#: with, per contract kind. ``Int64``/``int64`` both have ``.type`` numpy.int64, the nullable
#: ``string`` dtype has ``str``, ``datetime64[ns, UTC]`` has ``pandas.Timestamp``.
GX_TYPE_BY_KIND: dict[Kind, str] = {
    Kind.STRING: "str",
    Kind.ENUM: "str",
    Kind.FLOAT: "float64",
    Kind.INT: "int64",
    Kind.TIMESTAMP: "Timestamp",
}

_KIND_WORD = {
    Kind.STRING: "text",
    Kind.ENUM: "text",
    Kind.FLOAT: "number",
    Kind.INT: "whole number",
    Kind.TIMESTAMP: "timestamp",
}

_MAX_LINES_IN_MESSAGE = 10


# --------------------------------------------------------------------------------------
# Evaluation context and results
# --------------------------------------------------------------------------------------


@dataclass
class RuleContext:
    """What a rule needs besides the frame: the clock, keys seen before, parser issues, samples.

    ``known_keys``: the identity keys already accepted from other exports of the same kind
    (sample ids; for run exports a MultiIndex of (``run_id``, ``sample_id``) pairs), also
    readable as ``known_sample_ids``. ``accepted_samples``: ``sample_id`` and ``received_ts``
    of the accepted samples, for the rules of kinds that refer to samples (None: none accepted).
    Build it with :meth:`for_frame`, which maps parse issues to row positions once.
    ``parse_issues`` then has an extra ``_pos`` column (0-based position in the frame).
    """

    now: pd.Timestamp
    known_keys: pd.Index | None = None
    parse_issues: pd.DataFrame | None = None
    accepted_samples: pd.DataFrame | None = None

    @property
    def known_sample_ids(self) -> pd.Index | None:
        """The sample kind's name for :attr:`known_keys`."""
        return self.known_keys

    @classmethod
    def for_frame(
        cls,
        frame: pd.DataFrame,
        *,
        now: pd.Timestamp | None = None,
        known_sample_ids: Iterable[str] | pd.Index | None = None,
        parse_issues: pd.DataFrame | None = None,
        known_keys: pd.Index | None = None,
        accepted_samples: pd.DataFrame | None = None,
    ) -> RuleContext:
        return cls(
            now=utc_now() if now is None else as_utc(now),
            known_keys=known_keys if known_keys is not None else _as_index(known_sample_ids),
            parse_issues=_locate_parse_issues(frame, parse_issues),
            accepted_samples=accepted_samples,
        )

    def parse_issues_for(self, column: str) -> pd.DataFrame:
        issues = self.parse_issues
        if issues is None or issues.empty:
            return _EMPTY_ISSUES
        return issues[issues["column"] == column]

    def parse_issue_mask(self, column: str, n: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        issues = self.parse_issues_for(column)
        if not issues.empty:
            mask[issues["_pos"].to_numpy(dtype=np.int64)] = True
        return mask


_EMPTY_ISSUES = pd.DataFrame({"_pos": pd.Series([], dtype="int64"), "column": [], "value": [], "message": []})


@dataclass(frozen=True)
class RuleHits:
    """The violating rows of one rule: positions (0-based, ascending) and one message each."""

    positions: np.ndarray
    messages: list[str]

    def __len__(self) -> int:
        return len(self.positions)


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def as_utc(ts: Any) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken to be UTC."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _as_index(ids: Iterable[str] | pd.Index | None) -> pd.Index | None:
    if ids is None:
        return None
    if isinstance(ids, pd.Index):
        return ids
    if isinstance(ids, (pd.Series, np.ndarray)):
        return pd.Index(ids)
    return pd.Index(list(ids))


def _locate_parse_issues(frame: pd.DataFrame, issues: pd.DataFrame | None) -> pd.DataFrame | None:
    """Attach the frame position (``_pos``) to every parse issue; drop duplicates per cell."""
    if issues is None or len(issues) == 0:
        return None
    if ROW_NUMBER not in frame.columns:
        raise ValueError(f"parse issues are matched to rows by {ROW_NUMBER!r}, which the frame lacks")
    keys = [ROW_NUMBER]
    if SOURCE_FILE in issues.columns and SOURCE_FILE in frame.columns:
        keys = [SOURCE_FILE, ROW_NUMBER]
    lookup = frame[keys].copy()
    lookup["_pos"] = np.arange(len(frame), dtype=np.int64)
    lookup = lookup.drop_duplicates(subset=keys, keep="first")
    issues = issues.copy()
    for key in keys:  # align dtypes for the merge (Int64 vs int64, string vs object)
        if key == ROW_NUMBER:
            issues[key] = pd.to_numeric(issues[key], errors="coerce").astype("Int64")
            lookup[key] = lookup[key].astype("Int64")
        else:
            issues[key] = issues[key].astype("string")
            lookup[key] = lookup[key].astype("string")
    located = issues.merge(lookup, on=keys, how="left")
    missing = located["_pos"].isna()
    if missing.any():
        logger.warning(
            "%d parse issue(s) refer to rows that are not in the frame (%s %s); ignored",
            int(missing.sum()),
            ROW_NUMBER,
            located.loc[missing, ROW_NUMBER].head(5).tolist(),
        )
        located = located[~missing]
    located["_pos"] = located["_pos"].astype(np.int64)
    return located.drop_duplicates(subset=["_pos", "column"], keep="first").reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Value access and formatting helpers
# --------------------------------------------------------------------------------------


def column_or_na(frame: pd.DataFrame, name: str) -> pd.Series:
    """The column, or an all-NA series (of the contract dtype) when the frame lacks it."""
    if name in frame.columns:
        return frame[name]
    kind = COLUMN_BY_NAME[name].kind if name in COLUMN_BY_NAME else Kind.STRING
    dtype = PANDAS_DTYPE_BY_KIND[kind]
    return pd.Series(pd.NA if dtype in ("string", "Int64") else None, index=frame.index, dtype=dtype)


def whole_numbers(values: np.ndarray) -> np.ndarray:
    """True where a float is a whole number an ``int64`` holds (NaN gives False).

    The one definition of "an integer" for the parser (which reports other numbers in an int
    column as ``not an integer``) and for ``type:<col>`` on frames off the typed convention.
    """
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        safe = np.where(finite, values, 0.0)
        return finite & (np.floor(safe) == safe) & (np.abs(safe) < 2.0**63)


def has_contract_dtype(series: pd.Series, kind: Kind) -> bool:
    """Whether a column already has its kind's dtype in the typed frame convention."""
    dtype = series.dtype
    if kind in (Kind.STRING, Kind.ENUM):
        return isinstance(dtype, pd.StringDtype)
    if kind is Kind.TIMESTAMP:
        return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC" and dtype.unit == "ns"
    return dtype == PANDAS_DTYPE_BY_KIND[kind]


def with_contract_dtypes(frame: pd.DataFrame, contract: ExportContract = SAMPLE_CONTRACT) -> pd.DataFrame:
    """``frame`` with every column of ``contract`` in its typed-convention dtype (others untouched).

    For rows that passed ``type:<col>``: every value then converts without loss. A frame read
    from Parquet without pandas metadata has float64 for an int column with an empty cell and
    object for text; accepted rows must leave in the contract's dtypes, or the Great
    Expectations type check (a dtype check) rejects rows the row-level rule accepted.
    """
    changed = {}
    for c in contract.columns:
        if c.name not in frame.columns or has_contract_dtype(frame[c.name], c.kind):
            continue
        s = frame[c.name]
        if c.kind is Kind.TIMESTAMP:
            changed[c.name] = _as_utc_timestamps(s).astype(PANDAS_DTYPE_BY_KIND[c.kind])
        elif c.kind in (Kind.FLOAT, Kind.INT):
            changed[c.name] = pd.Series(_as_float(s), index=s.index).astype(PANDAS_DTYPE_BY_KIND[c.kind])
        else:
            changed[c.name] = s.astype(PANDAS_DTYPE_BY_KIND[c.kind])
    if not changed:
        return frame
    return frame.assign(**changed)


def _as_float(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _as_utc_timestamps(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC") if str(series.dt.tz) != "UTC" else series
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series.dt.tz_localize("UTC")
    return pd.to_datetime(series, errors="coerce", utc=True, format="mixed")


def _as_string(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.StringDtype):
        return series
    return series.astype("string")


def _notna(series: pd.Series) -> np.ndarray:
    return series.notna().to_numpy(dtype=bool)


def fmt_value(value: Any) -> str:
    """A cell value as it appears in a message: strings quoted, numbers plain, times ISO."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "<empty>"
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return "<empty>" if math.isnan(f) else repr(f)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return repr(value)


def fmt_bound(value: float) -> str:
    """A contract bound as a person writes it: 40 not 40.0, 0.5 stays 0.5."""
    f = float(value)
    return str(int(f)) if f.is_integer() else repr(f)


def _values_at(series: pd.Series, positions: np.ndarray) -> list[Any]:
    return series.iloc[positions].tolist() if len(positions) else []


def line_labels(frame: pd.DataFrame) -> np.ndarray:
    """A label per row for messages: its source line (``_row_number``), else its 1-based row."""
    if ROW_NUMBER in frame.columns:
        rn = frame[ROW_NUMBER]
        fallback = np.arange(1, len(frame) + 1)
        return np.where(rn.notna().to_numpy(), rn.to_numpy(dtype="float64", na_value=np.nan), fallback).astype(np.int64)
    return np.arange(1, len(frame) + 1, dtype=np.int64)


# --------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule(ABC):
    """One contract rule with a pandas rendering and a Great Expectations rendering."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Stable rule name, used in quarantine reasons, GX meta and rule counts."""

    @property
    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """The contract column(s) the rule concerns."""

    @property
    @abstractmethod
    def description(self) -> str:
        """A sentence a lab person understands."""

    #: Whether the rule has a Great Expectations rendering (all but the parser-only ones).
    in_gx_suite = True

    @property
    def column(self) -> str:
        """The column(s) as one string, for long-form violation tables."""
        return ",".join(self.columns)

    @abstractmethod
    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        """Boolean array, True for each violating row (vectorised)."""

    @abstractmethod
    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        """One message per violating row (only called with the violating positions)."""

    @abstractmethod
    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        """The GX expectations encoding the rule (without meta; see :meth:`expectations`)."""

    def violations(self, frame: pd.DataFrame, ctx: RuleContext) -> RuleHits:
        positions = np.flatnonzero(self.mask(frame, ctx))
        return RuleHits(positions, self.messages(frame, positions, ctx) if len(positions) else [])

    def expectations(self, ctx: RuleContext | None = None) -> list[Expectation]:
        """GX expectations, each with ``meta={"rule": name}`` and ``notes`` naming the rule.

        ``notes`` (shown in Data Docs behind a comment icon), not ``description``: GX 1.24
        renders a description *instead of* the expectation's own text and does not escape it,
        so ``order:collection_ts<=received_ts`` would be eaten as an HTML tag.
        Note that ``unique:sample_id`` and ``unique_across_exports:sample_id`` render to
        expectations that differ only in meta/notes; ``ExpectationSuite.add_expectation`` would
        silently drop the second (it ignores meta and notes when comparing), so suites are built
        by passing the list to the ``ExpectationSuite`` constructor.
        """
        ctx = ctx or RuleContext(now=utc_now())
        built = self._build_expectations(ctx)
        for exp in built:
            exp.meta = {**(exp.meta or {}), "rule": self.name}
            exp.notes = f"Rule `{self.name}`: {self.description}"
        return built


def _gxe() -> ModuleType:
    """``great_expectations.expectations``, imported on first use (GX takes seconds to import)."""
    import great_expectations.expectations as gxe  # noqa: PLC0415 - lazy: GX imports slowly

    return gxe


@dataclass(frozen=True)
class RequiredRule(Rule):
    """``required:<col>``: the column exists and the cell is not empty.

    A cell the parser could not type is NA too; it is reported by ``type:<col>`` only, with
    the raw value, not a second time as empty.
    """

    contract_column: ContractColumn

    @property
    def name(self) -> str:
        return f"required:{self.contract_column.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.contract_column.name,)

    @property
    def description(self) -> str:
        return f"{self.contract_column.name} ({self.contract_column.description}) is required"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        col = self.contract_column.name
        if col not in frame.columns:
            return np.ones(len(frame), dtype=bool)
        return frame[col].isna().to_numpy(dtype=bool) & ~ctx.parse_issue_mask(col, len(frame))

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        col = self.contract_column.name
        if col not in frame.columns:
            return [f"{col} is required but the column is missing from the export"] * len(positions)
        return [f"{col} = <empty> but {col} is required"] * len(positions)

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        gxe = _gxe()
        col = self.contract_column.name
        return [gxe.ExpectColumnToExist(column=col), gxe.ExpectColumnValuesToNotBeNull(column=col)]


@dataclass(frozen=True)
class TypeRule(Rule):
    """``type:<col>``: the cell holds a value of the contract kind.

    Row level: the parser's parse issues for the column, plus (for a frame whose column does
    not have the convention's dtype) non-empty values that do not coerce to the kind.
    GX: a column-level dtype check (pandas dtype ``.type`` against :data:`GX_TYPE_BY_KIND`).
    """

    contract_column: ContractColumn

    @property
    def name(self) -> str:
        return f"type:{self.contract_column.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.contract_column.name,)

    @property
    def description(self) -> str:
        return f"{self.contract_column.name} must be a {_KIND_WORD[self.contract_column.kind]}"

    def _uncoercible(self, series: pd.Series) -> np.ndarray:
        """Non-null values that are not of the kind, for frames off the typed convention."""
        kind = self.contract_column.kind
        dtype = series.dtype
        if kind in (Kind.STRING, Kind.ENUM):
            return np.zeros(len(series), dtype=bool)  # anything can be read as text
        if kind is Kind.FLOAT and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            return np.zeros(len(series), dtype=bool)
        if kind is Kind.INT and pd.api.types.is_integer_dtype(dtype):
            return np.zeros(len(series), dtype=bool)
        if kind is Kind.TIMESTAMP and pd.api.types.is_datetime64_any_dtype(dtype):
            return np.zeros(len(series), dtype=bool)
        present = _notna(series)
        if kind is Kind.TIMESTAMP:
            coerced_ok = _notna(_as_utc_timestamps(series))
        elif kind is Kind.INT:
            coerced_ok = whole_numbers(_as_float(series))
        else:
            coerced_ok = ~np.isnan(_as_float(series))
        return present & ~coerced_ok

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        col = self.contract_column.name
        m = ctx.parse_issue_mask(col, len(frame))
        if col in frame.columns:
            m |= self._uncoercible(frame[col])
        return m

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        col = self.contract_column.name
        word = _KIND_WORD[self.contract_column.kind]
        issues = ctx.parse_issues_for(col)
        by_pos: dict[int, tuple[Any, Any]] = {}
        if not issues.empty:
            wanted = issues[issues["_pos"].isin(positions)]
            for pos, value, msg in zip(wanted["_pos"], wanted["value"], wanted["message"]):
                by_pos[int(pos)] = (value, msg)
        raw = _values_at(frame[col], positions) if col in frame.columns else [None] * len(positions)
        out = []
        for pos, value in zip(positions.tolist(), raw):
            if pos in by_pos:
                value, msg = by_pos[pos]
                text = f"{col} = {fmt_value(value)} could not be read as a {word}"
                if isinstance(msg, str) and msg:
                    text += f" ({msg})"
            else:
                text = f"{col} = {fmt_value(value)} is not a {word}"
            out.append(text)
        return out

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        gxe = _gxe()
        return [
            gxe.ExpectColumnValuesToBeOfType(column=self.contract_column.name, type_=GX_TYPE_BY_KIND[self.contract_column.kind])
        ]


@dataclass(frozen=True)
class FieldCountRule(Rule):
    """``field_count``: the row had no more fields than the header (from the parser's issues)."""

    #: A typed frame has no trace of surplus fields; GX only ever sees typed frames.
    in_gx_suite = False

    @property
    def name(self) -> str:
        return "field_count"

    @property
    def columns(self) -> tuple[str, ...]:
        return (WHOLE_ROW,)

    @property
    def description(self) -> str:
        return "a row must not have more fields than the header"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        return ctx.parse_issue_mask(WHOLE_ROW, len(frame))

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        issues = ctx.parse_issues_for(WHOLE_ROW).set_index("_pos")
        return [
            f"{issues.at[pos, 'message']}; surplus {fmt_value(issues.at[pos, 'value'])}, so its cells may be shifted"
            for pos in positions.tolist()
        ]

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        return []


@dataclass(frozen=True)
class EnumRule(Rule):
    """``enum:<col>``: a non-empty value is one of the contract's allowed values (case-sensitive)."""

    contract_column: ContractColumn

    @property
    def name(self) -> str:
        return f"enum:{self.contract_column.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.contract_column.name,)

    @property
    def allowed(self) -> tuple[str, ...]:
        assert self.contract_column.allowed is not None
        return self.contract_column.allowed

    @property
    def description(self) -> str:
        return f"{self.contract_column.name} must be one of {', '.join(self.allowed)}"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        s = column_or_na(frame, self.contract_column.name)
        return _notna(s) & ~s.isin(self.allowed).to_numpy(dtype=bool)

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        col = self.contract_column.name
        allowed = ", ".join(self.allowed)
        return [f"{col} = {fmt_value(v)} is not one of {allowed}" for v in _values_at(frame[col], positions)]

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        gxe = _gxe()
        return [gxe.ExpectColumnValuesToBeInSet(column=self.contract_column.name, value_set=list(self.allowed))]


@dataclass(frozen=True)
class RangeRule(Rule):
    """``range:<col>``: a non-empty number lies within the contract's bounds.

    ``minimum``/``maximum`` are inclusive; ``exclusive_minimum`` makes the minimum strict.
    """

    contract_column: ContractColumn

    @property
    def name(self) -> str:
        return f"range:{self.contract_column.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.contract_column.name,)

    @property
    def description(self) -> str:
        c = self.contract_column
        unit = f" {c.unit}" if c.unit else ""
        parts = []
        if c.minimum is not None:
            parts.append(f"{'>' if c.exclusive_minimum else '>='} {fmt_bound(c.minimum)}{unit}")
        if c.maximum is not None:
            parts.append(f"<= {fmt_bound(c.maximum)}{unit}")
        return f"{c.name} must be {' and '.join(parts)}"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        c = self.contract_column
        if c.name not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        v = _as_float(frame[c.name])
        m = np.zeros(len(v), dtype=bool)
        with np.errstate(invalid="ignore"):
            if c.minimum is not None:
                m |= (v <= c.minimum) if c.exclusive_minimum else (v < c.minimum)
            if c.maximum is not None:
                m |= v > c.maximum
        return m

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        c = self.contract_column
        out = []
        for value in _values_at(frame[c.name], positions):
            f = float(value) if not isinstance(value, str) else float(pd.to_numeric(value))
            shown = fmt_value(value)
            if c.maximum is not None and f > c.maximum:
                out.append(f"{c.name} = {shown} is above the maximum {fmt_bound(c.maximum)}")
            elif c.exclusive_minimum:
                assert c.minimum is not None  # a row only fails a range rule against a bound it has
                out.append(f"{c.name} = {shown} is not above the exclusive minimum {fmt_bound(c.minimum)}")
            else:
                assert c.minimum is not None
                out.append(f"{c.name} = {shown} is below the minimum {fmt_bound(c.minimum)}")
        return out

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        gxe = _gxe()
        c = self.contract_column
        kwargs: dict[str, Any] = {"column": c.name}
        if c.minimum is not None:
            kwargs["min_value"] = c.minimum
            kwargs["strict_min"] = bool(c.exclusive_minimum)
        if c.maximum is not None:
            kwargs["max_value"] = c.maximum
        return [gxe.ExpectColumnValuesToBeBetween(**kwargs)]


def _full_match_regex(pattern: str) -> str:
    r"""The contract pattern anchored for a full match under ``re.search`` (``\Z``, not ``$``,
    so a trailing newline does not slip through)."""
    return rf"^(?:{pattern})\Z"


def full_match(series: pd.Series, pattern: str) -> np.ndarray:
    """True where a non-null value fully matches ``pattern`` with Python ``re`` semantics
    (what GX's pandas engine uses); null values give True.

    Fast path: Arrow's RE2 over the whole column (about 6x faster than ``str.fullmatch`` on
    a million Python strings). RE2's classes (``\\d``, ``\\w``, ``\\s``) are ASCII-only, a subset of
    Python's, so an RE2 match is a Python match and on ASCII strings the two agree; the few
    non-ASCII strings RE2 rejects are re-checked with Python ``re``. Patterns RE2 cannot
    compile fall back to ``Series.str.fullmatch``.
    """
    s = _as_string(series)
    present = _notna(s)
    try:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.compute as pc  # noqa: PLC0415

        arr = pa.array(s, from_pandas=True, type=pa.string())
        matched = pc.match_substring_regex(arr, f"^(?:{pattern})\\z").to_numpy(zero_copy_only=False)
        matched = np.where(present, matched, True).astype(bool)
        recheck = ~matched & ~np.asarray(pc.string_is_ascii(arr).to_numpy(zero_copy_only=False), dtype=bool)
        recheck &= present
        if recheck.any():
            idx = np.flatnonzero(recheck)
            compiled = re.compile(pattern)
            matched[idx] = [compiled.fullmatch(v) is not None for v in s.iloc[idx].tolist()]
        return matched
    except (ImportError, NotImplementedError, ValueError) as exc:  # pa.ArrowInvalid is a ValueError
        logger.debug("arrow regex unavailable for %r (%s); using pandas", pattern, exc)
        return s.str.fullmatch(pattern).fillna(True).to_numpy(dtype=bool)


@dataclass(frozen=True)
class PatternRule(Rule):
    """``pattern:<col>``: a non-empty string fully matches the contract's regular expression."""

    contract_column: ContractColumn

    @property
    def name(self) -> str:
        return f"pattern:{self.contract_column.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.contract_column.name,)

    @property
    def description(self) -> str:
        return f"{self.contract_column.name} must match {self.contract_column.pattern}"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        s = column_or_na(frame, self.contract_column.name)
        assert self.contract_column.pattern is not None  # the rule exists only for a column with a pattern
        return _notna(s) & ~full_match(s, self.contract_column.pattern)

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        c = self.contract_column
        return [f"{c.name} = {fmt_value(v)} does not match the pattern {c.pattern}" for v in _values_at(frame[c.name], positions)]

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        gxe = _gxe()
        c = self.contract_column
        assert c.pattern is not None
        return [gxe.ExpectColumnValuesToMatchRegex(column=c.name, regex=_full_match_regex(c.pattern))]


@dataclass(frozen=True)
class OrderRule(Rule):
    """``order:<earlier><=<later>``: when both are present, ``earlier <= later``.

    ``between`` lists the chain's timestamps between the two; the pair is compared only when
    all of them are missing (otherwise the adjacent pairs already cover it).
    """

    earlier: str
    later: str
    between: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"order:{self.earlier}<={self.later}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.earlier, self.later)

    @property
    def description(self) -> str:
        text = f"{self.earlier} must not be after {self.later} when both are present"
        if self.between:
            text += f" and {', '.join(self.between)} {'is' if len(self.between) == 1 else 'are'} missing"
        return text

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        a = _as_utc_timestamps(column_or_na(frame, self.earlier))
        b = _as_utc_timestamps(column_or_na(frame, self.later))
        m = _notna(a) & _notna(b) & (a > b).fillna(False).to_numpy(dtype=bool)
        for mid in self.between:
            m &= column_or_na(frame, mid).isna().to_numpy(dtype=bool)
        return m

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        a = _values_at(_as_utc_timestamps(frame[self.earlier]), positions)
        b = _values_at(_as_utc_timestamps(frame[self.later]), positions)
        gap = f" ({', '.join(self.between)} empty)" if self.between else ""
        return [f"{self.later} = {fmt_value(vb)} is before {self.earlier} = {fmt_value(va)}{gap}" for va, vb in zip(a, b)]

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        gxe = _gxe()
        kwargs: dict[str, Any] = dict(
            column_A=self.later,
            column_B=self.earlier,
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        )
        if self.between:
            from great_expectations.expectations.row_conditions import Column as C  # noqa: PLC0415
            from great_expectations.expectations.row_conditions import Condition  # noqa: PLC0415

            conditions = [C(mid).is_null() for mid in self.between]
            condition: Condition = conditions[0]
            for extra in conditions[1:]:
                condition = condition & extra
            kwargs["row_condition"] = condition
        return [gxe.ExpectColumnPairValuesAToBeGreaterThanB(**kwargs)]


@dataclass(frozen=True)
class PlausibleDateRule(Rule):
    """``plausible_date:<col>``: a timestamp lies in [1990-01-01 UTC, now + 1 day].

    *now* comes from the :class:`RuleContext` (the moment of validation).
    """

    contract_column: ContractColumn

    @property
    def name(self) -> str:
        return f"plausible_date:{self.contract_column.name}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.contract_column.name,)

    @property
    def description(self) -> str:
        return (
            f"{self.contract_column.name} must not be before {EARLIEST_PLAUSIBLE_DATE:%Y-%m-%d} "
            f"nor more than {FUTURE_TOLERANCE.days} day in the future"
        )

    @staticmethod
    def latest(ctx: RuleContext) -> pd.Timestamp:
        return ctx.now + FUTURE_TOLERANCE

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        s = _as_utc_timestamps(column_or_na(frame, self.contract_column.name))
        too_early = (s < EARLIEST_PLAUSIBLE_DATE).fillna(False).to_numpy(dtype=bool)
        too_late = (s > self.latest(ctx)).fillna(False).to_numpy(dtype=bool)
        return too_early | too_late

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        col = self.contract_column.name
        out = []
        for v in _values_at(_as_utc_timestamps(frame[col]), positions):
            if v < EARLIEST_PLAUSIBLE_DATE:
                out.append(f"{col} = {fmt_value(v)} is before {EARLIEST_PLAUSIBLE_DATE:%Y-%m-%d}, not a plausible date")
            else:
                out.append(f"{col} = {fmt_value(v)} is in the future (validated at {ctx.now:%Y-%m-%d %H:%M} UTC)")
        return out

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        gxe = _gxe()
        return [
            gxe.ExpectColumnValuesToBeBetween(
                column=self.contract_column.name,
                min_value=EARLIEST_PLAUSIBLE_DATE.to_pydatetime(),
                max_value=self.latest(ctx).to_pydatetime(),
            )
        ]


@dataclass(frozen=True)
class OnlyForTypesRule(Rule):
    """``rin_only_rna`` / ``din_only_dna``: the column must be empty unless ``sample_type`` is
    one of ``types``. Rows with an empty ``sample_type`` are left to ``required:sample_type``."""

    rule_name: str
    target: str
    types: tuple[str, ...]
    measure: str

    @property
    def name(self) -> str:
        return self.rule_name

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.target, SAMPLE_TYPE)

    @property
    def description(self) -> str:
        return f"{self.target} ({self.measure}) may only be given for sample_type {', '.join(self.types)}"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        target = column_or_na(frame, self.target)
        st = column_or_na(frame, SAMPLE_TYPE)
        return _notna(target) & _notna(st) & ~st.isin(self.types).to_numpy(dtype=bool)

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        values = _values_at(frame[self.target], positions)
        types = _values_at(frame[SAMPLE_TYPE], positions)
        allowed = ", ".join(self.types)
        return [
            f"{self.target} = {fmt_value(v)} is given for sample_type = {fmt_value(t)}; "
            f"{self.measure} is only measured for {allowed}"
            for v, t in zip(values, types)
        ]

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        gxe = _gxe()
        from great_expectations.expectations.row_conditions import Column as C  # noqa: PLC0415

        condition = C(SAMPLE_TYPE).is_not_in(list(self.types)) & C(SAMPLE_TYPE).is_not_null()
        return [gxe.ExpectColumnValuesToBeNull(column=self.target, row_condition=condition)]


def key_index(frame: pd.DataFrame, key_columns: Sequence[str]) -> pd.Index:
    """The identity key of every row: the column's values for one key column, else a MultiIndex."""
    if len(key_columns) == 1:
        return pd.Index(column_or_na(frame, key_columns[0]))
    return pd.MultiIndex.from_arrays([column_or_na(frame, c) for c in key_columns], names=list(key_columns))


def _key_present(frame: pd.DataFrame, key_columns: Sequence[str]) -> np.ndarray:
    present = np.ones(len(frame), dtype=bool)
    for c in key_columns:
        present &= _notna(column_or_na(frame, c))
    return present


def _key_values(frame: pd.DataFrame, key_columns: Sequence[str], positions: np.ndarray) -> list[Any]:
    """Each row's key as messages show it: the value for one column, else a tuple."""
    if len(key_columns) == 1:
        return _values_at(frame[key_columns[0]], positions)
    return list(zip(*(_values_at(frame[c], positions) for c in key_columns)))


def _fmt_key(key_columns: Sequence[str], value: Any) -> str:
    if len(key_columns) == 1:
        return f"{key_columns[0]} = {fmt_value(value)}"
    return f"({', '.join(key_columns)}) = ({', '.join(fmt_value(v) for v in value)})"


def _unique_expectation(key_columns: Sequence[str]) -> Expectation:
    gxe = _gxe()
    if len(key_columns) == 1:
        return gxe.ExpectColumnValuesToBeUnique(column=key_columns[0])
    return gxe.ExpectCompoundColumnsToBeUnique(column_list=list(key_columns), ignore_row_if="any_value_is_missing")


@dataclass(frozen=True)
class UniqueInExportRule(Rule):
    """``unique:<key>``: no two rows of one export share a key (``sample_id``; a run export's
    ``run_id,sample_id``); all of them violate. Rows with an empty key part are left to
    ``required:<col>``."""

    key_columns: tuple[str, ...] = (SAMPLE_ID,)

    @property
    def name(self) -> str:
        return f"unique:{','.join(self.key_columns)}"

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key_columns

    @property
    def description(self) -> str:
        return f"{', '.join(self.key_columns)} must be unique within an export"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        present = _key_present(frame, self.key_columns)
        keys = key_index(frame, self.key_columns)
        return present & keys.duplicated(keep=False)

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        ids = _key_values(frame, self.key_columns, positions)
        lines = line_labels(frame)[positions]
        # Per id: its group size and its first few lines (enough to name up to
        # _MAX_LINES_IN_MESSAGE others for any member): linear, even for one huge group.
        size: dict[Any, int] = {}
        head: dict[Any, list[int]] = {}
        for i, line in zip(ids, lines.tolist()):
            size[i] = size.get(i, 0) + 1
            first = head.setdefault(i, [])
            if len(first) <= _MAX_LINES_IN_MESSAGE:
                first.append(line)
        word = "line" if ROW_NUMBER in frame.columns else "row"
        out = []
        for i, line in zip(ids, lines.tolist()):
            others = [x for x in head[i] if x != line] or [line]  # same line twice: say so
            shown = ", ".join(str(x) for x in others[:_MAX_LINES_IN_MESSAGE])
            more = size[i] - 1 - min(len(others), _MAX_LINES_IN_MESSAGE)
            if more > 0:
                shown += f" and {more} more"
            plural = "s" if size[i] > 2 else ""
            out.append(f"{_fmt_key(self.key_columns, i)} is duplicated in this export (also on {word}{plural} {shown})")
        return out

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        return [_unique_expectation(self.key_columns)]


@dataclass(frozen=True)
class UniqueAcrossExportsRule(Rule):
    """``unique_across_exports:<key>``: the key was not already accepted from another export.

    Row level: membership in ``RuleContext.known_keys``. GX: uniqueness of the key,
    meaningful when the suite runs on the union of all accepted exports (the caller builds
    that frame); on a single export it coincides with ``unique:<key>``.
    """

    key_columns: tuple[str, ...] = (SAMPLE_ID,)

    @property
    def name(self) -> str:
        return f"unique_across_exports:{','.join(self.key_columns)}"

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key_columns

    @property
    def description(self) -> str:
        return f"{', '.join(self.key_columns)} must be unique across all accepted exports"

    def mask(self, frame: pd.DataFrame, ctx: RuleContext) -> np.ndarray:
        if ctx.known_keys is None or len(ctx.known_keys) == 0:
            return np.zeros(len(frame), dtype=bool)
        known = ctx.known_keys
        if len(self.key_columns) > 1 and not isinstance(known, pd.MultiIndex):
            known = pd.MultiIndex.from_tuples(list(known), names=list(self.key_columns))
        return _key_present(frame, self.key_columns) & key_index(frame, self.key_columns).isin(known)

    def messages(self, frame: pd.DataFrame, positions: np.ndarray, ctx: RuleContext) -> list[str]:
        return [
            f"{_fmt_key(self.key_columns, v)} was already accepted from another export"
            for v in _key_values(frame, self.key_columns, positions)
        ]

    def _build_expectations(self, ctx: RuleContext) -> list[Expectation]:
        return [_unique_expectation(self.key_columns)]


# --------------------------------------------------------------------------------------
# The rule list, derived from the contract
# --------------------------------------------------------------------------------------


def timestamp_chain(order: Sequence[tuple[str, str]] = TIMESTAMP_ORDER) -> tuple[str, ...]:
    """The contract's timestamp pairs as one chain (collection, received, extraction, sequencing)."""
    successor = dict(order)
    if len(successor) != len(order):
        raise ValueError(f"TIMESTAMP_ORDER is not a chain: {order}")
    starts = [a for a, _ in order if a not in {b for _, b in order}]
    if len(starts) != 1:
        raise ValueError(f"TIMESTAMP_ORDER is not a chain: {order}")
    chain = [starts[0]]
    while chain[-1] in successor:
        chain.append(successor[chain[-1]])
        if len(chain) > len(order) + 1:
            raise ValueError(f"TIMESTAMP_ORDER has a cycle: {order}")
    return tuple(chain)


def order_rules(order: Sequence[tuple[str, str]] = TIMESTAMP_ORDER) -> list[OrderRule]:
    """Adjacent pairs, then every longer span compared only when its inner timestamps are missing."""
    chain = timestamp_chain(order)
    rules: list[OrderRule] = []
    for span in range(1, len(chain)):
        for i in range(len(chain) - span):
            rules.append(OrderRule(chain[i], chain[i + span], tuple(chain[i + 1 : i + span])))
    return rules


def contract_rules(contract: ExportContract = SAMPLE_CONTRACT, *, include_cross_export_uniqueness: bool = True) -> list[Rule]:
    """Every rule of an export contract (default: the sample export), in reporting order.

    The per-column families and the order rules come from the contract's columns and timestamp
    chain; then the kind's own rules (:attr:`ExportContract.extra_rules`); then uniqueness of
    its key inside the export and across exports.
    """
    columns = contract.columns
    rules: list[Rule] = [FieldCountRule()]
    rules += [RequiredRule(c) for c in columns if c.required]
    rules += [TypeRule(c) for c in columns]
    rules += [EnumRule(c) for c in columns if c.allowed is not None]
    rules += [RangeRule(c) for c in columns if c.minimum is not None or c.maximum is not None]
    rules += [PatternRule(c) for c in columns if c.pattern is not None]
    rules += order_rules(contract.timestamp_order)
    rules += [PlausibleDateRule(c) for c in columns if c.kind is Kind.TIMESTAMP]
    rules += list(contract.extra_rules())
    rules.append(UniqueInExportRule(contract.key_columns))
    if include_cross_export_uniqueness:
        rules.append(UniqueAcrossExportsRule(contract.key_columns))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):  # pragma: no cover - guards the contract derivation
        raise ValueError(f"duplicate rule names: {names}")
    return rules


@functools.cache
def rules_for(contract: ExportContract) -> tuple[Rule, ...]:
    """Every rule of ``contract``, built once (contracts hash by identity)."""
    return tuple(contract_rules(contract))


@functools.cache
def rule_by_name(contract: ExportContract) -> dict[str, Rule]:
    return {r.name: r for r in rules_for(contract)}


#: All sample contract rules, in reporting order.
RULES: tuple[Rule, ...] = rules_for(SAMPLE_CONTRACT)
#: Rules by name.
RULE_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
#: The rule names, in order.
RULE_NAMES: tuple[str, ...] = tuple(RULE_BY_NAME)


def rule_names() -> list[str]:
    return list(RULE_NAMES)


__all__ = [
    "EARLIEST_PLAUSIBLE_DATE",
    "FUTURE_TOLERANCE",
    "GX_TYPE_BY_KIND",
    "RULES",
    "RULE_BY_NAME",
    "RULE_NAMES",
    "EnumRule",
    "FieldCountRule",
    "OnlyForTypesRule",
    "OrderRule",
    "PatternRule",
    "PlausibleDateRule",
    "RangeRule",
    "RequiredRule",
    "Rule",
    "RuleContext",
    "RuleHits",
    "TypeRule",
    "UniqueAcrossExportsRule",
    "UniqueInExportRule",
    "contract_rules",
    "key_index",
    "order_rules",
    "rule_by_name",
    "rules_for",
    "timestamp_chain",
]
