"""Entity histories: the lab's aggregates per operator, site, freezer and instrument, as time series.

The sample features read an operator's (site's) failure rate, a freezer's utilisation and a
run model reads an instrument's recent failures *as of* a moment. The feature store keeps
those aggregates per entity, one row each time they change, so that serving can read an
entity's latest value from the online store instead of recomputing it from a history packed
at build time, and a point-in-time join can read it as of any moment.

Each function is pure (frames in, frame out, no I/O) and follows the rules of the one
implementation (:mod:`tracseq_dagster.features`, :mod:`tracseq_dagster.run_features`):

* operator and site: ``(fails + 10 * 0.15) / (n + 10)`` over the samples labelled at
  ``label_ts = coalesce(sequencing_ts, extraction_ts, received_ts)``;
* freezer: the mean ``box_occupancy / 100`` of the samples received in that freezer;
* instrument: the run features' failure window (the libraries of the last 20 runs whose
  status was known), computed by :mod:`tracseq_dagster.run_features` itself.

**Strictly before.** A feature computed as of ``t`` reads events stamped strictly before
``t``, but a point-in-time join (Feast's, ``merge_asof``) takes the latest row stamped at or
before ``t``. So a row that includes the events of instant ``e`` is stamped
``e + EVENT_DELAY`` (one microsecond, the finest unit every store keeps): a join as of ``e``
does not see them, a join one microsecond later does. Lab timestamps are whole seconds, so
nothing lives between ``e`` and ``e + 1 µs``.

An entity with no history has no row: the feature's own fallback applies (the prior rate
0.15, the sample's own box for freezer utilisation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tracseq_dagster.contract import QC_STATUSES
from tracseq_dagster.features import FAIL_STATUS, FAILURE_PRIOR, FAILURE_PRIOR_WEIGHT
from tracseq_dagster.run_features import RUN_WINDOW, _recent_failures

#: Added to an event's instant to stamp the aggregate that includes it (see the module docstring).
EVENT_DELAY = pd.Timedelta(microseconds=1)

#: The event timestamp column of every entity history table.
EVENT_TIMESTAMP = "event_timestamp"

#: Join key, then features, of each entity history (the feature views read these names).
OPERATOR_COLUMNS = ("operator_id", "operator_failure_rate", "operator_history_count")
SITE_COLUMNS = ("site", "site_failure_rate", "site_history_count")
FREEZER_COLUMNS = ("freezer", "freezer_utilisation", "freezer_sample_count")
INSTRUMENT_COLUMNS = (
    "instrument_id", "instrument_failure_rate", "instrument_recent_failures",
    "instrument_recent_libraries", "instrument_recent_runs",
)  # fmt: skip

_UTC = "datetime64[ns, UTC]"


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            columns[0]: pd.Series([], dtype="string"),
            EVENT_TIMESTAMP: pd.Series([], dtype=_UTC),
            **{c: pd.Series([], dtype="float64") for c in columns[1:]},
        }  # fmt: skip
    )


def _utc(column: pd.Series | None, rows: int) -> pd.Series:
    if column is None:
        return pd.Series(pd.NaT, index=range(rows), dtype=_UTC)
    return pd.to_datetime(column, utc=True).reset_index(drop=True)


def label_times(samples: pd.DataFrame) -> pd.Series:
    """``coalesce(sequencing_ts, extraction_ts, received_ts)``: when each sample's QC label becomes known."""
    rows = len(samples)
    out = _utc(samples.get("sequencing_ts"), rows)
    for name in ("extraction_ts", "received_ts"):
        out = out.fillna(_utc(samples.get(name), rows))
    return out


def _failure_history(samples: pd.DataFrame, key: str, rate: str, count: str) -> pd.DataFrame:
    """One row per (key value, label instant): the smoothed failure rate over every label known then."""
    columns = (key, rate, count)
    if samples.empty or key not in samples.columns:
        return _empty(columns)
    status = samples["qc_status"].astype("object").reset_index(drop=True)
    labelled = status.isin(QC_STATUSES)
    events = pd.DataFrame(
        {
            key: samples[key].astype("string").reset_index(drop=True),
            "at": label_times(samples),
            "fail": (status == FAIL_STATUS).astype(np.int64),
            "one": 1,
        }  # fmt: skip
    )[labelled & samples[key].notna().to_numpy()]
    events = events[events["at"].notna()]
    if events.empty:
        return _empty(columns)
    per_instant = events.groupby([key, "at"], sort=True)[["fail", "one"]].sum()
    cumulative = per_instant.groupby(level=key).cumsum()
    n = cumulative["one"].to_numpy(dtype=np.float64)
    k = cumulative["fail"].to_numpy(dtype=np.float64)
    out = pd.DataFrame(
        {
            key: per_instant.index.get_level_values(key).astype("string"),
            EVENT_TIMESTAMP: per_instant.index.get_level_values("at") + EVENT_DELAY,
            rate: (k + FAILURE_PRIOR_WEIGHT * FAILURE_PRIOR) / (n + FAILURE_PRIOR_WEIGHT),
            count: n,
        }  # fmt: skip
    )
    return out.reset_index(drop=True)


def operator_history(samples: pd.DataFrame) -> pd.DataFrame:
    """Each operator's failure rate and labelled-sample count, from every change on (``operator_failure_rate``)."""
    return _failure_history(samples, *OPERATOR_COLUMNS)


def site_history(samples: pd.DataFrame) -> pd.DataFrame:
    """Each site's failure rate and labelled-sample count, from every change on (``site_failure_rate``)."""
    return _failure_history(samples, *SITE_COLUMNS)


def freezer_history(samples: pd.DataFrame) -> pd.DataFrame:
    """Each freezer's utilisation (mean box occupancy of the samples received in it) at every receipt."""
    if samples.empty or "storage_location" not in samples.columns:
        return _empty(FREEZER_COLUMNS)
    freezer = samples["storage_location"].astype("string").str.split("/", n=1).str[0].reset_index(drop=True)
    occupancy = pd.to_numeric(samples["box_occupancy"], errors="coerce").astype("float64").reset_index(drop=True)
    events = pd.DataFrame({"freezer": freezer, "at": _utc(samples.get("received_ts"), len(samples)), "occupancy": occupancy})
    events = events.dropna(subset=["freezer", "at", "occupancy"])
    if events.empty:
        return _empty(FREEZER_COLUMNS)
    per_instant = events.groupby(["freezer", "at"], sort=True)["occupancy"].agg(["sum", "size"])
    cumulative = per_instant.groupby(level="freezer").cumsum()
    n = cumulative["size"].to_numpy(dtype=np.float64)
    out = pd.DataFrame(
        {
            "freezer": per_instant.index.get_level_values("freezer").astype("string"),
            EVENT_TIMESTAMP: per_instant.index.get_level_values("at") + EVENT_DELAY,
            "freezer_utilisation": cumulative["sum"].to_numpy(dtype=np.float64) / n / 100.0,
            "freezer_sample_count": n,
        }  # fmt: skip
    )
    return out.reset_index(drop=True)


def instrument_history(runs: pd.DataFrame) -> pd.DataFrame:
    """Each instrument's recent failure window (the run features' own computation) after every run end.

    The window moves only when a run of that instrument ends with a known status, so it is
    evaluated once per (instrument, run end), just after it.
    """
    if runs is None or runs.empty or "run_end_ts" not in runs.columns:
        return _empty(INSTRUMENT_COLUMNS)
    ends = (
        pd.DataFrame(
            {
                "instrument_id": runs["instrument_id"].astype("string").reset_index(drop=True),
                "at": _utc(runs["run_end_ts"], len(runs)),
            }
        )
        .dropna()
        .drop_duplicates()
        .sort_values(["instrument_id", "at"], kind="stable")
    )
    if ends.empty:
        return _empty(INSTRUMENT_COLUMNS)
    stamp = ends["at"] + EVENT_DELAY
    t = stamp.to_numpy(dtype="datetime64[ns]").view(np.int64)
    rate, k, n, n_runs = _recent_failures(runs, "instrument_id", ends["instrument_id"].to_numpy(dtype=object), t)
    out = pd.DataFrame(
        {
            "instrument_id": ends["instrument_id"].to_numpy(),
            EVENT_TIMESTAMP: stamp.to_numpy(),
            "instrument_failure_rate": rate,
            "instrument_recent_failures": k,
            "instrument_recent_libraries": n,
            "instrument_recent_runs": np.asarray(n_runs, dtype=np.float64),
        }  # fmt: skip
    )
    out[EVENT_TIMESTAMP] = pd.to_datetime(out[EVENT_TIMESTAMP], utc=True)
    out["instrument_id"] = out["instrument_id"].astype("string")
    return out.reset_index(drop=True)


__all__ = [
    "EVENT_DELAY", "EVENT_TIMESTAMP", "FREEZER_COLUMNS", "INSTRUMENT_COLUMNS", "OPERATOR_COLUMNS", "RUN_WINDOW",
    "SITE_COLUMNS", "freezer_history", "instrument_history", "label_times", "operator_history", "site_history",
]  # fmt: skip
