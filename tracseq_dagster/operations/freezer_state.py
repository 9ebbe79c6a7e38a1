"""Point-in-time state of every freezer and box, from the accepted samples alone.

The lab exports no freezer inventory: what we know is, per sample, ``storage_location``
(``FREEZER/RACK/BOX/POSITION``, e.g. ``FRZ-03/R2/B14/A7``), ``storage_temp_c``,
``temp_excursions``, ``max_temp_deviation_c`` and ``box_occupancy`` (the box's occupancy the
LIMS reported when the sample was exported). A sample is stored from ``received_ts`` until it is
taken out for extraction (``extraction_ts``; never, while that is empty), the rule
:mod:`~tracseq_dagster.operations.freezer_history` uses too. So the state as of a time ``t`` is
rebuilt from the samples stored at ``t`` (received at or before ``t``, not extracted by ``t``):

* a position is occupied by the sample stored at it. A position reused after its sample left is
  normal; two samples stored at one position at the same time is a conflict in the records (a
  move the exports never told, or a typo): the one received last is taken as the occupant, and
  every such position is listed in :attr:`FreezerState.double_booked` with all the samples
  claiming it, and counted, never silently merged;
* a box holds 100 positions (rows A-J × columns 1-10). A box counts as full when every position
  is occupied or when the LIMS last reported it at 100: the LIMS may know occupants the exports
  do not, and a full box must never receive a sample;
* a freezer's set point is the median ``storage_temp_c`` of its samples snapped to the nearest
  contract target (:data:`~tracseq_dagster.contract.STORAGE_TARGET_C`): an excursion (5 % of
  samples are measured far too warm) does not move it;
* a row whose location breaks the pattern is reported in :attr:`FreezerState.unparsable` with the
  reason, not fatal: one typo in a LIMS export must not stop the lab's freezer view.

Pure pandas; the ``freezer_state`` asset, the placement recommender, the Bento route and the
``tracseq storage`` command all call :func:`freezer_state`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from tracseq_dagster.contract import STORAGE_TARGET_C

BOX_ROWS = "ABCDEFGHIJ"
BOX_COLUMNS = 10
BOX_CAPACITY = len(BOX_ROWS) * BOX_COLUMNS
#: Every position of a box, in filling order (A1, A2, … J10).
POSITIONS: tuple[str, ...] = tuple(f"{r}{c}" for r in BOX_ROWS for c in range(1, BOX_COLUMNS + 1))
SLOT_OF: dict[str, int] = {p: i for i, p in enumerate(POSITIONS)}
#: A set point is snapped to a contract target when the median temperature is this close to it.
SET_POINT_SNAP_C = 5.0
EXCURSION_WINDOW = pd.Timedelta(days=30)

_LOCATION = re.compile(
    r"^(?P<freezer_id>[A-Z][A-Z0-9]*-\d{1,3})/R(?P<rack>\d{1,3})/B(?P<box>\d{1,3})/(?P<row>[A-Z])(?P<column>\d{1,2})$"
)
LOCATION_FORMAT = "FREEZER/RACK/BOX/POSITION like FRZ-03/R2/B14/A7 (position rows A-J, columns 1-10)"
BOX_KEY = ["freezer_id", "rack", "box"]


class LocationError(ValueError):
    """A storage location that does not name one position of one box."""


@dataclass(frozen=True, order=True)
class Location:
    """One position: ``FRZ-03/R2/B14/A7`` is freezer FRZ-03, rack 2, box 14, position A7."""

    freezer_id: str
    rack: int
    box: int
    position: str

    @property
    def text(self) -> str:
        return f"{self.freezer_id}/R{self.rack}/B{self.box}/{self.position}"

    @property
    def box_label(self) -> str:
        return f"{self.freezer_id}/R{self.rack}/B{self.box}"

    def __str__(self) -> str:
        return self.text


def _position_problem(row: str, column: int) -> str | None:
    if row not in BOX_ROWS:
        return f"row {row!r} is outside the box (rows A-J)"
    if not 1 <= column <= BOX_COLUMNS:
        return f"column {column} is outside the box (columns 1-{BOX_COLUMNS})"
    return None


def parse_location(text: object) -> Location:
    """``FREEZER/RACK/BOX/POSITION`` → :class:`Location`; a :class:`LocationError` naming the value otherwise."""
    if not isinstance(text, str):
        raise LocationError(f"storage location {text!r} is not text; expected {LOCATION_FORMAT}")
    match = _LOCATION.match(text.strip())
    if match is None:
        raise LocationError(f"storage location {text!r} does not match {LOCATION_FORMAT}")
    problem = _position_problem(match["row"], int(match["column"]))
    if problem:
        raise LocationError(f"storage location {text!r}: {problem}")
    rack, box = int(match["rack"]), int(match["box"])
    if rack < 1 or box < 1:
        raise LocationError(f"storage location {text!r}: racks and boxes are numbered from 1")
    return Location(match["freezer_id"], rack, box, f"{match['row']}{int(match['column'])}")


def parse_locations(values: pd.Series) -> pd.DataFrame:
    """Vectorised :func:`parse_location` over a column: freezer_id, rack, box, position and ``problem``
    (None when the value parses; the reason otherwise), on ``values``' index.

    Each distinct value is parsed once (a plain loop over the compiled pattern: faster than
    ``Series.str.extract`` here), then mapped back onto the rows.
    """
    parsed: dict[object, tuple[object, object, object, object, object]] = {}
    for value in pd.unique(values.astype("object")):
        try:
            where = parse_location(value)
            parsed[value] = (where.freezer_id, where.rack, where.box, where.position, None)
        except LocationError as error:
            parsed[value] = (None, None, None, None, _reason(value, error))
    rows = [parsed[v] for v in values.astype("object")]
    out = pd.DataFrame(rows, columns=["freezer_id", "rack", "box", "position", "problem"], index=values.index)
    out["rack"] = out["rack"].astype("Int64")
    out["box"] = out["box"].astype("Int64")
    return out


def _reason(value: object, error: LocationError) -> str:
    """The error without the value it repeats (the value is in its own column)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip()):
        return "empty storage location"
    return str(error).replace(f"storage location {value!r}: ", "").replace(f"storage location {value!r} ", "")


def snap_set_point(median_c: float) -> float:
    """The contract target nearest to a freezer's median temperature (within ``SET_POINT_SNAP_C``), else the rounded median."""
    if not np.isfinite(median_c):
        return float("nan")
    targets = np.array(sorted(set(STORAGE_TARGET_C.values())))
    nearest = float(targets[np.argmin(np.abs(targets - median_c))])
    return nearest if abs(nearest - median_c) <= SET_POINT_SNAP_C else float(round(median_c))


@dataclass(frozen=True)
class FreezerState:
    """The lab's storage as of ``as_of``.

    ``occupied``: one row per occupied position (sample_id, project_id, sample_type, freezer_id, rack, box,
    position, received_ts). ``boxes``: per box capacity, occupied, free, reported_occupancy (the LIMS's last
    word), full, projects (how many projects it stores). ``freezers``: per freezer set_point_c, racks, boxes,
    positions, occupied, free, records_30d (excursion records closed, i.e. samples taken out, in the 30 days up to
    ``as_of``), excursions_30d (the excursions those records hold), excursion_rate_30d (per record), max_deviation_30d_c. ``unparsable``: rows
    whose location breaks the pattern (sample_id, storage_location, problem). ``double_booked``: positions
    claimed by more than one sample stored at ``as_of`` (freezer_id, rack, box, position, claims, sample_ids,
    occupant).
    """

    as_of: pd.Timestamp
    occupied: pd.DataFrame
    boxes: pd.DataFrame
    freezers: pd.DataFrame
    unparsable: pd.DataFrame
    double_booked: pd.DataFrame

    @property
    def counts(self) -> dict[str, int]:
        """Headline numbers for asset metadata and the CLI."""
        return {
            "freezers": len(self.freezers),
            "boxes": len(self.boxes),
            "occupied_positions": len(self.occupied),
            "free_positions": int(self.boxes["free"].sum()) if len(self.boxes) else 0,
            "full_boxes": int(self.boxes["full"].sum()) if len(self.boxes) else 0,
            "unparsable_locations": len(self.unparsable),
            "double_booked_positions": len(self.double_booked),
            "superseded_claims": int((self.double_booked["claims"] - 1).sum()) if len(self.double_booked) else 0,
        }

    def free_slots(self, freezer_ids: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """The boxes that are not full (freezer_id, rack, box, occupied) and a boolean matrix, one row per box and
        one column per slot (0-99: A1, A2, … J10), True where the position is free."""
        boxes = self.boxes.loc[~self.boxes["full"].astype(bool)]
        if freezer_ids is not None:
            boxes = boxes[boxes["freezer_id"].isin(freezer_ids)]
        boxes = boxes[[*BOX_KEY, "occupied"]].reset_index(drop=True)
        free = np.ones((len(boxes), BOX_CAPACITY), dtype=bool)
        if len(boxes) and len(self.occupied):
            taken = self.occupied[[*BOX_KEY, "position"]].merge(boxes[BOX_KEY].reset_index(names="_box"), on=BOX_KEY)
            free[taken["_box"].to_numpy(), taken["position"].map(SLOT_OF).to_numpy(int)] = False
        return boxes, free

    def free_positions(self, freezer_ids: list[str] | None = None) -> pd.DataFrame:
        """Every free position of a box that is not full: freezer_id, rack, box, position, slot (0-99, filling order)."""
        boxes, free = self.free_slots(freezer_ids)
        box, slot = np.nonzero(free)
        out = boxes.loc[box, BOX_KEY].reset_index(drop=True)
        out["position"] = np.array(POSITIONS, dtype=object)[slot]
        out["slot"] = slot
        return out


def _as_of(samples: pd.DataFrame, as_of: datetime | str | pd.Timestamp | None) -> pd.Timestamp:
    if as_of is not None:
        stamp = pd.Timestamp(as_of)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    received = pd.to_datetime(samples["received_ts"], utc=True) if len(samples) else pd.Series([], dtype="datetime64[ns, UTC]")
    return received.max() if len(received.dropna()) else pd.Timestamp.now(tz="UTC")


def freezer_state(samples: pd.DataFrame, as_of: datetime | str | pd.Timestamp | None = None) -> FreezerState:
    """The state of every freezer and box as of ``as_of`` (default: the latest ``received_ts``) from accepted samples.

    ``samples`` needs the export contract's sample_id, project_id, sample_type, received_ts, storage_location,
    storage_temp_c, temp_excursions, max_temp_deviation_c and box_occupancy (missing optional ones count as empty).
    """
    stamp = _as_of(samples, as_of)
    frame = samples.copy()
    for column in ("temp_excursions", "max_temp_deviation_c", "box_occupancy", "storage_temp_c"):
        if column not in frame:
            frame[column] = np.nan
    frame["received_ts"] = pd.to_datetime(frame["received_ts"], utc=True)
    frame = frame[frame["received_ts"] <= stamp]
    parsed = parse_locations(frame["storage_location"])
    bad = parsed["problem"].notna()
    unparsable = pd.DataFrame(
        {
            "sample_id": frame.loc[bad, "sample_id"].astype(str),
            "storage_location": frame.loc[bad, "storage_location"].astype("object"),
            "problem": parsed.loc[bad, "problem"],
        }
    ).reset_index(drop=True)
    good = frame[~bad].join(parsed[~bad].drop(columns="problem"))
    good = good.sort_values(["received_ts", "sample_id"], kind="stable")

    extracted = (
        pd.to_datetime(good["extraction_ts"], utc=True) if "extraction_ts" in good else pd.Series(pd.NaT, index=good.index)
    )
    stored = good[~(extracted <= stamp)]
    claims = stored.groupby([*BOX_KEY, "position"], sort=False)
    occupied = claims.tail(1)
    multi = stored[claims["sample_id"].transform("size") > 1]
    if len(multi):
        double_booked = (
            multi.groupby([*BOX_KEY, "position"])
            .agg(
                claims=("sample_id", "size"),
                sample_ids=("sample_id", ", ".join),
                occupant=("sample_id", "last"),
            )
            .reset_index()
        )
    else:
        double_booked = pd.DataFrame(columns=[*BOX_KEY, "position", "claims", "sample_ids", "occupant"])
    occupied = occupied[["sample_id", "project_id", "sample_type", *BOX_KEY, "position", "received_ts"]].reset_index(drop=True)

    boxes = _boxes(good, occupied)
    freezers = _freezers(good, boxes, stamp)
    return FreezerState(stamp, occupied, boxes, freezers, unparsable, double_booked)


def _boxes(good: pd.DataFrame, occupied: pd.DataFrame) -> pd.DataFrame:
    if good.empty:
        return pd.DataFrame(columns=[*BOX_KEY, "capacity", "occupied", "free", "reported_occupancy", "full", "projects"])
    reported = good.groupby(BOX_KEY)["box_occupancy"].last()
    counts = occupied.groupby(BOX_KEY).size()
    projects = occupied.groupby(BOX_KEY)["project_id"].nunique()
    boxes = pd.DataFrame({"occupied": counts, "reported_occupancy": reported, "projects": projects}).reset_index()
    boxes["capacity"] = BOX_CAPACITY
    boxes["occupied"] = boxes["occupied"].fillna(0).astype(int)
    boxes["full"] = (boxes["occupied"] >= BOX_CAPACITY) | (pd.to_numeric(boxes["reported_occupancy"]) >= BOX_CAPACITY)
    boxes["free"] = np.where(boxes["full"], 0, BOX_CAPACITY - boxes["occupied"])
    boxes["rack"] = boxes["rack"].astype(int)
    boxes["box"] = boxes["box"].astype(int)
    return boxes[[*BOX_KEY, "capacity", "occupied", "free", "reported_occupancy", "full", "projects"]]


def _freezers(good: pd.DataFrame, boxes: pd.DataFrame, stamp: pd.Timestamp) -> pd.DataFrame:
    columns = ["freezer_id", "set_point_c", "racks", "boxes", "positions", "occupied", "free", "records_30d", "excursions_30d",
               "excursion_rate_30d", "max_deviation_30d_c"]  # fmt: skip
    if good.empty:
        return pd.DataFrame(columns=columns)
    temps = pd.to_numeric(good["storage_temp_c"], errors="coerce")
    set_points = temps.groupby(good["freezer_id"]).median().map(snap_set_point)
    per_box = boxes.groupby("freezer_id").agg(
        racks=("rack", "nunique"),
        boxes=("box", "size"),
        positions=("capacity", "sum"),
        occupied=("occupied", "sum"),
        free=("free", "sum"),
    )
    # An excursion record is complete when the sample leaves the freezer (extraction): only records
    # closed in the window count, so nothing here is known before it was (freezer_history's rule).
    extracted = (
        pd.to_datetime(good["extraction_ts"], utc=True) if "extraction_ts" in good else pd.Series(pd.NaT, index=good.index)
    )
    recent = good[(extracted > stamp - EXCURSION_WINDOW) & (extracted <= stamp)]
    excursions = pd.to_numeric(recent["temp_excursions"], errors="coerce").fillna(0)
    deviation = pd.to_numeric(recent["max_temp_deviation_c"], errors="coerce")
    window = pd.DataFrame(
        {
            "records_30d": recent.groupby("freezer_id").size(),
            "excursions_30d": excursions.groupby(recent["freezer_id"]).sum(),
            "max_deviation_30d_c": deviation.groupby(recent["freezer_id"]).max(),
        }
    )
    out = per_box.join(set_points.rename("set_point_c")).join(window)
    out["records_30d"] = out["records_30d"].fillna(0).astype(int)
    out["excursions_30d"] = out["excursions_30d"].fillna(0).astype(int)
    out["excursion_rate_30d"] = np.where(out["records_30d"] > 0, out["excursions_30d"] / out["records_30d"].clip(lower=1), np.nan)
    return out.reset_index(names="freezer_id")[columns]
