"""The storage outputs of the lake (``FREEZER_STATE``, ``BOX_STATE``, ``STORAGE_UTILISATION``) as plain tables.

* Freezer and box state come from :func:`~tracseq_dagster.operations.freezer_state.freezer_state`
  (occupied and free positions, point in time) joined with the excursion history of
  :func:`~tracseq_dagster.operations.freezer_history.freezer_days` as of the same moment (the
  30-day rate per sample-day of exposure, the days since an excursion record) and, when a
  champion of ``freezer_excursion_risk`` is given, its P(excursion in the next 30 days).
* Utilisation: per freezer and per rack, positions (of the boxes the exports have shown:
  the lab exports no inventory of empty boxes), occupied, occupancy, the intake per day at the
  current rate (samples put in over the last 30 days / 30), the outflow (samples taken out for
  extraction, same window) and the day it fills at the net rate (``fills_on``, empty when it
  does not grow). When the demand forecast is in the lake, a
  freezer's intake is its share of each sample type's recent intake times that type's
  forecast per day (``intake_source`` says which was used).

No Dagster: the ``freezer_state`` and ``storage_utilisation`` assets call these.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.models.freezer_excursion_risk import FEATURES, QUIET
from tracseq_dagster.operations.freezer_history import freezer_days, freezer_days_as_of
from tracseq_dagster.operations.freezer_state import FreezerState, parse_locations
from tracseq_dagster.plots import new_figure

INTAKE_WINDOW_DAYS = 30
#: A fill date further out than this (100 years) is reported as none.
MAX_FILL_DAYS = 36_500
FREEZER_COLUMNS = ["freezer_id", "set_point_c", "boxes", "positions", "occupied", "free", "excursions_30d",
                   "excursion_rate_30d_per_day", "days_since_excursion", "excursion_risk_30d", "excursion_risk_source",
                   "as_of"]  # fmt: skip
BOX_COLUMNS = ["freezer_id", "rack", "box", "capacity", "occupied", "free", "full", "as_of"]
UTILISATION_COLUMNS = ["freezer_id", "rack", "level", "positions", "occupied", "occupancy", "intake_per_day", "outflow_per_day",
                       "net_per_day", "intake_source", "fills_on", "as_of"]  # fmt: skip


def champion_risk(model: Any, history: pd.DataFrame, freezer_ids: list[str], as_of: pd.Timestamp) -> pd.Series:
    """P(excursion in 30 days) per freezer from a fitted ``freezer_excursion_risk`` model (1 - P(none))."""
    if not freezer_ids:
        return pd.Series(dtype="float64")
    rows = freezer_days_as_of(history, pd.Series(freezer_ids), pd.Series([as_of] * len(freezer_ids)))
    features = rows[list(FEATURES)].astype("float64")
    classes = [str(c) for c in model.classes_]
    quiet = model.predict_proba(features)[:, classes.index(QUIET)]
    return pd.Series(1.0 - quiet, index=freezer_ids, dtype="float64")


def state_tables(
    state: FreezerState,
    samples: pd.DataFrame,
    risk: pd.Series | None = None,
    history: pd.DataFrame | None = None,
    risk_source: pd.Series | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(freezers, boxes) as ``FREEZER_STATE`` and ``BOX_STATE`` hold them, as of ``state.as_of``.

    ``risk`` / ``risk_source`` per freezer id: P(excursion in 30 days) and where it came from
    ("predicted by freezer_excursion_risk vN" or the history rule; see ``placement_risk.freezer_risk``)."""
    as_of = state.as_of
    history = freezer_days(samples, until=as_of) if history is None else history
    freezers = state.freezers.copy()
    ids = freezers["freezer_id"].astype(str).tolist()
    if ids:
        recent = freezer_days_as_of(history, pd.Series(ids), pd.Series([as_of] * len(ids)))
        freezers["excursion_rate_30d_per_day"] = recent["excursion_rate_30d"].to_numpy(float)
        freezers["days_since_excursion"] = recent["days_since_excursion"].to_numpy(float)
    else:
        freezers["excursion_rate_30d_per_day"] = pd.Series(dtype="float64")
        freezers["days_since_excursion"] = pd.Series(dtype="float64")
    freezers["excursion_risk_30d"] = risk.reindex(ids).to_numpy(float) if risk is not None else np.full(len(ids), np.nan)
    freezers["excursion_risk_source"] = risk_source.reindex(ids).to_numpy(object) if risk_source is not None else None
    freezers["as_of"] = as_of
    boxes = state.boxes.copy()
    boxes["as_of"] = as_of
    return freezers.reindex(columns=FREEZER_COLUMNS), boxes.reindex(columns=BOX_COLUMNS)


def _flows(samples: pd.DataFrame, state: FreezerState, forecast: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """Per freezer and rack: samples put in and taken out per day at the current rate, and where intake came from."""
    as_of, since = state.as_of, state.as_of - pd.Timedelta(days=INTAKE_WINDOW_DAYS)
    parsed = (
        parse_locations(samples["storage_location"]) if len(samples) else pd.DataFrame(columns=["freezer_id", "rack", "problem"])
    )
    good = parsed["problem"].isna()
    rows = pd.DataFrame(
        {
            "freezer_id": parsed.loc[good, "freezer_id"],
            "rack": parsed.loc[good, "rack"],
            "sample_type": samples.loc[good, "sample_type"].astype(str) if len(samples) else [],
            "received": pd.to_datetime(samples.loc[good, "received_ts"], utc=True) if len(samples) else [],
            "extracted": pd.to_datetime(samples.loc[good, "extraction_ts"], utc=True) if len(samples) else [],
        }
    )
    came = rows[(rows["received"] > since) & (rows["received"] <= as_of)]
    left = rows[(rows["extracted"] > since) & (rows["extracted"] <= as_of)]
    keys = ["freezer_id", "rack"]
    flows = pd.DataFrame(
        {
            "intake_per_day": came.groupby(keys).size() / INTAKE_WINDOW_DAYS,
            "outflow_per_day": left.groupby(keys).size() / INTAKE_WINDOW_DAYS,
        }
    )
    source = f"last {INTAKE_WINDOW_DAYS} days"
    if forecast is not None and len(forecast) and {"sample_type", "forecast", "ds"} <= set(forecast.columns) and len(came):
        per_type = forecast[forecast["sample_type"].isin(came["sample_type"].unique())]
        if "site" in per_type.columns and (per_type["site"] == "all").any():
            per_type = per_type[per_type["site"] == "all"]
        daily = per_type.groupby("sample_type")["forecast"].sum() / max(per_type["ds"].nunique(), 1)
        shares = came.groupby([*keys, "sample_type"]).size() / came.groupby("sample_type").size()
        expected = shares * shares.index.get_level_values("sample_type").map(daily).to_numpy(float)
        if expected.notna().any():
            flows["intake_per_day"] = expected.groupby(level=keys).sum().reindex(flows.index)
            source = "demand forecast"
    flows = flows.fillna(0.0).reset_index()
    flows["rack"] = flows["rack"].astype("Int64")
    return flows, source


def utilisation(state: FreezerState, samples: pd.DataFrame, forecast: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per freezer and per rack occupancy and the day it fills (``STORAGE_UTILISATION``).

    A rack or freezer fills at its net rate (intake minus samples taken out for extraction, per
    day); one that does not grow has no fill date."""
    boxes = state.boxes
    if boxes.empty:
        return pd.DataFrame(columns=UTILISATION_COLUMNS)
    racks = boxes.groupby(["freezer_id", "rack"]).agg(positions=("capacity", "sum"), occupied=("occupied", "sum"),
                                                      free=("free", "sum")).reset_index()  # fmt: skip
    racks["rack"] = racks["rack"].astype("Int64")
    flows, source = _flows(samples, state, forecast)
    racks = racks.merge(flows, on=["freezer_id", "rack"], how="left").fillna({"intake_per_day": 0.0, "outflow_per_day": 0.0})
    racks["level"] = "rack"
    numbers = ["positions", "occupied", "free", "intake_per_day", "outflow_per_day"]
    whole = racks.groupby("freezer_id")[numbers].sum().reset_index()
    whole["rack"] = pd.array([pd.NA] * len(whole), dtype="Int64")
    whole["level"] = "freezer"
    out = pd.concat([whole, racks], ignore_index=True)
    out["rack"] = out["rack"].astype("Int64")
    out["occupancy"] = out["occupied"] / out["positions"].where(out["positions"] > 0)
    out["net_per_day"] = out["intake_per_day"] - out["outflow_per_day"]
    days_left = out["free"] / out["net_per_day"].where(out["net_per_day"] > 0)
    days_left = days_left.where(days_left <= MAX_FILL_DAYS)  # further than that is "does not fill" (and beyond pandas' dates)
    out["fills_on"] = (state.as_of.floor("D") + pd.to_timedelta(np.ceil(days_left), unit="D")).dt.date
    out["intake_source"] = source
    out["as_of"] = state.as_of
    return out.sort_values(["freezer_id", "level", "rack"], na_position="first").reset_index(drop=True)[UTILISATION_COLUMNS]


def utilisation_figure(table: pd.DataFrame):  # type: ignore[no-untyped-def]
    """Occupancy per freezer, each bar labelled with the day it fills at the current intake."""
    freezers = table[table["level"] == "freezer"].sort_values("freezer_id")
    figure = new_figure(8.0, 3.5)
    axes = figure.subplots()
    names = freezers["freezer_id"].astype(str).tolist()
    axes.bar(names, 100 * freezers["occupancy"].fillna(0.0), color="#4477aa")
    for x, (occupancy, fills) in enumerate(zip(freezers["occupancy"].fillna(0.0), freezers["fills_on"])):
        label = "no intake" if pd.isna(fills) else f"full {fills}"
        axes.text(x, 100 * occupancy + 1, label, ha="center", va="bottom", fontsize=7, rotation=90)
    axes.set_ylim(0, 130)
    axes.set_ylabel("occupied positions (%)")
    axes.set_title("Freezer occupancy and the day each fills at the current intake")
    axes.tick_params(axis="x", labelrotation=45, labelsize=8)
    return figure
