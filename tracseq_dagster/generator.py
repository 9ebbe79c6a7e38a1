"""Synthetic LIMS exports that follow the lab export contract, with a documented hidden QC process.

The generator exists so that the pipeline can be exercised end to end and so that a test can
check that a model learned something real: every label comes from the process below, which a
model never sees but can recover from the exported columns.

What a generated sample looks like
----------------------------------
* ``sample_id`` is ``TS-{year}-{n:06d}`` with ``n = id_offset + 1 .. id_offset + rows`` in
  order of receipt and ``year`` the (UTC) year of collection. The contract has exactly six
  digits, which hold one million distinct serials: number 1,000,000 is written ``000000``
  and ``id_offset + rows`` may not exceed 1,000,000.
* Collection days fall over the 365 days after ``start`` (daytime hours) with a weekly
  rhythm and a trend (:func:`collection_day_weights`: sites collect less on Saturdays and
  little on Sundays, and send 30 % more at the end of the year than at its start), so that
  the demand forecast has a pattern to find; transit to the lab takes hours (site
  dependent, log-normal) and, for 3 % of samples, an extra 3 to 14 days. Rows are sorted by ``received_ts``.
* Extraction follows receipt after a log-normal delay (median 36 h, weeks in the tail; urgent
  samples four times faster), sequencing follows extraction (median 4 days). The export is
  taken at the last receipt: a sample whose extraction (sequencing) would fall after it, and a
  2 % (10 %) backlog at random, has no ``extraction_ts`` (``sequencing_ts``); a sample
  without extraction is never sequenced.
* Storage temperature sits near the set point of the sample type (``STORAGE_TARGET_C``: RNA,
  cfDNA and tissue -80 °C, DNA and saliva -20 °C, blood 4 °C, FFPE 20 °C) with sensor noise;
  5 % of samples sit 3 to 25 °C too warm. ``temp_excursions`` and ``max_temp_deviation_c``
  are those of the sample's storage unit while the sample sat in it (receipt to extraction,
  else to the export), from the hidden per-unit excursion process of
  :mod:`tracseq_dagster.operations.freezer_process` (some units worse, some degrading, fault
  episodes, door load from intake). ``max_temp_deviation_c`` is never smaller than the offset
  from the set point.
* ``rin`` exists only for ``RNA_TYPES`` and ``din`` only for ``DNA_TYPES`` (3 % missing even
  there); integrity falls with freeze-thaw cycles, FFPE DNA is degraded.
* 25 operators (``OP-001`` ..) and 8 sites (``SITE-BOS`` ..); a few of them are bad
  (``OPERATOR_EFFECT``, ``SITE_EFFECT``). Priority is ``urgent`` for 7 %.

The hidden quality process
--------------------------
:func:`hidden_quality_score` returns a latent *risk* score ``S`` (0 for a flawless sample,
higher is worse) computed from exported columns only::

    S = 0.04  * age_days                      (collection -> sequencing, else extraction, else receipt)
      + 0.15  * max_temp_deviation_c
      + 0.25  * temp_excursions
      + 0.45  * freeze_thaw_cycles
      + 4     * |a260_280 - ideal|            (ideal 2.0 for RNA_TYPES, 1.8 for DNA_TYPES)
      + 1.5   * |a260_230 - 2.1|
      + 0.5   * max(0, 7 - integrity)         (integrity = rin for RNA_TYPES, din for DNA_TYPES)
      + 0.1   * max(0, delay_days - 3)        (delay = received -> extraction)
      + 0.05  * |storage_temp_c - target|     (target = STORAGE_TARGET_C[sample_type])
      + OPERATOR_EFFECT[operator_id] + SITE_EFFECT[site]

A missing integrity or delay contributes 0; unknown operators and sites contribute 0.
``qc_status`` is drawn as ``S + N(0, 0.9²)``: below 2.6 ``pass``, from 2.6 up to 3.85
``borderline``, from 3.85 ``fail``, which gives about 65 / 20 / 15 % over the labelled rows.
The (1 - ``label_fraction``) rows that are not yet QC'd have an empty ``qc_status``; they are
chosen by rank of receipt with a little jitter, so they are mostly the most recent samples.
All constants live in ``HIDDEN_PROCESS``.

Export files
------------
:func:`write_export` writes clean CSV (comma, UTF-8, ISO-8601 ``...Z`` timestamps), typed
Parquet or JSON Lines (one object per line, ISO timestamps, ``null`` for missing). With
``messy=True`` the file looks like what a real LIMS sends (see :func:`messy_plan`), and a
tolerant parser can still recover every value (day-first dates to the minute). Naive
timestamps in messy files are UTC wall-clock times. A messy CSV uses one dialect of
``MESSY_CSV_DIALECTS``::

    dialect        separator  decimal  encoding   timestamps                        line end
    excel_de       ;          12,5     UTF-8 BOM  23.11.2025 14:05                  CRLF
    excel_uk       ,          12.5     UTF-8 BOM  23/11/2025 14:05                  CRLF
    iso_offsets    ,          12.5     UTF-8      2025-03-01T10:00:00+01:00 / naive LF
    legacy_cp1252  ;          12,5     cp1252     2025-03-01 09:00:00               CRLF

and adds unknown columns ("freezer_notes", "LIMS Batch"; "Operator Note" with accented text
in cp1252 files), and, depending on the seed, shuffled columns, LIMS header spellings
("Sample ID", "A260/280", see ``LIMS_HEADERS``) and trailing blank lines. Messy Parquet and
JSON Lines add unknown columns in a shuffled order, and their timestamps are zone-aware in
another zone or naive UTC (Parquet: per column; JSON Lines: per value, as in iso_offsets).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from tracseq_dagster.contract import (
    A260_230_IDEAL,
    A260_280_IDEAL,
    COLUMNS,
    PRIORITIES,
    QC_STATUSES,
    RNA_TYPES,
    SAMPLE_TYPES,
    STORAGE_TARGET_C,
    Kind,
)
from tracseq_dagster.operations.freezer_process import sample_excursions

__all__ = [
    "DEFAULT_START",
    "ExportStyle",
    "HIDDEN_PROCESS",
    "HiddenProcess",
    "LIMS_HEADERS",
    "MESSY_CSV_DIALECTS",
    "MessyPlan",
    "OPERATOR_EFFECT",
    "SAMPLE_EXPORT_STYLE",
    "SITE_EFFECT",
    "generate_exports",
    "generate_samples",
    "hidden_quality_score",
    "messy_plan",
    "write_export",
]

ExportFormat = Literal["csv", "parquet", "jsonl"]
EXPORT_FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl")

DEFAULT_START = pd.Timestamp("2025-01-01", tz="UTC")
SPAN_DAYS = 365
# TS-YYYY-NNNNNN has exactly six digits: serials are written modulo one million, so that a
# million-row export still fits (its last sample is NNNNNN = 000000) and ids stay unique.
SERIAL_SPACE = 1_000_000
_DAY_S = 86_400
_HOUR_S = 3_600
# Relative collection rate by weekday (Monday first) and growth over the year: see collection_day_weights.
COLLECTION_WEEKDAY_RATE: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 0.4, 0.15)
COLLECTION_YEARLY_GROWTH = 0.3


def collection_day_weights(origin: pd.Timestamp, days: int = SPAN_DAYS) -> np.ndarray:
    """P(a sample is collected on day d after ``origin``), d = 0 .. days - 1.

    Proportional to the weekday's rate times ``1 + COLLECTION_YEARLY_GROWTH * d / days``: the
    weekly rhythm and growth of a real lab's intake, which the demand forecast
    (:mod:`tracseq_dagster.operations.demand_forecast`) is evaluated on.
    """
    offsets = np.arange(days)
    weekday = (origin.dayofweek + offsets) % 7
    weights = np.asarray(COLLECTION_WEEKDAY_RATE)[weekday] * (1.0 + COLLECTION_YEARLY_GROWTH * offsets / days)
    return weights / weights.sum()


# ---------------------------------------------------------------------------------------------
# Domain tables. Keyed by the contract's names so that a new sample type fails loudly here.
# ---------------------------------------------------------------------------------------------

SAMPLE_TYPE_SHARE: dict[str, float] = {
    "DNA": 0.25,
    "RNA": 0.20,
    "cfDNA": 0.10,
    "tissue": 0.12,
    "blood": 0.15,
    "saliva": 0.10,
    "FFPE": 0.08,
}
CONCENTRATION_MEDIAN_NG_UL: dict[str, float] = {
    "DNA": 50.0,
    "RNA": 80.0,
    "cfDNA": 0.8,
    "tissue": 120.0,
    "blood": 40.0,
    "saliva": 25.0,
    "FFPE": 15.0,
}
# Integrity ~ 1 + 9 * Beta(a, b): FFPE fixation fragments DNA, so its DIN is low.
INTEGRITY_BETA: dict[str, tuple[float, float]] = {
    "DNA": (6.0, 1.8),
    "RNA": (5.0, 1.6),
    "cfDNA": (4.0, 2.0),
    "tissue": (5.0, 1.8),
    "blood": (6.0, 1.8),
    "saliva": (4.5, 2.0),
    "FFPE": (2.2, 3.0),
}

OPERATORS: tuple[str, ...] = tuple(f"OP-{i:03d}" for i in range(1, 26))
SITES: tuple[str, ...] = ("SITE-BOS", "SITE-NYC", "SITE-CHI", "SITE-SEA", "SITE-ATL", "SITE-DEN", "SITE-HOU", "SITE-MIA")
SITE_SHARE: tuple[float, ...] = (0.22, 0.18, 0.14, 0.12, 0.10, 0.09, 0.08, 0.07)
# Courier time from the site to the lab (median hours); the lab is in Boston.
SITE_TRANSIT_MEDIAN_H: tuple[float, ...] = (4.0, 8.0, 20.0, 30.0, 22.0, 26.0, 28.0, 30.0)
# Contributions to the risk score S: positive is worse. Everything else contributes 0.
OPERATOR_EFFECT: dict[str, float] = {"OP-007": 1.2, "OP-013": 0.6, "OP-021": 0.8, "OP-003": -0.3}
SITE_EFFECT: dict[str, float] = {"SITE-HOU": 0.9, "SITE-MIA": 0.5, "SITE-BOS": -0.2}

PROJECTS: tuple[str, ...] = tuple(f"PRJ-{i:04d}" for i in range(1, 41))
URGENT_SHARE = 0.07

# Storage units per set point: -80 and -20 freezers, a fridge, a room-temperature FFPE cabinet.
STORAGE_UNITS: dict[float, tuple[str, ...]] = {
    -80.0: tuple(f"FRZ-{i:02d}" for i in range(1, 7)),
    -20.0: tuple(f"FRZ-{i:02d}" for i in range(7, 11)),
    4.0: ("FRG-01", "FRG-02"),
    20.0: ("CAB-01",),
}
RACKS, BOXES, BOX_ROWS, BOX_COLUMNS = 8, 24, "ABCDEFGHIJ", 10


@dataclass(frozen=True)
class HiddenProcess:
    """Weights and thresholds of the hidden QC process (see the module docstring)."""

    age_per_day: float = 0.04
    deviation_per_c: float = 0.15
    per_excursion: float = 0.25
    per_freeze_thaw: float = 0.45
    purity_280_per_unit: float = 4.0
    purity_230_per_unit: float = 1.5
    integrity_per_point: float = 0.5
    integrity_floor: float = 7.0
    delay_per_day: float = 0.1
    delay_grace_days: float = 3.0
    storage_offset_per_c: float = 0.05
    noise_sd: float = 0.9
    borderline_from: float = 2.6
    fail_from: float = 3.85


HIDDEN_PROCESS = HiddenProcess()


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------


def _per_type(mapping: dict[str, float]) -> np.ndarray:
    """A lookup array indexed by the position of a sample type in ``SAMPLE_TYPES``."""
    return np.array([mapping[t] for t in SAMPLE_TYPES], dtype=float)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """ASCII codes of ``values`` zero-padded to ``width`` digits, one row per value."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (48 + (values[:, None] // powers) % 10).astype(np.uint8)


def _fixed_width_text(pieces: list[str | tuple[np.ndarray, int]], n: int) -> np.ndarray:
    """Concatenate literal text and zero-padded numbers ``(values, width)`` into ``n`` byte strings.

    Built as one byte matrix, which formats a million ids or dates in tens of milliseconds
    where Python f-strings (or Arrow's strftime) take seconds.
    """
    columns = [
        _digits(piece[0], piece[1])
        if isinstance(piece, tuple)
        else np.broadcast_to(np.frombuffer(piece.encode("ascii"), np.uint8), (n, len(piece)))
        for piece in pieces
        if not isinstance(piece, str) or piece
    ]
    matrix = np.ascontiguousarray(np.hstack(columns)) if columns else np.zeros((n, 1), np.uint8)
    return matrix.view(f"S{matrix.shape[1]}").ravel()


def _sample_ids(years: np.ndarray, serials: np.ndarray) -> np.ndarray:
    """``TS-YYYY-NNNNNN`` for every (year, serial)."""
    return _fixed_width_text(["TS-", (years, 4), "-", (serials % SERIAL_SPACE, 6)], len(serials)).astype("U14")


def _storage_locations(rng: np.random.Generator, target: np.ndarray) -> np.ndarray:
    """``UNIT/Rr/Bb/Pn`` in a unit whose set point matches the sample type."""
    n = len(target)
    units = np.empty(n, dtype=object)
    for set_point, names in STORAGE_UNITS.items():
        here = target == set_point
        units[here] = np.array(names, dtype=object)[rng.integers(0, len(names), here.sum())]
    # Small lookup tables joined element-wise: cheaper than formatting a million strings.
    racks = np.array([f"/R{r}" for r in range(1, RACKS + 1)], dtype=object)
    boxes = np.array([f"/B{b}" for b in range(1, BOXES + 1)], dtype=object)
    positions = np.array([f"/{r}{c}" for r in BOX_ROWS for c in range(1, BOX_COLUMNS + 1)], dtype=object)
    return (
        units
        + racks[rng.integers(0, len(racks), n)]
        + boxes[rng.integers(0, len(boxes), n)]
        + positions[rng.integers(0, len(positions), n)]
    )


def _datetimes(seconds: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """Whole seconds since the epoch (UTC) as ``datetime64[s]``, NaT where ``missing``."""
    values = seconds.astype("datetime64[s]")
    if missing is not None:
        values[missing] = np.datetime64("NaT")
    return values


def _typed(values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Assemble the contract columns in contract order with the dtype their kind calls for."""
    dtype_of = {Kind.STRING: "string", Kind.ENUM: "string", Kind.FLOAT: "float64", Kind.INT: "Int64"}
    frame = {}
    for column in COLUMNS:
        value = values[column.name]
        if column.kind is Kind.TIMESTAMP:
            frame[column.name] = pd.Series(pd.DatetimeIndex(value.astype("datetime64[ns]")).tz_localize("UTC"))
        else:
            frame[column.name] = pd.Series(pd.array(value, dtype=dtype_of[column.kind]))
    return pd.DataFrame(frame)


def _check_arguments(rows: int, id_offset: int, label_fraction: float) -> None:
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if id_offset < 0:
        raise ValueError(f"id_offset must be >= 0, got {id_offset}")
    if id_offset + rows > SERIAL_SPACE:
        raise ValueError(
            f"id_offset + rows = {id_offset + rows} exceeds {SERIAL_SPACE:,}: sample ids TS-YYYY-NNNNNN have six serial digits"
        )
    if not 0.0 <= label_fraction <= 1.0:
        raise ValueError(f"label_fraction must be in [0, 1], got {label_fraction}")


def generate_samples(
    rows: int,
    *,
    seed: int = 0,
    start: pd.Timestamp | None = None,
    id_offset: int = 0,
    label_fraction: float = 0.85,
) -> pd.DataFrame:
    """Generate ``rows`` contract-valid samples from the hidden process of the module docstring.

    Returns the contract columns in contract order: strings and enums as ``string``,
    timestamps as ``datetime64[ns, UTC]``, floats as ``float64``, integers as ``Int64``,
    sorted by ``received_ts``. The same arguments always give the same frame.
    """
    _check_arguments(rows, id_offset, label_fraction)
    rng = np.random.default_rng(seed)
    origin = DEFAULT_START if start is None else pd.Timestamp(start)
    origin = origin.tz_localize("UTC") if origin.tzinfo is None else origin.tz_convert("UTC")
    n = rows

    # Times, in whole seconds since the epoch. Collection happens in daytime hours; transit
    # depends on the site. Everything after receipt is drawn in order of receipt, because
    # the LIMS numbers samples as they arrive and the frame is sorted that way.
    site_code = rng.choice(len(SITES), size=n, p=SITE_SHARE)
    day = rng.choice(SPAN_DAYS, size=n, p=collection_day_weights(origin))
    time_of_day = np.clip(rng.normal(11.0, 2.5, n), 6.0, 20.0) * _HOUR_S
    collection = origin.value // 10**9 + day * _DAY_S + time_of_day.astype(np.int64)
    transit_h = np.array(SITE_TRANSIT_MEDIAN_H)[site_code] * rng.lognormal(0.0, 0.6, n)
    stuck = rng.random(n) < 0.03  # held by the courier or over a holiday
    transit_h += np.where(stuck, rng.uniform(3, 14, n) * 24, 0.0)
    received = collection + np.maximum(transit_h * _HOUR_S, 15 * 60).astype(np.int64)
    order = np.argsort(received, kind="stable")
    site_code, collection, received = site_code[order], collection[order], received[order]

    type_code = rng.choice(len(SAMPLE_TYPES), size=n, p=_per_type(SAMPLE_TYPE_SHARE))
    is_rna = np.isin(np.array(SAMPLE_TYPES)[type_code], RNA_TYPES)
    urgent = rng.random(n) < URGENT_SHARE

    delay_h = np.minimum(rng.lognormal(np.log(36.0), 1.1, n), 60 * 24) * np.where(urgent, 0.25, 1.0)
    extraction = received + np.maximum(delay_h * _HOUR_S, 10 * 60).astype(np.int64)
    sequencing = extraction + (rng.lognormal(np.log(4.0), 0.7, n) * _DAY_S).astype(np.int64)
    export_time = received.max(initial=0)
    not_extracted = (extraction > export_time) | (rng.random(n) < 0.02)
    not_sequenced = not_extracted | (sequencing > export_time) | (rng.random(n) < 0.10)

    # Storage: near the set point, occasionally far too warm (door left open, freezer fault).
    target = _per_type(STORAGE_TARGET_C)[type_code]
    warm = rng.random(n) < 0.05
    storage_temp = np.where(warm, target + rng.uniform(3, 25, n), target + rng.normal(0, 0.8, n))
    storage_temp = np.round(np.clip(storage_temp, -200, 40), 1)
    # Excursions are those of the sample's unit while it sat there (receipt -> extraction, else the
    # export): the hidden per-unit process of tracseq_dagster.operations.freezer_process.
    location = _storage_locations(rng, target)
    unit = np.array([text.split("/", 1)[0] for text in location], dtype=object)
    excursions, deviation = sample_excursions(unit, received, np.where(not_extracted, export_time, extraction), seed)
    deviation = np.round(np.maximum(deviation, np.abs(storage_temp - target)), 1)

    # Freeze-thaw cycles accumulate while a sample waits; a few are thawed over and over.
    freeze_thaw = rng.poisson(0.6 + 0.05 * delay_h / 24, n)
    freeze_thaw = np.minimum(freeze_thaw + np.where(rng.random(n) < 0.015, rng.integers(5, 25, n), 0), 50)

    concentration = np.round(_per_type(CONCENTRATION_MEDIAN_NG_UL)[type_code] * rng.lognormal(0, 0.9, n), 2)
    volume = np.round(rng.choice([20.0, 30.0, 50.0, 100.0, 200.0], n) * rng.uniform(0.5, 1.0, n), 1)

    # Purity: protein/phenol lowers 260/280, salt and guanidine carry-over lower 260/230.
    ideal_280 = _per_type(A260_280_IDEAL)[type_code]
    protein = np.where(rng.random(n) < 0.10, rng.uniform(0.1, 0.45, n), 0.0)
    a260_280 = np.round(np.clip(ideal_280 + rng.normal(0, 0.05, n) - protein, 0.5, 3.0), 2)
    salt = np.where(rng.random(n) < 0.15, rng.uniform(0.2, 1.3, n), 0.0)
    a260_230 = np.round(np.clip(A260_230_IDEAL + rng.normal(0, 0.1, n) - salt, 0.1, 3.0), 2)

    beta = np.array([INTEGRITY_BETA[t] for t in SAMPLE_TYPES])[type_code]
    integrity = 1 + 9 * rng.beta(beta[:, 0], beta[:, 1]) - 0.25 * freeze_thaw
    integrity = np.round(np.clip(integrity, 1.0, 10.0), 1)
    integrity_missing = rng.random(n) < 0.03

    occupancy = np.clip(np.round(100 * rng.beta(3.0, 1.2, n)), 1, 100).astype(np.int64)
    # Zipf-like project sizes: a few large studies, a long tail of small ones.
    project_share = 1.0 / np.arange(1, len(PROJECTS) + 1)
    project = rng.choice(len(PROJECTS), n, p=project_share / project_share.sum())

    values: dict[str, np.ndarray] = {
        "sample_id": _sample_ids(
            collection.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970,
            np.arange(id_offset + 1, id_offset + n + 1, dtype=np.int64),
        ),
        "project_id": np.array(PROJECTS, dtype=object)[project],
        "sample_type": np.array(SAMPLE_TYPES, dtype=object)[type_code],
        "collection_ts": _datetimes(collection),
        "received_ts": _datetimes(received),
        "extraction_ts": _datetimes(extraction, not_extracted),
        "sequencing_ts": _datetimes(sequencing, not_sequenced),
        "storage_temp_c": storage_temp,
        "temp_excursions": excursions,
        "max_temp_deviation_c": deviation,
        "freeze_thaw_cycles": freeze_thaw,
        "concentration_ng_ul": concentration,
        "volume_ul": volume,
        "a260_280": a260_280,
        "a260_230": a260_230,
        "rin": np.where(is_rna & ~integrity_missing, integrity, np.nan),
        "din": np.where(~is_rna & ~integrity_missing, integrity, np.nan),
        "storage_location": location,
        "box_occupancy": occupancy,
        "operator_id": np.array(OPERATORS, dtype=object)[rng.integers(0, len(OPERATORS), n)],
        "site": np.array(SITES, dtype=object)[site_code],
        "priority": np.array(PRIORITIES, dtype=object)[urgent.astype(np.int64)],
        "qc_status": np.full(n, None, dtype=object),
    }
    samples = _typed(values)

    # Labels come from the frame itself, so hidden_quality_score is exactly what produced them.
    noisy = hidden_quality_score(samples) + rng.normal(0.0, HIDDEN_PROCESS.noise_sd, n)
    grade = np.searchsorted([HIDDEN_PROCESS.borderline_from, HIDDEN_PROCESS.fail_from], noisy, side="right")
    labels = np.array(QC_STATUSES, dtype=object)[grade]
    # Not yet QC'd: the latest receipts, with jitter so that the cut-off is not a hard date.
    recency = np.arange(n) / max(n, 1) + rng.normal(0.0, 0.03, n)
    unlabelled = np.argsort(recency, kind="stable")[n - int(round((1.0 - label_fraction) * n)) :]
    labels[unlabelled] = None
    samples["qc_status"] = pd.array(labels, dtype="string")
    return samples


def _days_between(later: pd.Series, earlier: pd.Series) -> np.ndarray:
    return ((later - earlier) / pd.Timedelta(days=1)).to_numpy(dtype=float, na_value=np.nan)


def _as_utc(column: pd.Series) -> pd.Series:
    """Timestamps as UTC whatever their zone; naive values are taken to be UTC."""
    return pd.to_datetime(column, utc=True)


def _floats(samples: pd.DataFrame, column: str) -> np.ndarray:
    return samples[column].to_numpy(dtype=float, na_value=np.nan)


def hidden_quality_score(samples: pd.DataFrame) -> np.ndarray:
    """The noiseless latent risk score ``S`` of the hidden QC process (higher is worse).

    ``samples`` needs the contract columns with numeric and datetime types (naive timestamps
    count as UTC), as :func:`generate_samples` returns them. The formula
    and its constants are in the module docstring; ``qc_status`` is ``S`` plus Gaussian noise,
    cut at ``HIDDEN_PROCESS.borderline_from`` and ``HIDDEN_PROCESS.fail_from``.
    """
    p = HIDDEN_PROCESS
    sample_type = samples["sample_type"].astype("string")
    is_rna = sample_type.isin(RNA_TYPES).to_numpy(dtype=bool, na_value=False)

    collected, received, extracted, sequenced = (
        _as_utc(samples[name]) for name in ("collection_ts", "received_ts", "extraction_ts", "sequencing_ts")
    )
    age_days = _days_between(sequenced.fillna(extracted).fillna(received), collected)
    delay_days = _days_between(extracted, received)
    integrity = np.where(is_rna, _floats(samples, "rin"), _floats(samples, "din"))
    ideal_280 = sample_type.map(A260_280_IDEAL).to_numpy(dtype=float, na_value=np.nan)
    target = sample_type.map(STORAGE_TARGET_C).to_numpy(dtype=float, na_value=np.nan)

    def effect(column: str, table: dict[str, float]) -> np.ndarray:
        return samples[column].astype("string").map(table).to_numpy(dtype=float, na_value=0.0)

    # nan_to_num: a missing measurement (no integrity, not yet extracted) adds no risk.
    terms = (
        p.age_per_day * age_days,
        p.deviation_per_c * _floats(samples, "max_temp_deviation_c"),
        p.per_excursion * _floats(samples, "temp_excursions"),
        p.per_freeze_thaw * _floats(samples, "freeze_thaw_cycles"),
        p.purity_280_per_unit * np.abs(_floats(samples, "a260_280") - ideal_280),
        p.purity_230_per_unit * np.abs(_floats(samples, "a260_230") - A260_230_IDEAL),
        p.integrity_per_point * np.maximum(p.integrity_floor - integrity, 0.0),
        p.delay_per_day * np.maximum(delay_days - p.delay_grace_days, 0.0),
        p.storage_offset_per_c * np.abs(_floats(samples, "storage_temp_c") - target),
        effect("operator_id", OPERATOR_EFFECT),
        effect("site", SITE_EFFECT),
    )
    return np.sum([np.nan_to_num(term, nan=0.0) for term in terms], axis=0)


# ---------------------------------------------------------------------------------------------
# Export files
# ---------------------------------------------------------------------------------------------

# Headers as a LIMS spells them; contract.normalise_column_name maps each back.
LIMS_HEADERS: dict[str, str] = {
    "sample_id": "Sample ID",
    "project_id": "Project",
    "sample_type": "Sample Type",
    "collection_ts": "Collected",
    "received_ts": "Received",
    "extraction_ts": "Extraction TS",
    "sequencing_ts": "Sequencing TS",
    "storage_temp_c": "Storage Temp (C)",
    "temp_excursions": "Temp Excursions",
    "max_temp_deviation_c": "Max Temp Deviation (C)",
    "freeze_thaw_cycles": "Freeze/Thaw Cycles",
    "concentration_ng_ul": "Concentration (ng/uL)",
    "volume_ul": "Volume (uL)",
    "a260_280": "A260/280",
    "a260_230": "A260/230",
    "rin": "RIN",
    "din": "DIN",
    "storage_location": "Storage Location",
    "box_occupancy": "Box Occupancy",
    "operator_id": "Operator",
    "site": "Site",
    "priority": "Priority",
    "qc_status": "QC",
}

FREEZER_NOTES: tuple[str, ...] = (
    "door alarm 02:14",
    "Tür 5 min offen",
    "rack moved to backup",
    "défaut compresseur",
    "probe re-seated",
)
OPERATOR_NOTES: tuple[str, ...] = (
    "Probe leicht angetaut (Müller)",
    "échantillon reçu à 8 °C",
    "Röhrchen beschädigt",
    "étiquette illisible",
)


@dataclass(frozen=True)
class CsvDialect:
    """How one LIMS writes CSV. ``date_format`` is a strftime pattern, or ``None`` for ISO
    timestamps of which about half carry a zone offset and the rest are naive UTC."""

    delimiter: str
    decimal: str
    encoding: str  # "utf-8-sig" writes a BOM
    date_format: str | None
    eol: str


MESSY_CSV_DIALECTS: dict[str, CsvDialect] = {
    "excel_de": CsvDialect(";", ",", "utf-8-sig", "%d.%m.%Y %H:%M", "\r\n"),
    "excel_uk": CsvDialect(",", ".", "utf-8-sig", "%d/%m/%Y %H:%M", "\r\n"),
    "iso_offsets": CsvDialect(",", ".", "utf-8", None, "\n"),
    "legacy_cp1252": CsvDialect(";", ",", "cp1252", "%Y-%m-%d %H:%M:%S", "\r\n"),
}
ISO_SECONDS = "%Y-%m-%dT%H:%M:%S"
CLEAN_CSV = CsvDialect(",", ".", "utf-8", ISO_SECONDS + "Z", "\n")
# Offsets a LIMS in another zone writes; naive values are UTC.
ZONE_OFFSETS_MIN: tuple[int, ...] = (60, 120, -300, 330)


@dataclass(frozen=True)
class ExportStyle:
    """What tells one export kind's messy files apart (the dialects are shared by every kind):
    its LIMS header spellings and the name and texts of its free-text notes column."""

    lims_headers: dict[str, str]
    notes_column: str
    notes: tuple[str, ...]


SAMPLE_EXPORT_STYLE = ExportStyle(LIMS_HEADERS, "freezer_notes", FREEZER_NOTES)


@dataclass(frozen=True)
class MessyPlan:
    """What :func:`write_export` does to one messy file. A pure function of seed and format."""

    dialect: str | None  # a key of MESSY_CSV_DIALECTS for CSV, None for Parquet and JSON Lines
    extra_columns: tuple[str, ...]
    reorder: bool
    lims_headers: bool
    trailing_blank_lines: int


def messy_plan(seed: int, fmt: ExportFormat, style: ExportStyle = SAMPLE_EXPORT_STYLE) -> MessyPlan:
    """The messiness :func:`write_export` applies for ``seed`` and ``fmt`` (with ``messy=True``).

    CSV: one dialect of ``MESSY_CSV_DIALECTS``, one or two unknown columns ("freezer_notes",
    "LIMS Batch"; cp1252 files also carry an accented "Operator Note"), and at random columns
    in a shuffled order, LIMS header spellings (``LIMS_HEADERS``) and trailing blank lines.
    Parquet and JSON Lines: unknown columns, shuffled order and zone-aware timestamps.
    ``style`` names the notes column ("freezer_notes" for samples).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {EXPORT_FORMATS}")
    rng = np.random.default_rng([seed, 0x11_5E])
    notes = style.notes_column
    extras = [(notes,), ("LIMS Batch",), (notes, "LIMS Batch")][rng.integers(0, 3)]
    if fmt != "csv":
        return MessyPlan(None, extras, reorder=True, lims_headers=False, trailing_blank_lines=0)
    dialect = list(MESSY_CSV_DIALECTS)[rng.integers(0, len(MESSY_CSV_DIALECTS))]
    if MESSY_CSV_DIALECTS[dialect].encoding == "cp1252":
        extras = (*extras, "Operator Note")
    return MessyPlan(
        dialect,
        extras,
        reorder=bool(rng.random() < 0.5),
        lims_headers=bool(rng.random() < 0.5),
        trailing_blank_lines=int(rng.integers(0, 4)),
    )


def _extra_column(name: str, n: int, rng: np.random.Generator, style: ExportStyle) -> pd.Series:
    """Values of an unknown column: sparse free-text notes or a LIMS batch number."""
    if name == "LIMS Batch":
        batch = int(rng.integers(1, 9000)) + np.arange(n) // 96  # a batch is one 96-well plate
        return pd.Series(pd.array(_fixed_width_text(["LB-", (batch, 5)], n).astype("U8"), dtype="string"))
    notes = np.array(OPERATOR_NOTES if name == "Operator Note" else style.notes, dtype=object)
    values = np.where(rng.random(n) < 0.05, notes[rng.integers(0, len(notes), n)], None)
    return pd.Series(pd.array(values, dtype="string"))


def _with_extras(samples: pd.DataFrame, plan: MessyPlan, rng: np.random.Generator, style: ExportStyle) -> pd.DataFrame:
    frame = samples.reset_index(drop=True).copy()
    for name in plan.extra_columns:
        frame[name] = _extra_column(name, len(frame), rng, style)
    if plan.reorder:
        frame = frame[list(rng.permutation(frame.columns))]
    return frame


_STRFTIME_FIELD = re.compile(r"%([YmdHMS])")


def _strftime(values: np.ndarray, pattern: str) -> pa.Array:
    """Format ``datetime64`` values with ``pattern`` (%Y %m %d %H %M %S and literal text).

    Arrow's strftime costs about 1.5 µs a value, which made formatting dominate the time to
    write a million-row export; the calendar fields are computed with numpy instead.
    """
    seconds = values.astype("datetime64[s]")
    missing = np.isnat(seconds)
    seconds = np.where(missing, np.datetime64(0, "s"), seconds)
    days = seconds.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    of_day = (seconds - days).astype(np.int64)
    fields = {
        "Y": (months.astype("datetime64[Y]").astype(np.int64) + 1970, 4),
        "m": (months.astype(np.int64) % 12 + 1, 2),
        "d": ((days - months).astype(np.int64) + 1, 2),
        "H": (of_day // _HOUR_S, 2),
        "M": (of_day // 60 % 60, 2),
        "S": (of_day % 60, 2),
    }
    pieces: list[str | tuple[np.ndarray, int]] = []
    for index, part in enumerate(_STRFTIME_FIELD.split(pattern)):
        if index % 2:  # re.split puts the captured field letters at odd positions
            pieces.append(fields[part])
        elif "%" in part:
            raise ValueError(f"unsupported directive in date format {pattern!r}")
        else:
            pieces.append(part)
    return pa.array(_fixed_width_text(pieces, len(seconds)), type=pa.binary(), mask=missing).cast(pa.string())


def _iso_with_offsets(utc: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """ISO strings, about half as local wall time with a zone offset, the rest naive UTC."""
    n = len(utc)
    # Code 0 is naive; code k > 0 is ZONE_OFFSETS_MIN[k - 1].
    code = np.where(rng.random(n) < 0.5, rng.integers(1, len(ZONE_OFFSETS_MIN) + 1, n), 0)
    offset_min = np.array([0, *ZONE_OFFSETS_MIN])[code]
    suffix = np.array(["", *(f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}" for m in ZONE_OFFSETS_MIN)])
    local = utc.astype("datetime64[s]") + offset_min.astype("timedelta64[m]")
    return pc.binary_join_element_wise(_strftime(local, ISO_SECONDS), pa.array(suffix[code]), "")


def _utc_seconds(column: pd.Series) -> np.ndarray:
    """A timezone-aware column as naive UTC ``datetime64[s]`` (NaT for missing)."""
    return column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[s]")


def _text_table(frame: pd.DataFrame, date_format: str | None, decimal: str, rng: np.random.Generator) -> pa.Table:
    """``frame`` as an Arrow table whose timestamps (and, with a decimal comma, floats) are text.

    ``date_format`` formats UTC wall time; ``None`` writes ISO with mixed zone offsets.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for index, name in enumerate(table.column_names):
        column = table.column(index)
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            utc = _utc_seconds(frame[name])
            text = _iso_with_offsets(utc, rng) if date_format is None else _strftime(utc, date_format)
        elif pa.types.is_floating(column.type) and decimal != ".":
            text = pc.replace_substring(pc.cast(column, pa.string()), ".", decimal)
        else:
            continue
        table = table.set_column(index, name, text)
    return table


def _csv_bytes(table: pa.Table, dialect: CsvDialect) -> bytes:
    """``table`` as CSV in ``dialect`` (UTF-8 bytes, before any transcoding)."""
    # Unquoted like Excel writes it; quote only if some value really needs it.
    for quoting in ("none", "needed"):
        sink = io.BytesIO()
        options = pa_csv.WriteOptions(delimiter=dialect.delimiter, quoting_style=quoting, quoting_header=quoting)
        try:
            pa_csv.write_csv(table, sink, options)
        except pa.ArrowInvalid:
            continue
        # Line ends set here, not by WriteOptions(eol=…), which pyarrow < 26 lacks (mlflow pins < 26).
        # Generated values never contain a line break, so every "\n" is a line end.
        return sink.getvalue().replace(b"\n", dialect.eol.encode("ascii"))
    raise AssertionError("unreachable: quoting 'needed' accepts every value")


def _write_csv(samples: pd.DataFrame, path: Path, messy: bool, seed: int, style: ExportStyle) -> None:
    rng = np.random.default_rng([seed, 0xC5])
    if not messy:
        path.write_bytes(_csv_bytes(_text_table(samples, CLEAN_CSV.date_format, ".", rng), CLEAN_CSV))
        return
    plan = messy_plan(seed, "csv", style)
    assert plan.dialect is not None
    dialect = MESSY_CSV_DIALECTS[plan.dialect]
    frame = _with_extras(samples, plan, rng, style)
    if plan.lims_headers:
        frame = frame.rename(columns=style.lims_headers)
    data = _csv_bytes(_text_table(frame, dialect.date_format, dialect.decimal, rng), dialect)
    if dialect.encoding != "utf-8":  # "utf-8-sig" adds the BOM, "cp1252" re-encodes the notes
        data = data.decode("utf-8").encode(dialect.encoding)
    path.write_bytes(data + dialect.eol.encode("ascii") * plan.trailing_blank_lines)


_NEEDS_JSON_ESCAPE = r'["\\\x00-\x1f]'


def _json_values(column: pa.ChunkedArray) -> pa.Array:
    """The JSON text of every value of ``column``, ``null`` for missing values."""
    column = column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if pc.any(pc.match_substring_regex(column, _NEEDS_JSON_ESCAPE)).as_py():
            # Rare: let json.dumps escape, once per distinct value.
            encoded = column.dictionary_encode()
            texts = [json.dumps(value, ensure_ascii=False) for value in encoded.dictionary.to_pylist()]
            text = pa.array(texts, pa.string()).take(encoded.indices)
        else:
            text = pc.binary_join_element_wise('"', column, '"', "")
    else:  # numbers: Arrow prints the shortest representation that reads back exactly
        text = pc.cast(column, pa.string())
    return pc.fill_null(text, "null")


def _write_jsonl(samples: pd.DataFrame, path: Path, messy: bool, seed: int, style: ExportStyle) -> None:
    rng = np.random.default_rng([seed, 0x750])
    frame = _with_extras(samples, messy_plan(seed, "jsonl", style), rng, style) if messy else samples
    table = _text_table(frame, None if messy else CLEAN_CSV.date_format, ".", rng)

    # Each line is assembled column-wise in Arrow: '{"name":value,"name":value}\n'. Large
    # strings (64-bit offsets) so that exports beyond 2 GiB work.
    def text(value: str) -> pa.Scalar:
        return pa.scalar(value, pa.large_string())

    pieces: list[pa.Array | pa.Scalar] = []
    for index, name in enumerate(table.column_names):
        key = text(("{" if index == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":")
        pieces += [key, _json_values(table.column(index)).cast(pa.large_string())]
    with path.open("wb") as out:
        if len(table) and pieces:
            lines = pc.binary_join_element_wise(*pieces, text("}\n"), text(""))
            # The lines are contiguous in the array's data buffer: write it in one piece.
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
            out.write(memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]])


def _write_parquet(samples: pd.DataFrame, path: Path, messy: bool, seed: int, style: ExportStyle) -> None:
    if not messy:
        samples.to_parquet(path, index=False)
        return
    rng = np.random.default_rng([seed, 0x9A])
    frame = _with_extras(samples, messy_plan(seed, "parquet", style), rng, style)
    timestamps = [name for name in frame.columns if isinstance(frame[name].dtype, pd.DatetimeTZDtype)]
    # Every file mixes representations of the same instants: local zones, UTC and naive UTC.
    zones = np.resize(
        rng.permutation(np.array(["Europe/Berlin", "America/New_York", "naive", "UTC"], dtype=object)), len(timestamps)
    )
    for name, zone in zip(timestamps, zones):
        frame[name] = frame[name].dt.tz_localize(None) if zone == "naive" else frame[name].dt.tz_convert(zone)
    frame.to_parquet(path, index=False)


_WRITERS = {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}


def write_export(
    samples: pd.DataFrame,
    path: Path,
    fmt: ExportFormat,
    *,
    messy: bool = False,
    seed: int = 0,
    style: ExportStyle = SAMPLE_EXPORT_STYLE,
) -> Path:
    """Write ``samples`` to ``path`` as one export file and return the path.

    Clean files: CSV comma-separated UTF-8 with ISO-8601 UTC timestamps (``...Z``), Parquet
    with the frame's types, JSON Lines one object per line (ISO timestamps, ``null`` for
    missing). ``messy=True`` applies :func:`messy_plan` for ``seed`` deterministically.
    Any frame of typed columns can be written; ``style`` gives another export kind (runs)
    its own header spellings and notes column.
    """
    if fmt not in _WRITERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {EXPORT_FORMATS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _WRITERS[fmt](samples, path, messy, seed, style)
    return path


def split_bounds(rows: int, files: int) -> np.ndarray:
    """Where ``rows`` rows are cut into ``files`` near-equal consecutive parts (``files + 1`` bounds)."""
    return np.linspace(0, rows, files + 1).round().astype(int)


def export_file_seed(seed: int, number: int) -> int:
    """The messy seed of file ``number`` (1-based) of a generation with ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def check_export_arguments(fmt: str, files: int) -> None:
    """Refuse an unknown format or fewer than one file, before anything is generated."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {EXPORT_FORMATS}")
    if files < 1:
        raise ValueError(f"files must be >= 1, got {files}")


def write_export_files(
    frame: pd.DataFrame,
    bounds: np.ndarray,
    out_dir: Path,
    stem: str,
    fmt: str,
    *,
    seed: int,
    messy: bool,
    style: ExportStyle = SAMPLE_EXPORT_STYLE,
) -> list[Path]:
    """Write ``frame[bounds[k - 1]:bounds[k]]`` to ``{stem}_{k:04d}.<fmt>`` for k = 1 ..; each file
    gets its own messy seed (:func:`export_file_seed`)."""
    paths = []
    for number, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
        path = Path(out_dir) / f"{stem}_{number:04d}.{fmt}"
        paths.append(
            write_export(frame.iloc[begin:end], path, fmt, messy=messy, seed=export_file_seed(seed, number), style=style)
        )  # type: ignore[arg-type]
    return paths


def generate_exports(
    rows: int,
    fmt: str,
    out_dir: Path,
    *,
    seed: int = 0,
    files: int = 1,
    messy: bool = False,
    id_offset: int = 0,
) -> list[Path]:
    """Generate ``rows`` samples and split them, in order of receipt, over ``files`` files.

    Files are named ``lims_export_0001.<fmt>`` ..; their sample ids are disjoint
    (``id_offset + 1 .. id_offset + rows`` overall). Each file gets its own messy seed.
    """
    check_export_arguments(fmt, files)
    samples = generate_samples(rows, seed=seed, id_offset=id_offset)
    return write_export_files(samples, split_bounds(rows, files), out_dir, "lims_export", fmt, seed=seed, messy=messy)
