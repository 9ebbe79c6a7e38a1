"""Sample features: the one implementation shared by training (Dagster) and serving (BentoML).

``compute_features(samples, history, as_of)`` turns typed sample frames (the contract
columns of :mod:`tracseq_dagster.contract`; strings as pandas ``"string"``, timestamps
``datetime64[ns, UTC]``, floats ``float64``, ints ``"Int64"``; extra columns such as the
lineage columns are ignored) into one model-ready row per sample. The module is pure:
no I/O, no Dagster, no randomness.

Point-in-time rules
-------------------
Every row is computed *as of* an instant, returned in the ``as_of`` column.

* **Scalar** ``as_of`` (serving, back-testing): every row is computed as of that instant.
  A naive timestamp or string is read as UTC.

  - A sample exists at ``as_of`` when ``received_ts <= as_of``; other samples (and rows
    without ``received_ts``) are dropped.
  - A timestamp of the sample itself is known when it is ``<= as_of``; later ones are
    treated as missing (an extraction that happens after ``as_of`` has not happened yet,
    so the processing delay is still running: ``as_of - received_ts``).

* **Per-row** ``as_of`` (an array, list, ``Series`` or ``DatetimeIndex`` of instants, one
  per sample row, positionally aligned; naive instants are UTC; no NaT): each row is computed
  as of its own instant, by exactly the rules of the scalar case. Row ``i`` of the result
  equals the scalar call ``as_of=as_of[i]`` on that sample alone (same history). This is how a
  model whose prediction time is an event of another entity (a library prep, a run) asks for
  the sample's features at that moment. A ``Series`` whose index is not the samples' index is
  refused rather than silently re-aligned.

* ``as_of=None`` (the training view): each sample is computed as of its own latest known
  event, ``coalesce(sequencing_ts, extraction_ts, received_ts)``, which is its
  ``label_ts`` below: the moment just before its QC label becomes known.

* **When a label becomes known.** QC is done on the last processing step a sample reached,
  so a sample's ``qc_status`` becomes known at
  ``label_ts = coalesce(sequencing_ts, extraction_ts, received_ts)``.

* **History.** ``history`` is the set of all known samples (typically all validated
  samples; it may include ``samples`` themselves). Aggregates over history use, for a row
  computed at ``as_of``:

  - failure rates and history counts: history rows with a non-null ``qc_status`` and
    ``label_ts < as_of`` (strictly before: a label known at the same instant is not yet
    usable);
  - freezer utilisation: history rows with ``received_ts < as_of`` (box occupancy is
    recorded when a sample is received; no label is involved). When there are none, the
    row's own ``box_utilisation`` stands in (the one box of that freezer visible then);
  - never the row's own sample: history rows with the row's ``sample_id`` are excluded
    from every aggregate, so it does not matter whether ``history`` contains ``samples``,
    and a label never feeds its own sample's features.

* **The label.** The returned ``qc_status`` is the sample's label where it is known at
  ``as_of`` (``label_ts <= as_of``), else NA. With ``as_of=None`` that is every labelled
  sample, so the frame is the training set. The label never feeds any feature.

* **Measurements without a timestamp** (storage temperature, excursions, freeze-thaw
  cycles, concentration, volume, absorbance ratios, RIN/DIN, box occupancy) are taken as
  recorded in the export: the contract gives them no time, so they cannot be rolled
  back. That is the one place where the point-in-time guarantee relies on the export.

Output
------
A frame indexed by ``sample_id`` (sorted, so the result does not depend on input row
order), with the columns ``FEATURE_NAMES`` in a fixed order, then ``as_of``
(``datetime64[ns, UTC]``) and ``qc_status`` (``"string"``). Numeric features are
``float64`` (NaN where unknown); categorical features are pandas categoricals with the
fixed categories of their :class:`FeatureSpec`, so training and serving encode them the
same way. ``sample_id`` must be unique in ``samples``.

Algorithm
---------
Everything is vectorised (no per-row Python). Times become ranks among the event times;
history events and rows are both sorted by the packed key (group, time rank), using one
time sort per time axis shared by the groupings plus a linear radix sort on the group
codes; cumulative sums over the events then answer every row with sorted
``np.searchsorted`` calls, the equivalent of ``pd.merge_asof(..., by=group,
allow_exact_matches=False)``. Sums are over integers (fail counts, box occupancy), so they
are exact and independent of row order. The row's own history rows are found with one hash
lookup of history ``sample_id`` in the rows' ``sample_id`` and subtracted. About 3 s for
1,000,000 samples against 1,000,000 history rows on two cores.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tracseq_dagster.contract import (
    A260_230_IDEAL,
    A260_280_IDEAL_DNA,
    A260_280_IDEAL_RNA,
    COLUMN_BY_NAME,
    DNA_TYPES,
    PRIORITIES,
    QC_STATUSES,
    RNA_TYPES,
    SAMPLE_TYPES,
    STORAGE_TARGET_C,
    TIMESTAMP_COLUMNS,
)

__all__ = [
    "AS_OF_COLUMN",
    "CATEGORICAL_FEATURES",
    "DELAY_CATEGORIES",
    "FEATURE_CODE_VERSION",
    "FEATURE_NAMES",
    "FEATURE_SPECS",
    "FEATURE_SPEC_BY_NAME",
    "FeatureSpec",
    "HistorySnapshot",
    "LABEL_COLUMN",
    "NUMERIC_FEATURES",
    "AsOf",
    "FeatureColumns",
    "as_of_ns",
    "compute_features",
    "feature_columns",
    "purity_score",
]

# --------------------------------------------------------------------------- parameters

#: Gaussian widths of the purity score around the contract's ideal ratios.
A260_280_WIDTH = 0.15
A260_230_WIDTH = 0.3

#: Processing delay categories and their upper bounds in hours (exclusive).
DELAY_CATEGORIES: tuple[str, ...] = ("same_day", "normal", "delayed", "critical")
DELAY_BOUNDS_HOURS: tuple[float, ...] = (24.0, 72.0, 168.0)

#: Smoothed failure rate ``(fails + m * p0) / (n + m)``.
FAILURE_PRIOR = 0.15
FAILURE_PRIOR_WEIGHT = 10.0
FAIL_STATUS = "fail"
URGENT_PRIORITY = "urgent"

#: Smallest sample age used as the denominator of the excursion rate (1 hour, in days).
MIN_AGE_DAYS = 1.0 / 24.0

#: quality_risk_score = sigmoid(RISK_INTERCEPT + sum(weight * term)); terms in _risk_terms.
RISK_INTERCEPT = -3.0
RISK_WEIGHTS: Mapping[str, float] = {
    "warm_storage": 1.0,  # clip(storage_temp_deviation_c, 0, 30) / 10: per 10 °C warmer than target
    "max_excursion": 0.5,  # clip(max_temp_deviation_c, 0, 30) / 10: per 10 °C
    "excursion_rate": 0.5,  # clip(temp_excursion_rate_per_day, 0, 1)
    "freeze_thaw": 0.8,  # clip(freeze_thaw_cycles, 0, 20) / 5: per 5 cycles
    "impurity": 1.5,  # 1 - purity_score (0.5 when unknown)
    "degradation": 2.0,  # 1 - integrity_score (0.5 when unknown)
    "processing_delay": 0.8,  # clip(processing_delay_hours, 0, 720) / 168: per week
    "age": 0.3,  # clip(sample_age_hours, 0, 5 years) / 1 year
}

HOURS_NS = 3_600_000_000_000
DAY_NS = 24 * HOURS_NS
_NAT = np.iinfo(np.int64).min

LABEL_COLUMN = "qc_status"
AS_OF_COLUMN = "as_of"
SAMPLE_ID = "sample_id"

# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its name, unit, what it means, and how a model should read it.

    ``kind="numeric"`` features are ``float64``; ``kind="categorical"`` features are pandas
    categoricals with exactly ``categories`` (fixed, so every frame encodes them alike).
    """

    name: str
    unit: str
    description: str
    kind: Literal["numeric", "categorical"]
    categories: tuple[str, ...] | None = None


FEATURE_SPECS: tuple[FeatureSpec, ...] = (
    FeatureSpec("sample_age_hours", "h", "Time since collection: as_of - collection_ts.", "numeric"),
    FeatureSpec("transit_time_hours", "h", "Collection to receipt: received_ts - collection_ts.", "numeric"),
    FeatureSpec(
        "processing_delay_hours",
        "h",
        "Receipt to extraction: (extraction_ts if extraction_ts <= as_of else as_of) - received_ts; "
        "a sample not yet extracted keeps waiting.",
        "numeric",
    ),
    FeatureSpec(
        "processing_delay_category",
        "category",
        "processing_delay_hours binned: same_day < 24 h <= normal < 72 h <= delayed < 168 h <= critical.",
        "categorical",
        DELAY_CATEGORIES,
    ),
    FeatureSpec(
        "storage_temp_deviation_c",
        "°C",
        "storage_temp_c - STORAGE_TARGET_C[sample_type]; positive = warmer than the target.",
        "numeric",
    ),
    FeatureSpec(
        "temp_excursion_rate_per_day",
        "1/day",
        "temp_excursions / max(sample age in days, 1 hour).",
        "numeric",
    ),
    FeatureSpec("max_temp_deviation_c", "°C", "Largest recorded excursion from the set point, as exported.", "numeric"),
    FeatureSpec("freeze_thaw_cycles", "count", "Freeze-thaw cycles, as exported.", "numeric"),
    FeatureSpec(
        "purity_score",
        "score 0..1",
        "Mean of two Gaussians, exp(-((r - ideal) / width)^2 / 2): A260/280 against 2.0 (RNA types) or "
        "1.8 (others), width 0.15; A260/230 against 2.1, width 0.3. 1 at the ideals; mean of the known "
        "ratios, NaN if neither is known.",
        "numeric",
    ),
    FeatureSpec(
        "integrity_score",
        "score 0..1",
        "(RIN - 1) / 9 for RNA types, (DIN - 1) / 9 for DNA types, clipped to 0..1; NaN when the "
        "type's integrity number is missing (the other type's number is ignored).",
        "numeric",
    ),
    FeatureSpec("log_concentration", "log10(1 + ng/µL)", "log10(1 + concentration_ng_ul).", "numeric"),
    FeatureSpec("total_yield_ng", "ng", "concentration_ng_ul * volume_ul.", "numeric"),
    FeatureSpec("box_utilisation", "fraction 0..1", "box_occupancy / 100 positions.", "numeric"),
    FeatureSpec(
        "freezer_utilisation",
        "fraction 0..1",
        "Mean box_utilisation of the other history samples in the same freezer (first segment of "
        "storage_location) received strictly before as_of; the row's own box_utilisation when there "
        "are none (the only box of that freezer we can see).",
        "numeric",
    ),
    FeatureSpec(
        "operator_failure_rate",
        "fraction 0..1",
        "(fails + 10 * 0.15) / (n + 10) over the other history samples of this operator labelled "
        "(label_ts) strictly before as_of; 0.15 with no history.",
        "numeric",
    ),
    FeatureSpec(
        "operator_history_count",
        "count",
        "n: other history samples of this operator labelled strictly before as_of.",
        "numeric",
    ),
    FeatureSpec(
        "site_failure_rate",
        "fraction 0..1",
        "(fails + 10 * 0.15) / (n + 10) over the other history samples of this site labelled "
        "(label_ts) strictly before as_of; 0.15 with no history.",
        "numeric",
    ),
    FeatureSpec(
        "site_history_count",
        "count",
        "n: other history samples of this site labelled strictly before as_of.",
        "numeric",
    ),
    FeatureSpec("is_urgent", "0/1", "1 if priority == 'urgent', 0 if routine, NaN if missing.", "numeric"),
    FeatureSpec("sample_type", "category", "Material type (contract.SAMPLE_TYPES).", "categorical", SAMPLE_TYPES),
    FeatureSpec("weekday_received", "0=Monday..6=Sunday", "Weekday of received_ts in UTC.", "numeric"),
    FeatureSpec(
        "quality_risk_score",
        "score 0..1",
        "sigmoid(-3 + 1.0*warm + 0.5*max_excursion + 0.5*excursion_rate + 0.8*freeze_thaw + "
        "1.5*(1 - purity) + 2.0*(1 - integrity) + 0.8*delay + 0.3*age), terms as in RISK_WEIGHTS; "
        "a fixed prior, no labels used. Unknown purity/integrity count as 0.5, other unknown terms as 0.",
        "numeric",
    ),
)
FEATURE_SPEC_BY_NAME: Mapping[str, FeatureSpec] = {s.name: s for s in FEATURE_SPECS}
FEATURE_NAMES: tuple[str, ...] = tuple(s.name for s in FEATURE_SPECS)
NUMERIC_FEATURES: tuple[str, ...] = tuple(s.name for s in FEATURE_SPECS if s.kind == "numeric")
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(s.name for s in FEATURE_SPECS if s.kind == "categorical")

# The columns read from ``history`` (an empty history may come without them).
_HISTORY_COLUMNS: tuple[str, ...] = (
    "sample_id", "received_ts", "extraction_ts", "sequencing_ts", "storage_location",
    "box_occupancy", "operator_id", "site", "qc_status",
)  # fmt: skip

# ------------------------------------------------------------------------ column access

#: Samples as plain column arrays, the cheap input for a few rows (serving's micro-batches,
#: where a typed frame's fixed costs outweigh the computation): timestamps ``datetime64[ns]``
#: (UTC, NaT when missing), numbers ``float64`` (NaN), strings ``object`` (None).
SampleColumns: TypeAlias = Mapping[str, np.ndarray]
Samples: TypeAlias = pd.DataFrame | SampleColumns


def _row_count(frame: Samples) -> int:
    return len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(frame.values())))


def _take_rows(frame: Samples, rows: np.ndarray) -> Samples:
    if isinstance(frame, pd.DataFrame):
        return frame.iloc[rows]
    return {name: values[rows] for name, values in frame.items()}


def _column(frame: Samples, name: str, what: str) -> pd.Series | np.ndarray | None:
    """The column ``name``; None for a missing optional contract column, error for a required one
    (a column outside the sample contract, such as a run export's, counts as required)."""
    if name in (frame.columns if isinstance(frame, pd.DataFrame) else frame):
        return frame[name]
    if name not in COLUMN_BY_NAME or COLUMN_BY_NAME[name].required:
        raise ValueError(f"{what} is missing the required contract column {name!r}")
    return None


def _ns(frame: Samples, name: str, what: str) -> np.ndarray:
    """A timestamp column as int64 nanoseconds since the epoch (UTC), NaT as ``_NAT``.

    Typed frames carry ``datetime64[ns, UTC]``; anything else is parsed, naive as UTC.
    """
    s = _column(frame, name, what)
    if s is None:
        return np.full(_row_count(frame), _NAT, dtype=np.int64)
    if isinstance(s, np.ndarray) and s.dtype == "datetime64[ns]":
        return s.view(np.int64)  # NaT is the smallest int64, as _NAT
    utc = s if isinstance(s, pd.Series) and isinstance(s.dtype, pd.DatetimeTZDtype) else pd.to_datetime(s, utc=True)
    return utc.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _float(frame: Samples, name: str, what: str) -> np.ndarray:
    """A numeric column as float64 with NaN for missing values (all NaN if an optional column is absent)."""
    s = _column(frame, name, what)
    if s is None:
        return np.full(_row_count(frame), np.nan)
    if isinstance(s, np.ndarray) and s.dtype == np.float64:
        return s
    s = pd.Series(s) if isinstance(s, np.ndarray) else s
    if not (pd.api.types.is_float_dtype(s.dtype) or pd.api.types.is_integer_dtype(s.dtype)):
        s = pd.to_numeric(s, errors="coerce")
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _obj(frame: Samples, name: str, what: str) -> np.ndarray:
    """A string column as an object array (no copy for ``"string"`` dtype); missing values stay NA-like."""
    s = _column(frame, name, what)
    if s is None:
        return np.full(_row_count(frame), None, dtype=object)
    return np.asarray(s if isinstance(s, np.ndarray) else s.array, dtype=object)


#: Up to this many values, positions are looked up in a dict: a hash index's fixed cost per
#: call (~70 µs) is most of a serving micro-batch's; above it, the vectorised index wins.
_FEW_VALUES = 64


class _Positions:
    """Position of each value in a fixed list of distinct string keys; -1 for missing or unknown values."""

    def __init__(self, keys: Any) -> None:
        self.index = pd.Index(keys, dtype=object)
        self._of = {key: i for i, key in enumerate(self.index)}

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if len(values) <= _FEW_VALUES:  # the same answer as get_indexer, for a few values
            of = self._of
            return np.fromiter((of.get(v, -1) if isinstance(v, str) else -1 for v in values), np.int64, len(values))
        return self.index.get_indexer(pd.Index(values, dtype=object)).astype(np.int64)


@functools.cache
def _positions_in(allowed: tuple[str, ...]) -> _Positions:
    return _Positions(allowed)


def _enum(values: np.ndarray, allowed: tuple[str, ...]) -> np.ndarray:
    """Codes of ``values`` in ``allowed`` (-1 for missing or unknown values)."""
    return _positions_in(allowed)(values)


def _coalesce(*arrays: np.ndarray) -> np.ndarray:
    """Element-wise first non-NaT of int64-nanosecond arrays."""
    out = arrays[0].copy()
    for a in arrays[1:]:
        missing = out == _NAT
        out[missing] = a[missing]
    return out


def weekday_utc(ns: np.ndarray) -> np.ndarray:
    """Weekday (0 = Monday .. 6 = Sunday, float64) of int64-nanosecond UTC instants."""
    return ((ns // DAY_NS + 3) % 7).astype(np.float64)  # 1970-01-01 was a Thursday


def _hours(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """(later - earlier) in hours; NaN where either is NaT."""
    bad = (later == _NAT) | (earlier == _NAT)
    out = (later - earlier).astype(np.float64) / HOURS_NS
    out[bad] = np.nan
    return out


def _codes(*arrays: np.ndarray) -> list[np.ndarray]:
    """Factorize object arrays jointly: equal strings get equal int64 codes, missing values -1."""
    codes, _ = pd.factorize(np.concatenate(arrays))
    return np.split(codes.astype(np.int64), np.cumsum([len(a) for a in arrays])[:-1])


def _freezer_heads(locations: np.ndarray) -> pa.Array:
    """The freezer of each storage location (first segment of FREEZER/RACK/BOX/POSITION); null when missing."""
    joined = pa.array(locations, type=pa.string(), from_pandas=True)
    return pc.list_element(pc.split_pattern(joined, "/", max_splits=1), 0)


def _freezer_names(locations: np.ndarray) -> np.ndarray:
    """:func:`_freezer_heads` as an object array (None when missing); plain Python for a few rows."""
    if len(locations) <= _FEW_VALUES:
        names = np.empty(len(locations), dtype=object)
        names[:] = [v.split("/", 1)[0] if isinstance(v, str) else None for v in locations]
        return names
    return np.asarray(_freezer_heads(locations).to_pandas(), dtype=object)


def _freezer_codes(*locations: np.ndarray) -> list[np.ndarray]:
    """Joint codes of the freezer (first segment of FREEZER/RACK/BOX/POSITION); missing -1."""
    heads = _freezer_heads(np.concatenate(locations))
    codes = pc.fill_null(pc.dictionary_encode(heads).indices, -1).to_numpy(zero_copy_only=False)
    return np.split(codes.astype(np.int64), np.cumsum([len(a) for a in locations])[:-1])


@dataclass(frozen=True)
class _Timeline:
    """Events and queries on one time axis, each sorted once and shared by several aggregates.

    ``rank_e[j]`` is the number of events earlier than event ``j`` and ``rank_q[i]`` the
    number of events earlier than query ``i``, so ``ev_time[j] < q_time[i]`` exactly when
    ``rank_e[j] < rank_q[i]``; all ranks are below ``width``.
    """

    ev_order: np.ndarray  # events sorted by time
    q_order: np.ndarray  # queries sorted by time
    rank_e: np.ndarray
    rank_q: np.ndarray
    width: int

    @classmethod
    def build(cls, ev_time: np.ndarray, q_time: np.ndarray, q_order: np.ndarray) -> _Timeline:
        n = len(ev_time)
        ev_order = np.argsort(ev_time, kind="stable")
        sorted_t = ev_time[ev_order]
        run_start = np.ones(n, dtype=bool)
        run_start[1:] = sorted_t[1:] != sorted_t[:-1]
        rank_e = np.empty(n, dtype=np.int64)
        rank_e[ev_order] = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
        rank_q = np.empty(len(q_time), dtype=np.int64)
        # sorted needles: the binary searches walk memory in order (much faster than random ones)
        rank_q[q_order] = np.searchsorted(sorted_t, q_time[q_order], side="left")
        return cls(ev_order, q_order, rank_e, rank_q, n + 1)


def _order_by_group(group: np.ndarray, time_order: np.ndarray) -> np.ndarray:
    """Permutation sorting by (group, time), given the time order: a stable sort by group.

    Group codes that fit in int16 (operators, sites, freezers) use numpy's linear radix sort.
    """
    g = group[time_order]
    if len(g) and g.min() >= -1 and g.max() < np.iinfo(np.int16).max:
        g = g.astype(np.int16)
    return time_order[np.argsort(g, kind="stable")]


def _sums_before(
    ev_group: np.ndarray, ev_values: np.ndarray, q_group: np.ndarray, timeline: _Timeline
) -> tuple[np.ndarray, np.ndarray]:
    """Point-in-time group counts and sums.

    For each query ``i``, counts the events ``j`` with ``ev_group[j] == q_group[i]`` and an
    event time strictly before the query time (ranks of ``timeline``), and sums their
    ``ev_values``. Groups are int codes >= 0; a query group of -1 matches nothing.

    Events and queries are both sorted by the packed key ``group * width + rank``; the
    answer for a query is read at its insertion point and at its group's start (count =
    difference of positions, sum = difference of cumulative sums). With integer-valued
    ``ev_values`` the sums are exact, whatever the input order.
    """
    n_q = len(q_group)
    if len(ev_group) == 0 or n_q == 0:
        return np.zeros(n_q), np.zeros(n_q)
    w = timeline.width
    ev_perm = _order_by_group(ev_group, timeline.ev_order)
    ev_key = (ev_group * w + timeline.rank_e)[ev_perm]
    cum = np.zeros(len(ev_key) + 1)
    np.cumsum(ev_values[ev_perm], out=cum[1:])
    q_perm = _order_by_group(q_group, timeline.q_order)
    q_group_sorted = q_group[q_perm]
    hi = np.searchsorted(ev_key, q_group_sorted * w + timeline.rank_q[q_perm], side="left")
    lo = np.searchsorted(ev_key, q_group_sorted * w, side="left")
    hi[q_group_sorted < 0] = lo[q_group_sorted < 0]
    count, total = np.empty(n_q), np.empty(n_q)
    count[q_perm] = hi - lo
    total[q_perm] = cum[hi] - cum[lo]
    return count, total


# ---------------------------------------------------------------------- feature helpers


def purity_score(a260_280: np.ndarray, a260_230: np.ndarray, rna: np.ndarray) -> np.ndarray:
    """Purity 0..1: mean of Gaussian closeness of A260/280 and A260/230 to their ideals.

    ``exp(-((r - ideal) / width)^2 / 2)``; A260/280 ideal 2.0 for RNA (``rna`` True) else 1.8,
    width 0.15; A260/230 ideal 2.1, width 0.3. The mean is over the known ratios (NaN if none).
    """
    ideal_280 = np.where(rna, A260_280_IDEAL_RNA, A260_280_IDEAL_DNA)
    s280 = np.exp(-0.5 * ((a260_280 - ideal_280) / A260_280_WIDTH) ** 2)
    s230 = np.exp(-0.5 * ((a260_230 - A260_230_IDEAL) / A260_230_WIDTH) ** 2)
    k280, k230 = ~np.isnan(s280), ~np.isnan(s230)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(k280, s280, 0.0) + np.where(k230, s230, 0.0)) / (k280.astype(np.float64) + k230)


def _risk_terms(f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The transformed risk terms of ``quality_risk_score`` (see RISK_WEIGHTS)."""

    def filled(x: np.ndarray, fill: float) -> np.ndarray:
        return np.where(np.isnan(x), fill, x)

    return {
        "warm_storage": np.clip(filled(f["storage_temp_deviation_c"], 0.0), 0.0, 30.0) / 10.0,
        "max_excursion": np.clip(filled(f["max_temp_deviation_c"], 0.0), 0.0, 30.0) / 10.0,
        "excursion_rate": np.clip(filled(f["temp_excursion_rate_per_day"], 0.0), 0.0, 1.0),
        "freeze_thaw": np.clip(filled(f["freeze_thaw_cycles"], 0.0), 0.0, 20.0) / 5.0,
        "impurity": 1.0 - filled(f["purity_score"], 0.5),
        "degradation": 1.0 - filled(f["integrity_score"], 0.5),
        "processing_delay": np.clip(filled(f["processing_delay_hours"], 0.0), 0.0, 720.0) / 168.0,
        "age": np.clip(filled(f["sample_age_hours"], 0.0), 0.0, 5 * 8760.0) / 8760.0,
    }


def _quality_risk_score(f: Mapping[str, np.ndarray]) -> np.ndarray:
    """sigmoid(RISK_INTERCEPT + sum of RISK_WEIGHTS[t] * term t): a label-free prior risk, 0..1."""
    terms = _risk_terms(f)
    z = np.full(len(next(iter(terms.values()))), RISK_INTERCEPT)
    for name, weight in RISK_WEIGHTS.items():
        z = z + weight * terms[name]
    return 1.0 / (1.0 + np.exp(-z))


#: Per query row, (count, sum) of the history events of its operator, site and freezer.
Aggregates = dict[str, tuple[np.ndarray, np.ndarray]]


def _history_events(history: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the aggregates read of each history sample: receipt time, label time (``label_ts``),
    box occupancy and the QC status code (-1 when unlabelled)."""
    hw = "history"
    received = _ns(history, "received_ts", hw)
    label = _coalesce(_ns(history, "sequencing_ts", hw), _ns(history, "extraction_ts", hw), received)
    return received, label, _float(history, "box_occupancy", hw), _enum(_obj(history, "qc_status", hw), QC_STATUSES)


def _history_aggregates(
    sub: Samples, history: pd.DataFrame, samples: Samples, sid_index: pd.Index, idx: np.ndarray, t: np.ndarray
) -> Aggregates:
    """Operator and site (labelled count, fail count) and freezer (count, occupancy sum) per row of
    ``sub``, over ``history`` events strictly before the row's ``t``, the row's own sample excluded."""
    what, hw = "samples", "history"
    n_q = len(idx)
    if len(history) == 0:
        history = pd.DataFrame(
            {c: pd.Series(dtype="datetime64[ns, UTC]" if c.endswith("_ts") else object) for c in _HISTORY_COLUMNS}
        )
    h_sid = _obj(history, "sample_id", hw)
    h_received, h_label, h_occ, h_qc = _history_events(history)

    q_op, e_op = _codes(_obj(sub, "operator_id", what), _obj(history, "operator_id", hw))
    q_site, e_site = _codes(_obj(sub, "site", what), _obj(history, "site", hw))
    q_frz, e_frz = _freezer_codes(_obj(sub, "storage_location", what), _obj(history, "storage_location", hw))

    # Pairs (output row pi, history row pj) of the same sample: their contributions are subtracted.
    row_of_input = np.full(_row_count(samples) + 1, -1, dtype=np.int64)  # input position -> output row; [-1] -> -1
    row_of_input[idx] = np.arange(n_q)
    match = row_of_input[sid_index.get_indexer(h_sid)] if len(h_sid) else np.array([], dtype=np.int64)
    pj = np.flatnonzero(match >= 0)
    pi = match[pj]

    q_order = np.argsort(t, kind="stable")  # shared by every timeline

    def aggregate(
        ev: np.ndarray, ev_group: np.ndarray, timeline: _Timeline, values: np.ndarray, q_group: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Count and sum of ``values`` over events ``ev`` (mask) of the row's group strictly
        before its as_of, minus the row's own sample."""
        count, total = _sums_before(ev_group[ev], values[ev], q_group, timeline)
        ev_pos = np.cumsum(ev) - 1  # position of a history row among the events
        own = ev[pj] & (ev_group[pj] == q_group[pi]) & (q_group[pi] >= 0)
        own[own] = timeline.rank_e[ev_pos[pj[own]]] < timeline.rank_q[pi[own]]
        count -= np.bincount(pi[own], minlength=n_q)
        total -= np.bincount(pi[own], weights=values[pj[own]], minlength=n_q)
        return count, total

    labelled = (h_qc >= 0) & (h_label != _NAT)
    is_fail = (h_qc == QC_STATUSES.index(FAIL_STATUS)).astype(np.float64)
    label_timeline = _Timeline.build(h_label[labelled], t, q_order)
    out: Aggregates = {}
    for name, q_group, ev_group in (("operator", q_op, e_op), ("site", q_site, e_site)):
        out[name] = aggregate(labelled, ev_group, label_timeline, is_fail, q_group)
    in_freezer = (h_received != _NAT) & ~np.isnan(h_occ) & (e_frz >= 0)
    freezer_timeline = _Timeline.build(h_received[in_freezer], t, q_order)
    out["freezer"] = aggregate(in_freezer, e_frz, freezer_timeline, h_occ, q_frz)
    return out


@dataclass(frozen=True)
class HistorySnapshot:
    """The history aggregates as they stand after every known event: what serving needs.

    ``compute_features(samples, HistorySnapshot.build(history), as_of)`` equals
    ``compute_features(samples, history, as_of)`` for every ``as_of`` later than the latest
    event of ``history`` (``cutoff``): then every label and every receipt is "strictly before"
    the row, so the point-in-time aggregates are plain per-group totals, which a dictionary
    lookup answers in microseconds instead of sorting the whole history per request. Earlier
    instants raise: they need the full history.

    ``groups`` holds one row per (kind, key): operator and site labelled counts and fail counts,
    freezer sample counts and occupancy sums. ``own`` holds each history sample's contribution,
    so a request about a known sample excludes its own label, exactly like the full path.
    """

    cutoff: pd.Timestamp
    groups: pd.DataFrame  # index (kind, key); columns count, total
    own: pd.DataFrame  # index sample_id; operator_id, site, freezer, labelled, is_fail, in_freezer, occupancy

    @classmethod
    def build(cls, history: pd.DataFrame) -> HistorySnapshot:
        hw = "history"
        h_received, h_label, h_occ, h_qc = _history_events(history)
        own = pd.DataFrame(
            {
                "operator_id": _obj(history, "operator_id", hw),
                "site": _obj(history, "site", hw),
                "freezer": _freezer_names(_obj(history, "storage_location", hw)),
                "labelled": (h_qc >= 0) & (h_label != _NAT),
                "is_fail": (h_qc == QC_STATUSES.index(FAIL_STATUS)).astype(np.float64),
                "occupancy": h_occ,
            },
            index=pd.Index(_obj(history, "sample_id", hw), name=SAMPLE_ID),
        )
        own["in_freezer"] = (h_received != _NAT) & ~np.isnan(h_occ) & own["freezer"].notna()
        labelled, in_freezer = own[own["labelled"]], own[own["in_freezer"]]
        parts = [
            labelled.groupby("operator_id")["is_fail"].agg(["count", "sum"]).assign(kind="operator"),
            labelled.groupby("site")["is_fail"].agg(["count", "sum"]).assign(kind="site"),
            in_freezer.groupby("freezer")["occupancy"].agg(["count", "sum"]).assign(kind="freezer"),
        ]
        groups = pd.concat([p.rename_axis("key").reset_index() for p in parts], ignore_index=True)
        groups = groups.rename(columns={"sum": "total"}).set_index(["kind", "key"])[["count", "total"]].astype(float)
        events = np.concatenate([h_label[own["labelled"].to_numpy()], h_received[own["in_freezer"].to_numpy()]])
        cutoff = pd.Timestamp(int(events.max()), tz="UTC") if len(events) else pd.Timestamp(0, tz="UTC")
        relevant = own[own["labelled"] | own["in_freezer"]]
        return cls(cutoff=cutoff, groups=groups, own=relevant[~relevant.index.duplicated(keep="first")])

    def aggregates(self, sub: Samples, t: np.ndarray) -> Aggregates:
        """The aggregates of :func:`_history_aggregates` for rows computed after ``cutoff``."""
        if len(t) and t.min() <= self.cutoff.value:
            raise ValueError(
                f"this history snapshot holds events up to {self.cutoff.isoformat()}; "
                "features as of that moment or earlier need the full history"
            )
        what = "samples"
        keys = {
            "operator": _obj(sub, "operator_id", what),
            "site": _obj(sub, "site", what),
            "freezer": _freezer_names(_obj(sub, "storage_location", what)),
        }
        own_row = self._lookup["own"](_obj(sub, "sample_id", what))
        out: Aggregates = {}
        for kind, key in keys.items():
            positions, count, total, own_key, own_counted, own_value = self._lookup[kind]
            at = positions(key)
            found = at >= 0
            n = np.where(found, count[np.maximum(at, 0)], 0.0)
            sums = np.where(found, total[np.maximum(at, 0)], 0.0)
            # the row's own sample, when the history knows it, under the same key
            mine = (own_row >= 0) & found
            mine[mine] = own_counted[own_row[mine]] & (own_key[own_row[mine]] == at[mine])
            out[kind] = (n - mine, sums - np.where(mine, own_value[np.maximum(own_row, 0)], 0.0))
        return out

    @functools.cached_property
    def _lookup(self) -> dict[str, Any]:
        """Key positions and plain arrays per kind, built once: a lookup is one :class:`_Positions` call."""
        own = self.own
        lookup: dict[str, Any] = {"own": _Positions(own.index)}
        columns = {"operator": ("operator_id", "labelled", "is_fail"), "site": ("site", "labelled", "is_fail"),
                   "freezer": ("freezer", "in_freezer", "occupancy")}  # fmt: skip
        for kind, (key_column, counted, value) in columns.items():
            table = self.groups.xs(kind, level="kind") if kind in self.groups.index.get_level_values(0) else None
            positions = _Positions([] if table is None else table.index)
            lookup[kind] = (
                positions,
                np.empty(0) if table is None else table["count"].to_numpy(dtype=float),
                np.empty(0) if table is None else table["total"].to_numpy(dtype=float),
                positions.index.get_indexer(pd.Index(own[key_column], dtype=object)),
                own[counted].to_numpy(dtype=bool),
                np.nan_to_num(own[value].to_numpy(dtype=float)),
            )
        return lookup

    def save(self, folder: Path) -> None:
        """Write the snapshot as two Parquet files and the cutoff (shipped inside the Bento)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.groups.reset_index().to_parquet(folder / "groups.parquet", index=False)
        self.own.reset_index().to_parquet(folder / "own.parquet", index=False)
        (folder / "cutoff.txt").write_text(self.cutoff.isoformat())

    @classmethod
    def load(cls, folder: Path) -> HistorySnapshot:
        groups = pd.read_parquet(folder / "groups.parquet").set_index(["kind", "key"])
        own = pd.read_parquet(folder / "own.parquet").set_index(SAMPLE_ID)
        for column in ("operator_id", "site", "freezer"):
            own[column] = own[column].astype(object).where(own[column].notna(), None)
        return cls(cutoff=pd.Timestamp((folder / "cutoff.txt").read_text()), groups=groups, own=own)


def _to_utc_timestamp(as_of: pd.Timestamp | datetime | str) -> pd.Timestamp:
    ts = pd.Timestamp(as_of)
    if ts is pd.NaT:
        raise ValueError("as_of must be a timestamp, not NaT")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


#: An instant, or one instant per sample row (see the module docstring), or None.
AsOf: TypeAlias = pd.Timestamp | datetime | str | np.datetime64 | np.ndarray | pd.Series | pd.DatetimeIndex | list[Any] | None


def _is_scalar_instant(as_of: Any) -> bool:
    return isinstance(as_of, (pd.Timestamp, datetime, str, np.datetime64)) or np.ndim(as_of) == 0


def as_of_ns(as_of: Any, samples: Samples) -> np.ndarray:
    """Per-row ``as_of`` (one instant per row of ``samples``) as int64 nanoseconds since the epoch (UTC).

    Naive instants are read as UTC; NaT, a length that is not the samples' row count, and a
    ``Series`` indexed differently from a samples frame are refused (positions, not labels,
    align the instants with the rows).
    """
    n = _row_count(samples)
    if isinstance(as_of, pd.Series) and isinstance(samples, pd.DataFrame) and not as_of.index.equals(samples.index):
        raise ValueError("a per-row as_of Series must have the samples' index (it is aligned by position)")
    values = as_of.array if isinstance(as_of, (pd.Series, pd.Index)) else as_of
    if len(values) != n:
        raise ValueError(f"per-row as_of has {len(values)} instants for {n} sample rows")
    if isinstance(values, pd.arrays.DatetimeArray) and values.tz is not None:
        ns = values.tz_convert("UTC").as_unit("ns").asi8
    else:
        ns = pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8
    if (ns == _NAT).any():
        raise ValueError("as_of must be a timestamp on every row, not NaT")
    return np.asarray(ns, dtype=np.int64)


# -------------------------------------------------------------------------- entry point


def compute_features(
    samples: Samples,
    history: pd.DataFrame | HistorySnapshot,
    as_of: AsOf = None,
) -> pd.DataFrame:
    """Compute the point-in-time features of ``samples`` against ``history``.

    Args:
        samples: typed sample frame (contract columns; extras ignored), or the same as
            :data:`SampleColumns` (plain arrays: the same answer without a frame's fixed
            costs). ``sample_id`` must be unique. Optional contract columns may be absent
            (read as missing).
        history: typed frame of all known samples (may include ``samples``; may be empty).
            Only ``sample_id``, the timestamps, ``storage_location``, ``box_occupancy``,
            ``operator_id``, ``site`` and ``qc_status`` are read. Or a :class:`HistorySnapshot`
            of it (serving): the same answer for ``as_of`` after its cutoff, without the sort.
        as_of: an instant (naive = UTC) at which every row is computed; or one instant per
            sample row (array-like, positionally aligned), each row computed as of its own;
            or None to compute each sample as of its own ``label_ts`` (the training view).
            See the module docstring for the exact point-in-time rules.

    Returns:
        One row per sample that exists at its ``as_of``, indexed by ``sample_id`` (sorted),
        with columns ``FEATURE_NAMES + ("as_of", "qc_status")``.
    """
    return feature_columns(samples, history, as_of).frame()


@dataclass(frozen=True)
class FeatureColumns:
    """What :func:`compute_features` answers, as plain arrays in the samples' row order.

    The frame costs about a millisecond to assemble whatever its rows: serving's
    micro-batches read these arrays instead (:func:`feature_columns`), the same features.
    """

    rows: np.ndarray  # int64: for each row here, its position in the samples (rows that exist at as_of)
    sample_id: np.ndarray  # object
    numeric: dict[str, np.ndarray]  # NUMERIC_FEATURES -> float64, NaN where unknown
    codes: dict[str, np.ndarray]  # CATEGORICAL_FEATURES -> int64 index into the spec's categories, -1 where unknown
    as_of: np.ndarray  # int64 nanoseconds since the epoch (UTC)
    label: np.ndarray  # object: the qc_status known at as_of, or pd.NA

    def __len__(self) -> int:
        return len(self.sample_id)

    def take(self, positions: np.ndarray) -> FeatureColumns:
        """The rows at ``positions`` (of these rows, not of the samples)."""
        return FeatureColumns(
            rows=self.rows[positions],
            sample_id=self.sample_id[positions],
            numeric={name: values[positions] for name, values in self.numeric.items()},
            codes={name: values[positions] for name, values in self.codes.items()},
            as_of=self.as_of[positions],
            label=self.label[positions],
        )

    def labels(self, name: str) -> np.ndarray:
        """A categorical feature's values as an object array (None where unknown)."""
        # numpy's stubs take no None to append; here it is one more object element (the unknown code)
        return np.append(np.asarray(FEATURE_SPEC_BY_NAME[name].categories, dtype=object), None)[self.codes[name]]  # type: ignore[call-overload]

    def frame(self, *, sort: bool = True) -> pd.DataFrame:
        """The :func:`compute_features` frame: indexed by sample_id (sorted, unless ``sort`` is
        False: then in these rows' order), FEATURE_NAMES, as_of, qc_status."""
        # one float block (no consolidation copy), then the other columns
        index = pd.Index(pd.arrays.StringArray(self.sample_id), name=SAMPLE_ID)
        out = pd.DataFrame(
            np.stack([self.numeric[name] for name in NUMERIC_FEATURES]).T, columns=list(NUMERIC_FEATURES), index=index
        )
        for name in CATEGORICAL_FEATURES:
            categories = list(FEATURE_SPEC_BY_NAME[name].categories or ())
            out.insert(FEATURE_NAMES.index(name), name, pd.Categorical.from_codes(self.codes[name], categories=categories))
        out[AS_OF_COLUMN] = pd.DatetimeIndex(self.as_of.view("datetime64[ns]")).tz_localize("UTC")
        out[LABEL_COLUMN] = pd.arrays.StringArray(self.label)
        if sort and not index.is_monotonic_increasing:  # sort by sample_id (code-point order; arrow is the fast sort)
            out = out.iloc[pc.sort_indices(pa.array(self.sample_id, type=pa.string())).to_numpy()]
        return out


def feature_columns(
    samples: Samples,
    history: pd.DataFrame | HistorySnapshot,
    as_of: AsOf = None,
) -> FeatureColumns:
    """:func:`compute_features` without the frame: the same features as :class:`FeatureColumns`."""
    what = "samples"
    sid = _obj(samples, "sample_id", what)
    if pd.isna(sid).any():
        raise ValueError("samples must have a sample_id on every row")
    if not (len(set(sid)) == len(sid) if len(sid) <= _FEW_VALUES else pd.Index(sid, dtype=object).is_unique):
        sid_index = pd.Index(sid, dtype=object)
        dupes = sorted(map(str, sid_index[sid_index.duplicated()].unique()))[:5]
        raise ValueError(f"samples must have unique sample_id values; duplicated: {dupes}")

    collection = _ns(samples, "collection_ts", what)
    received = _ns(samples, "received_ts", what)
    extraction = _ns(samples, "extraction_ts", what)
    sequencing = _ns(samples, "sequencing_ts", what)
    label_ts = _coalesce(sequencing, extraction, received)

    # Which rows exist, and the instant each is computed at.
    if as_of is None:
        t = label_ts.copy()
        keep = received != _NAT
    else:
        if _is_scalar_instant(as_of):
            t = np.full(_row_count(samples), _to_utc_timestamp(as_of).as_unit("ns").value, dtype=np.int64)
        else:
            t = as_of_ns(as_of, samples)
        keep = (received != _NAT) & (received <= t)
    idx = np.flatnonzero(keep)
    n_q = len(idx)
    t, collection, received, extraction, label_ts = (a[idx] for a in (t, collection, received, extraction, label_ts))
    sub = samples if n_q == _row_count(samples) else _take_rows(samples, idx)

    type_code = _enum(_obj(sub, "sample_type", what), SAMPLE_TYPES)
    rna = np.isin(type_code, [SAMPLE_TYPES.index(x) for x in RNA_TYPES])
    dna = np.isin(type_code, [SAMPLE_TYPES.index(x) for x in DNA_TYPES])
    target = np.append([STORAGE_TARGET_C[x] for x in SAMPLE_TYPES], np.nan)[type_code]  # code -1 -> NaN

    f: dict[str, np.ndarray] = {}
    f["sample_age_hours"] = _hours(t, collection)
    f["transit_time_hours"] = _hours(received, collection)
    extraction_known = (extraction != _NAT) & (extraction <= t)
    f["processing_delay_hours"] = _hours(np.where(extraction_known, extraction, t), received)
    delay = f["processing_delay_hours"]
    delay_code = np.searchsorted(np.array(DELAY_BOUNDS_HOURS), np.nan_to_num(delay), side="right")
    delay_code[np.isnan(delay)] = -1

    f["storage_temp_deviation_c"] = _float(sub, "storage_temp_c", what) - target
    age_days = f["sample_age_hours"] / 24.0
    f["temp_excursion_rate_per_day"] = _float(sub, "temp_excursions", what) / np.maximum(age_days, MIN_AGE_DAYS)
    f["max_temp_deviation_c"] = _float(sub, "max_temp_deviation_c", what)
    f["freeze_thaw_cycles"] = _float(sub, "freeze_thaw_cycles", what)
    f["purity_score"] = purity_score(_float(sub, "a260_280", what), _float(sub, "a260_230", what), rna)
    integrity = np.where(rna, _float(sub, "rin", what), np.where(dna, _float(sub, "din", what), np.nan))
    f["integrity_score"] = np.clip((integrity - 1.0) / 9.0, 0.0, 1.0)
    concentration = _float(sub, "concentration_ng_ul", what)
    f["log_concentration"] = np.log10(1.0 + concentration)
    f["total_yield_ng"] = concentration * _float(sub, "volume_ul", what)
    f["box_utilisation"] = _float(sub, "box_occupancy", what) / 100.0

    # ---- history aggregates (point-in-time, the row's own sample excluded)
    if isinstance(history, HistorySnapshot):
        aggregates = history.aggregates(sub, t)
    else:
        aggregates = _history_aggregates(sub, history, samples, pd.Index(sid, dtype=object), idx, t)
    for name in ("operator", "site"):
        n, n_fail = aggregates[name]
        f[f"{name}_failure_rate"] = (n_fail + FAILURE_PRIOR_WEIGHT * FAILURE_PRIOR) / (n + FAILURE_PRIOR_WEIGHT)
        f[f"{name}_history_count"] = n
    n_box, occ_sum = aggregates["freezer"]
    f["freezer_utilisation"] = np.where(n_box > 0, occ_sum / np.maximum(n_box, 1) / 100.0, f["box_utilisation"])

    priority = _enum(_obj(sub, "priority", what), PRIORITIES)
    f["is_urgent"] = np.where(priority < 0, np.nan, (priority == PRIORITIES.index(URGENT_PRIORITY)).astype(np.float64))
    f["weekday_received"] = weekday_utc(received)
    f["quality_risk_score"] = _quality_risk_score(f)

    qc = _enum(_obj(sub, "qc_status", what), QC_STATUSES)
    label_known = (qc >= 0) & (label_ts != _NAT) & (label_ts <= t)
    return FeatureColumns(
        rows=idx,
        sample_id=sid[idx],
        numeric={name: f[name] for name in NUMERIC_FEATURES},
        codes={"processing_delay_category": delay_code, "sample_type": type_code},
        as_of=t,
        label=np.append(np.array(QC_STATUSES, dtype=object), pd.NA)[np.where(label_known, qc, -1)],
    )


def _source_fingerprint() -> str:
    """sha256 of this module's source plus the contract constants it reads (first 16 hex digits)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(repr((SAMPLE_TYPES, RNA_TYPES, DNA_TYPES, PRIORITIES, QC_STATUSES, TIMESTAMP_COLUMNS)).encode())
    return digest.hexdigest()[:16]


#: Changes whenever this module's source (or a contract constant it uses) changes; the
#: Dagster asset uses it as ``code_version`` so features are recomputed after a change.
FEATURE_CODE_VERSION: str = _source_fingerprint()
