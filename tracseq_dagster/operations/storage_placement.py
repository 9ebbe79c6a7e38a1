"""Where to store incoming samples: free positions chosen jointly, as an assignment problem.

Every incoming sample (type, project, expected retrieval) needs one free position; a position
takes one sample. The cost of putting sample ``i`` at position ``j`` adds, in points:

* **temperature** – the sample type's target (:data:`~tracseq_dagster.contract.STORAGE_TARGET_C`:
  RNA, cfDNA and tissue at -80 °C, DNA and saliva at -20 °C, blood at 4 °C, FFPE at room
  temperature) must be the freezer's set point. Anything else is not a cost but infeasible: the
  problem splits into one independent assignment per temperature;
* **excursion risk** – ``weights.risk`` × P(excursion of the freezer in the next 30 days), from the
  served ``freezer_excursion_risk`` model or the freezer's history (:mod:`.placement_risk`). It
  dominates: 10 points of probability outweigh every convenience below;
* **co-location** – a bonus when the box (more) or the rack (less) already holds samples of the
  same project: a project's samples are retrieved together;
* **fragmentation** – a cost growing with the box's free share, plus one for opening an empty
  box: fill started boxes first, keep empty ones whole;
* **retrieval** – a sample expected back within ``weights.retrieval_horizon_days`` pays for a
  deep rack (rack 1 is the most accessible), the sooner the more;
* **door load** – every sample put into a freezer opens its door: a freezer receiving ``k`` of the
  batch a day costs each of them ``weights.load * k / (k + load_half)`` more. Convex in the
  freezer's share, it is priced in tiers (a freezer's later boxes carry the marginal cost at the
  count already there), so a large intake spreads over the good freezers instead of all going to
  the best one; an approximation, the only term that depends on the others' choices;
* and 1e-4 per slot (A1, A2, … J10), so that a box fills in order and answers are deterministic.

Solved as one linear assignment per temperature with scipy (exact, Jonker-Volgenant): the sparse
variant (``scipy.sparse.csgraph.min_weight_full_bipartite_matching``, the same problem as
:func:`scipy.optimize.linear_sum_assignment`) over each sample's own candidates, and
``linear_sum_assignment`` on the dense matrix when the lab has fewer free positions at that
temperature than samples (then as many as fit are placed, at the lowest total cost). Joint
matters: placed one by one, the first samples take the best positions whatever the others need;
jointly, the batch's total cost is minimal, and never two samples in one position.

Candidate pruning keeps 1,000 samples fast against 100,000 free positions (no 1,000 × 100,000
matrix): costs differ between boxes, not between the positions of a box (but for the slot
tie-break), so costs are computed per (group of samples alike, box); each group's candidates
are its cheapest boxes holding ``n`` free positions (``n``: the batch's samples at that
temperature), and a box offers at most its ``n`` lowest free slots. That loses nothing: in an
optimal assignment a sample never needs a position beyond its ``n`` cheapest (the other
``n - 1`` samples leave at least one of those free, and it is no worse), and within a box the
lowest free slots are the cheapest for every sample.

Each answer gives the chosen position and up to ``top - 1`` alternatives (the best free position
of each of the next best boxes, not taken by another sample of the batch), each with its cost
and its reasons in words. A sample that cannot be placed says why (no freezer at its
temperature; no free position left there); an unknown sample type is a :class:`PlacementError`
naming the sample and the field. Pure pandas/numpy/scipy, no Dagster, no BentoML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from tracseq_dagster.contract import SAMPLE_TYPES, STORAGE_TARGET_C
from tracseq_dagster.operations.freezer_state import BOX_CAPACITY, BOX_KEY, POSITIONS, FreezerState, Location

PLACED, NO_FREEZER, NO_SPACE = "placed", "no_freezer", "no_space"
SLOT_COST = 1e-4
#: The source named when a freezer has neither a model prediction nor history.
UNKNOWN_RISK_SOURCE = "risk unknown (no model, no history): the median of the other freezers assumed"


class PlacementError(ValueError):
    """An incoming sample the recommender cannot read (unknown sample type, no project), naming it and the field."""

    def __init__(self, message: str, index: int, field: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


@dataclass(frozen=True)
class IncomingSample:
    """A sample to store: its type and project; when it will be taken out again, if known."""

    sample_type: str
    project_id: str
    expected_retrieval: date | None = None
    sample_id: str | None = None

    @property
    def label(self) -> str:
        return self.sample_id or f"{self.sample_type} of {self.project_id}"


@dataclass(frozen=True)
class FreezerRisk:
    """P(excursion in the next 30 days) of one freezer and where it comes from (said in the reasons)."""

    probability: float | None
    source: str


@dataclass(frozen=True)
class PlacementWeights:
    """Points per unit of each term of the cost (see the module docstring)."""

    risk: float = 100.0
    same_project_box: float = 4.0
    same_project_rack: float = 1.5
    fill: float = 3.0
    new_box: float = 1.0
    retrieval: float = 2.0
    retrieval_horizon_days: float = 30.0
    #: Door load: every sample put into a freezer opens its door, and a busy freezer has more excursions. A freezer
    #: receiving ``k`` samples of the batch a day costs each of its samples ``load * k / (k + load_half)`` points more
    #: (saturating). The defaults follow the door-load term of the synthetic lab's documented process
    #: (:mod:`.freezer_process`: +0.03 excursions a day at saturation, half of it at 10 samples a day, over a 30-day
    #: horizon ≈ 45 points of probability); a lab sets them from its own history, or ``load=0`` to ignore the effect.
    load: float = 45.0
    load_half: float = 10.0
    #: Over how many days the batch arrives (1: together; a month's planned intake: 30): the load is per day.
    batch_days: float = 1.0


@dataclass(frozen=True)
class Candidate:
    """One free position for one sample: where, at what cost, and why."""

    location: Location
    cost: float
    excursion_risk: float | None
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location.text,
            "freezer_id": self.location.freezer_id,
            "rack": self.location.rack,
            "box": self.location.box,
            "position": self.location.position,
            "cost": round(self.cost, 4),
            "excursion_risk_30d": None if self.excursion_risk is None else round(self.excursion_risk, 4),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Placement:
    """The answer for one incoming sample, in input order."""

    index: int
    sample: IncomingSample
    status: str
    message: str
    chosen: Candidate | None = None
    alternatives: tuple[Candidate, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "sample_id": self.sample.sample_id,
            "sample_type": self.sample.sample_type,
            "project_id": self.sample.project_id,
            "expected_retrieval": None if self.sample.expected_retrieval is None else self.sample.expected_retrieval.isoformat(),
            "status": self.status,
            "message": self.message,
            "position": None if self.chosen is None else self.chosen.as_dict(),
            "alternatives": [a.as_dict() for a in self.alternatives],
        }


def _temperature(t: float) -> str:
    return f"{t:g} °C"


def check_incoming(incoming: Sequence[IncomingSample]) -> None:
    """A :class:`PlacementError` for the first sample whose type is unknown or whose project is empty."""
    for i, sample in enumerate(incoming):
        if sample.sample_type not in STORAGE_TARGET_C:
            raise PlacementError(
                f"sample {i} ({sample.sample_id or 'no id'}): sample_type {sample.sample_type!r} is not one of "
                f"{', '.join(SAMPLE_TYPES)}",
                i,
                "sample_type",
            )
        if not str(sample.project_id or "").strip():
            raise PlacementError(f"sample {i} ({sample.sample_id or 'no id'}): project_id is empty", i, "project_id")


def _urgency(sample: IncomingSample, today: date, horizon: float) -> float:
    """1 for a sample taken out today, falling to 0 at the horizon (and for no expected retrieval), in tenths."""
    if sample.expected_retrieval is None:
        return 0.0
    days = (sample.expected_retrieval - today).days
    return round(min(max(1.0 - days / horizon, 0.0), 1.0), 1)


@dataclass
class _Boxes:
    """The boxes of one temperature that can take a sample, as arrays (one entry per box)."""

    freezer_id: list[str]
    rack: np.ndarray
    box: np.ndarray
    occupied: np.ndarray
    depth: np.ndarray  # 0 for rack 1 (the most accessible), 1 for the freezer's deepest rack
    risk: np.ndarray
    risk_source: list[str]
    free: np.ndarray  # (boxes, 100) True where the slot is free
    base: np.ndarray  # risk + fragmentation: the part of the cost every sample pays

    def __len__(self) -> int:
        return len(self.freezer_id)


def _boxes_at(state: FreezerState, freezers: list[str], risk: Mapping[str, FreezerRisk], weights: PlacementWeights) -> _Boxes:
    frame, free = state.free_slots(freezers)
    has_free = free.any(axis=1)
    frame, free = frame[has_free].reset_index(drop=True), free[has_free]
    max_rack = frame.groupby("freezer_id")["rack"].transform("max").clip(lower=2).to_numpy(float)
    known = [r.probability for r in risk.values() if r.probability is not None]
    fallback = float(np.median(known)) if known else 0.0
    ids = frame["freezer_id"].astype(str).tolist()
    found = {f: risk[f] for f in set(ids) if f in risk and risk[f].probability is not None}
    probability = np.array([found[f].probability if f in found else fallback for f in ids], dtype=float)
    occupied = frame["occupied"].to_numpy(int)
    base = weights.risk * probability + weights.fill * free.sum(axis=1) / BOX_CAPACITY + weights.new_box * (occupied == 0)
    return _Boxes(
        freezer_id=ids,
        rack=frame["rack"].to_numpy(int),
        box=frame["box"].to_numpy(int),
        occupied=occupied,
        depth=(frame["rack"].to_numpy(float) - 1) / (max_rack - 1),
        risk=probability,
        risk_source=[found[f].source if f in found else UNKNOWN_RISK_SOURCE for f in ids],
        free=free,
        base=base,
    )


def _project_presence(state: FreezerState, boxes: _Boxes) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per project: its samples in each box, and whether its rack holds any of them (arrays over ``boxes``)."""
    in_box: dict[str, np.ndarray] = {}
    in_rack: dict[str, np.ndarray] = {}
    occupied = state.occupied
    if occupied.empty or not len(boxes):
        return in_box, in_rack
    index = pd.DataFrame({"freezer_id": boxes.freezer_id, "rack": boxes.rack, "box": boxes.box}).reset_index(names="_box")
    here = occupied[occupied["freezer_id"].isin(set(boxes.freezer_id))]
    counts = here.groupby(["project_id", *BOX_KEY]).size().rename("n").reset_index().merge(index, on=BOX_KEY)
    racks = here[["project_id", "freezer_id", "rack"]].drop_duplicates()
    rack_hits = index.merge(racks, on=["freezer_id", "rack"])
    for project, rows in counts.groupby("project_id"):
        vector = np.zeros(len(boxes))
        vector[rows["_box"].to_numpy()] = rows["n"].to_numpy()
        in_box[str(project)] = vector
    for project, rows in rack_hits.groupby("project_id"):
        vector = np.zeros(len(boxes), dtype=bool)
        vector[rows["_box"].to_numpy()] = True
        in_rack[str(project)] = vector
    return in_box, in_rack


def _reasons(sample: IncomingSample, target: float, boxes: _Boxes, b: int, location: Location, urgency: float, together: float,
             rack_shared: bool, today: date) -> tuple[str, ...]:  # fmt: skip
    said = [f"{sample.sample_type} needs {_temperature(target)}: {location.freezer_id} is held at {_temperature(target)}",
            f"excursion risk of {location.freezer_id} in the next 30 days: {boxes.risk[b]:.1%} ({boxes.risk_source[b]})"]  # fmt: skip
    if together > 0:
        said.append(f"box {location.box_label} already holds {int(together)} sample(s) of {sample.project_id}")
    elif rack_shared:
        said.append(f"rack R{location.rack} of {location.freezer_id} already holds samples of {sample.project_id}")
    if boxes.occupied[b] == 0:
        said.append(f"opens an empty box ({location.box_label}): no started box here was better")
    else:
        said.append(f"fills a started box: {int(boxes.occupied[b])}/{BOX_CAPACITY} positions used")
    if urgency > 0 and sample.expected_retrieval is not None:
        days = (sample.expected_retrieval - today).days
        place = (
            "the most accessible rack"
            if boxes.depth[b] == 0
            else f"rack {location.rack}, depth {boxes.depth[b]:.0%} of the freezer"
        )
        said.append(f"retrieval expected {sample.expected_retrieval.isoformat()} (in {days} days): {place}")
    return tuple(said)


def recommend(
    incoming: Sequence[IncomingSample],
    state: FreezerState,
    risk: Mapping[str, FreezerRisk],
    *,
    top: int = 3,
    weights: PlacementWeights | None = None,
    today: date | datetime | None = None,
) -> list[Placement]:
    """One :class:`Placement` per incoming sample, in order; the batch is placed jointly (see the module docstring)."""
    check_incoming(incoming)
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    weights = weights or PlacementWeights()
    day = (today.date() if isinstance(today, datetime) else today) or state.as_of.date()
    set_points = state.freezers.set_index("freezer_id")["set_point_c"] if len(state.freezers) else pd.Series(dtype=float)
    out: list[Placement | None] = [None] * len(incoming)
    by_target: dict[float, list[int]] = {}
    for i, sample in enumerate(incoming):
        by_target.setdefault(STORAGE_TARGET_C[sample.sample_type], []).append(i)
    for target, members in by_target.items():
        freezers = sorted(set_points.index[set_points == target])
        if not freezers:
            held = ", ".join(f"{f} {_temperature(t)}" for f, t in set_points.items()) or "none known"
            for i in members:
                why = (f"no freezer at {_temperature(target)}, the temperature {incoming[i].sample_type} needs "
                       f"(the lab's freezers: {held})")  # fmt: skip
                out[i] = Placement(i, incoming[i], NO_FREEZER, why)
            continue
        for placement in _place_at(incoming, members, target, freezers, state, risk, weights, top, day):
            out[placement.index] = placement
    return [p for p in out if p is not None]


def _assign(group_cost: np.ndarray, group_of: np.ndarray, candidate_boxes: np.ndarray, column_box: np.ndarray,
            column_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Rows (samples) and the columns (positions) they get, at the minimal total cost.

    When every sample can be placed (each sample's candidates hold n positions, so a full matching exists),
    scipy's sparse Jonker-Volgenant (``min_weight_full_bipartite_matching``, the same problem as
    ``linear_sum_assignment``) over each sample's own candidates only: about 6× less CPU than the dense matrix
    of every sample × every kept position. Otherwise (fewer free positions than samples) ``linear_sum_assignment``
    on the dense matrix, which places as many as there are positions.
    """
    n = len(group_of)
    if n <= len(column_box):
        rows, cols = np.nonzero(candidate_boxes[group_of][:, column_box])
        shift = 1.0 - min(0.0, float(group_cost.min()))  # the sparse solver reads a zero as no edge
        data = group_cost[group_of[rows], column_box[cols]] + SLOT_COST * column_slot[cols] + shift
        try:
            return min_weight_full_bipartite_matching(csr_matrix((data, (rows, cols)), shape=(n, len(column_box))))
        except ValueError:  # no full matching among the candidates: the dense problem below decides
            pass
    return linear_sum_assignment(group_cost[group_of][:, column_box] + SLOT_COST * column_slot[None, :])


def _place_at(incoming: Sequence[IncomingSample], members: list[int], target: float, freezers: list[str], state: FreezerState,
              risk: Mapping[str, FreezerRisk], weights: PlacementWeights, top: int, day: date) -> list[Placement]:  # fmt: skip
    """The samples of one temperature, jointly: one assignment over the pruned candidates."""
    boxes = _boxes_at(state, freezers, risk, weights)
    n, n_free = len(members), int(boxes.free.sum())
    if n_free == 0:
        why = f"no free position left at {_temperature(target)} ({', '.join(freezers)} are full)"
        return [Placement(i, incoming[i], NO_SPACE, why) for i in members]
    in_box, in_rack = _project_presence(state, boxes)
    no_box, no_rack = np.zeros(len(boxes)), np.zeros(len(boxes), dtype=bool)
    # Samples alike (project, urgency) share one cost per box: computed once per group.
    groups: dict[tuple[str, float], int] = {}
    group_of = np.empty(n, dtype=int)
    urgency_of = [_urgency(incoming[i], day, weights.retrieval_horizon_days) for i in members]
    for k, i in enumerate(members):
        group_of[k] = groups.setdefault((incoming[i].project_id, urgency_of[k]), len(groups))
    group_cost = np.empty((len(groups), len(boxes)))
    for (project, urgency), g in groups.items():
        together = in_box.get(project, no_box)
        rack_shared = in_rack.get(project, no_rack) & (together == 0)
        group_cost[g] = (boxes.base - weights.same_project_box * (together > 0) - weights.same_project_rack * rack_shared
                         + weights.retrieval * urgency * boxes.depth)  # fmt: skip
    free_count = boxes.free.sum(axis=1)
    box_freezer = np.unique(np.array(boxes.freezer_id, dtype=object), return_inverse=True)[1]
    n_freezers = int(box_freezer.max()) + 1

    def solve(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
        """Pruning (each group's cheapest boxes holding n free positions, ties at the boundary kept; top boxes more for the
        alternatives), then the assignment."""
        candidate_boxes = np.zeros((len(groups), len(boxes)), dtype=bool)
        box_order = []
        for g in range(len(groups)):
            order = np.argsort(costs[g], kind="stable")
            enough = min(int(np.searchsorted(np.cumsum(free_count[order]), n)) + 1, len(order))
            limit = costs[g][order[enough - 1]] + BOX_CAPACITY * SLOT_COST  # slot ties stay in
            candidate_boxes[g, order[:enough]] = True
            candidate_boxes[g] |= costs[g] <= limit
            box_order.append(order[: enough + top])
        kept = np.flatnonzero(candidate_boxes.any(axis=0))
        # A box takes at most n of the batch, and (the slot tie-break) its lowest free slots first.
        slots_of = [np.flatnonzero(boxes.free[b])[:n] for b in kept]
        column_box = np.concatenate([np.full(len(s), b) for b, s in zip(kept, slots_of)])
        column_slot = np.concatenate(slots_of)
        rows, columns = _assign(costs, group_of, candidate_boxes, column_box, column_slot)
        return rows, columns, column_box, column_slot, box_order

    def bump(k: np.ndarray) -> np.ndarray:
        """Points every sample of a freezer pays when the batch puts ``k`` samples in it."""
        per_day = k / max(weights.batch_days, 1e-9)
        return weights.load * per_day / (per_day + weights.load_half)

    # Door load, convex in a freezer's share of the batch: each freezer's boxes, in the order every sample prefers them
    # (their common cost), carry the marginal load cost at the count of the batch that would already be in that freezer
    # when they fill (tiers). So the first boxes of a second good freezer beat the fifth box of the best one when the
    # door openings make it so. Not part of the exact assignment (the load depends on the others' choices): an
    # approximation that keeps one assignment.
    load_surcharge = np.zeros(len(boxes))
    if weights.load > 0 and n_freezers > 1:
        order = np.lexsort((boxes.base, box_freezer))
        before = np.cumsum(free_count[order]) - free_count[order]
        start_of_freezer = np.maximum.accumulate(np.where(np.r_[True, np.diff(box_freezer[order]) != 0], before, 0))
        k = (before - start_of_freezer + free_count[order] / 2.0).astype(float)
        load_surcharge[order] = (k + 1) * bump(k + 1) - k * bump(k)
    rows, columns, column_box, column_slot, box_order = solve(group_cost + load_surcharge[None, :])
    batch_counts = np.bincount(box_freezer[column_box[columns]], minlength=n_freezers)
    assigned = dict(zip(rows.tolist(), columns.tolist()))
    # What is left for the alternatives: the lowest slot of each box the batch did not take.
    left = boxes.free.copy()
    left[column_box[columns], column_slot[columns]] = False
    first_left = np.where(left.any(axis=1), left.argmax(axis=1), -1)

    def candidate(k: int, b: int, slot: int) -> Candidate:
        i = members[k]
        location = Location(boxes.freezer_id[b], int(boxes.rack[b]), int(boxes.box[b]), POSITIONS[slot])
        project = incoming[i].project_id
        reasons = _reasons(incoming[i], target, boxes, b, location, urgency_of[k], float(in_box.get(project, no_box)[b]),
                           bool(in_rack.get(project, no_rack)[b]), day)  # fmt: skip
        f = box_freezer[b]
        if weights.load > 0 and batch_counts[f] > 1:
            reasons += (f"door load: {int(batch_counts[f])} samples of this batch go to {location.freezer_id} "
                        f"(+{bump(np.array([float(batch_counts[f])]))[0]:.1f} points each); the batch is spread where that pays",)  # fmt: skip
        cost = float(group_cost[group_of[k], b] + load_surcharge[b] + SLOT_COST * slot)
        return Candidate(location, cost, float(boxes.risk[b]), reasons)

    out = []
    for k, i in enumerate(members):
        if k not in assigned:
            why = (f"no free position left at {_temperature(target)} for this sample: {n_free} free for {n} incoming "
                   f"{_temperature(target)} samples; the others were placed at a lower total cost")  # fmt: skip
            out.append(Placement(i, incoming[i], NO_SPACE, why))
            continue
        mine = assigned[k]
        chosen = candidate(k, int(column_box[mine]), int(column_slot[mine]))
        # Alternatives: the best position left by the batch in each of the next best boxes.
        alternatives = [candidate(k, int(b), int(first_left[b])) for b in box_order[group_of[k]]
                        if b != column_box[mine] and first_left[b] >= 0][: top - 1]  # fmt: skip
        out.append(
            Placement(i, incoming[i], PLACED, f"{incoming[i].label} → {chosen.location.text}", chosen, tuple(alternatives))
        )
    return out


def placements_table(placements: Sequence[Placement]) -> pd.DataFrame:
    """One row per sample: its answer flattened (rank 1 the chosen position, 2.. the alternatives), for CSV and the CLI."""
    rows: list[dict[str, object]] = []
    for p in placements:
        base: dict[str, object] = {"index": p.index, "sample_id": p.sample.sample_id, "sample_type": p.sample.sample_type,
                "project_id": p.sample.project_id, "status": p.status}  # fmt: skip
        if p.chosen is None:
            rows.append({**base, "rank": None, "location": None, "excursion_risk_30d": None, "cost": None, "reasons": p.message})
            continue
        for rank, c in enumerate((p.chosen, *p.alternatives), start=1):
            rows.append({**base, "rank": rank, "location": c.location.text, "excursion_risk_30d": c.excursion_risk,
                         "cost": round(c.cost, 4), "reasons": "; ".join(c.reasons)})  # fmt: skip
    return pd.DataFrame(rows)


def first_free(incoming: Sequence[IncomingSample], state: FreezerState) -> list[Location | None]:
    """The baseline a benchmark compares with: each sample in the first free position (freezer, rack, box, slot order)
    of a freezer at its temperature, one after the other; None when there is none."""
    check_incoming(incoming)
    set_points = state.freezers.set_index("freezer_id")["set_point_c"]
    free = state.free_positions().sort_values([*BOX_KEY, "slot"], kind="stable")
    queues: dict[float, list[Location]] = {}
    out: list[Location | None] = []
    for sample in incoming:
        target = STORAGE_TARGET_C[sample.sample_type]
        if target not in queues:
            at = free[free["freezer_id"].isin(set_points.index[set_points == target])]
            queues[target] = [Location(f, int(r), int(b), p) for f, r, b, p in at[[*BOX_KEY, "position"]].itertuples(index=False)][::-1]  # fmt: skip
        queue = queues[target]
        out.append(queue.pop() if queue else None)
    return out
