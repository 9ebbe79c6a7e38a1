"""Storage placement: realised excursions of recommended vs first-free placements, and the time to place 1,000 jointly.

**Excursions.** For each seed, a generated lab (``generate_samples(--history, seed)``), whose
freezers follow the documented hidden excursion process of
:mod:`tracseq_dagster.operations.freezer_process` (per-unit base hazard, degradation, fault
episodes, door load). As of its last receipt:

1. the freezer state (:func:`~tracseq_dagster.operations.freezer_state.freezer_state`) and the
   excursion risk per freezer from the history (``risk from history, no model``: the
   ``freezer_excursion_risk`` model is not trained here; with it the recommender can only
   know more);
2. ``--incoming`` samples (types and projects drawn as the generator draws them, expected
   retrieval 1-90 days ahead) are placed by the recommender (jointly) and by first-free-position
   (the first free slot, in freezer/rack/box/slot order, of a unit at the type's temperature);
3. the next 60 days are simulated with :func:`~tracseq_dagster.operations.freezer_process.simulate_excursions`
   and the generator's seed (the process continues the history: same episodes, same
   degradation; common random numbers, so both policies meet the same draws). The incoming
   samples arrive evenly over the first 30 days and each stays 30 days; every unit's door load is
   its mean daily intake of the last 30 days of history plus the incoming samples it receives
   under that policy (concentrating samples in one unit costs door openings).

A sample's **realised excursion** is at least one excursion of its unit during its 30-day stay
(the process's draws); its **expected** excursion probability is ``1 - exp(-sum of the unit's
true hazard over the stay)``, door load included (the same process without the luck of the
draws: one draw per unit and seed makes the realised rate noisy). Reported per seed and pooled:
the rate of each policy, the ratio recommender / first-free, in how many seeds the recommender
is lower, and, for context, an oracle that places by the true 30-day hazard.

**Timing.** 1,000 incoming samples placed jointly (``recommend``) against the state of a
``--timing-history`` lab, ``--repeats`` times: median wall and CPU (process) time. The machine
is shared with other work, so the CPU time is the steadier number; the freezer state itself
(built once per Bento worker or CLI call) is timed apart.

Usage: python benchmarks/storage_placement.py [--seeds 12] [--history 15000] [--incoming 1000]
       [--timing-history 100000] [--repeats 5] [--out benchmarks/out/storage_placement.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tracseq_dagster.contract import SAMPLE_TYPES
from tracseq_dagster.generator import PROJECTS, SAMPLE_TYPE_SHARE, generate_samples
from tracseq_dagster.operations.freezer_process import REFERENCE, hazard, simulate_excursions
from tracseq_dagster.operations.freezer_state import freezer_state, parse_locations
from tracseq_dagster.operations.placement_risk import excursion_risk
from tracseq_dagster.operations.storage_placement import FreezerRisk, IncomingSample, PlacementWeights, first_free, recommend

STAY_DAYS = 30
ARRIVAL_DAYS = 30
#: The month's intake planned jointly: the door load per day is the batch's count / 30.
MONTH = PlacementWeights(batch_days=ARRIVAL_DAYS)


def incoming_samples(n: int, as_of: pd.Timestamp, seed: int) -> list[IncomingSample]:
    rng = np.random.default_rng([seed, 0x570])
    share = np.array([SAMPLE_TYPE_SHARE[t] for t in SAMPLE_TYPES])
    types = rng.choice(len(SAMPLE_TYPES), n, p=share / share.sum())
    weights = 1.0 / np.arange(1, len(PROJECTS) + 1)
    projects = rng.choice(len(PROJECTS), n, p=weights / weights.sum())
    days = rng.integers(1, 91, n)
    return [IncomingSample(SAMPLE_TYPES[t], PROJECTS[p], (as_of + pd.Timedelta(days=int(d))).date(), f"IN-{i:05d}")
            for i, (t, p, d) in enumerate(zip(types, projects, days))]  # fmt: skip


def background_intake(samples: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Mean samples put in per day, per unit, over the last 30 days of history."""
    received = pd.to_datetime(samples["received_ts"], utc=True)
    recent = samples[received > as_of - pd.Timedelta(days=30)]
    units = parse_locations(recent["storage_location"])["freezer_id"]
    return units.value_counts() / 30.0


def simulate(
    units: list[str | None], as_of: pd.Timestamp, seed: int, freezers: list[str], background: pd.Series
) -> dict[str, float]:
    """Excursions met by each placed sample during its 30-day stay (arrivals spread over 30 days): realised (the
    process's draws) and expected (``1 - exp(-sum of the true hazard over the stay)``, the same hazard without the
    draws' luck)."""
    start = as_of.floor("D") + pd.Timedelta(days=1)
    first = int((start - REFERENCE) // pd.Timedelta(days=1))
    n = len(units)
    arrival_day = (np.arange(n) * ARRIVAL_DAYS) // max(n, 1)
    days = ARRIVAL_DAYS + STAY_DAYS
    rows, load = [], {}
    for f in freezers:
        per_day = np.full(days, background.get(f, 0.0))
        mine = arrival_day[[u == f for u in units]]
        per_day[:ARRIVAL_DAYS] += np.bincount(mine, minlength=ARRIVAL_DAYS)[:ARRIVAL_DAYS]
        load[f] = per_day
        rows += [{"freezer_id": f, "day": start + pd.Timedelta(days=d), "samples": per_day[d]} for d in range(days)]
    events = simulate_excursions(freezers, start, days, seed, intake=pd.DataFrame(rows))
    day_of = ((events["ts"] - start) // pd.Timedelta(days=1)).to_numpy()
    hits, expected = np.zeros(n), np.zeros(n)
    placed = np.array([u is not None for u in units])
    for f in freezers:
        times = np.sort(day_of[events["freezer_id"].to_numpy() == f])
        here = np.flatnonzero([u == f for u in units])
        lo = np.searchsorted(times, arrival_day[here], side="left")
        hi = np.searchsorted(times, arrival_day[here] + STAY_DAYS, side="left")
        hits[here] = hi - lo
        cumulative = np.concatenate([[0.0], np.cumsum(hazard(f, first, days, seed, load[f]))])
        expected[here] = 1.0 - np.exp(-(cumulative[arrival_day[here] + STAY_DAYS] - cumulative[arrival_day[here]]))
    return {
        "placed": int(placed.sum()),
        "excursion_rate": float((hits[placed] > 0).mean()),
        "expected_rate": float(expected[placed].mean()),
        "excursions_per_sample": float(hits[placed].mean()),
    }


def oracle_risk(freezers: list[str], as_of: pd.Timestamp, seed: int) -> dict[str, FreezerRisk]:
    """P(excursion in 30 days) from the true hazard (no door load): the ceiling of what a risk source can know."""
    first = int((as_of.floor("D") + pd.Timedelta(days=1) - REFERENCE) // pd.Timedelta(days=1))
    return {f: FreezerRisk(float(1 - np.exp(-hazard(f, first, STAY_DAYS, seed).sum())), "oracle") for f in freezers}


def one_seed(seed: int, history: int, n_incoming: int) -> dict[str, object]:
    samples = generate_samples(history, seed=seed)
    state = freezer_state(samples)
    freezers = state.freezers["freezer_id"].astype(str).tolist()
    risk = excursion_risk(samples, freezers, state.as_of)
    incoming = incoming_samples(n_incoming, state.as_of, seed)
    background = background_intake(samples, state.as_of)
    recommended = [
        p.chosen.location.freezer_id if p.chosen else None for p in recommend(incoming, state, risk.risk, top=1, weights=MONTH)
    ]
    baseline = [loc.freezer_id if loc else None for loc in first_free(incoming, state)]
    oracle = [p.chosen.location.freezer_id if p.chosen else None
              for p in recommend(incoming, state, oracle_risk(freezers, state.as_of, seed), top=1, weights=MONTH)]  # fmt: skip
    out = {
        "seed": seed,
        "as_of": state.as_of.isoformat(),
        "risk_source": risk.source,
        "recommender": simulate(recommended, state.as_of, seed, freezers, background),
        "first_free": simulate(baseline, state.as_of, seed, freezers, background),
        "oracle": simulate(oracle, state.as_of, seed, freezers, background),
        "recommended_units": pd.Series(recommended).value_counts().to_dict(),
        "first_free_units": pd.Series(baseline).value_counts().to_dict(),
    }
    base = out["first_free"]["excursion_rate"]  # type: ignore[index]
    out["ratio"] = out["recommender"]["excursion_rate"] / base if base else float("nan")  # type: ignore[index]
    return out


def timing(history: int, repeats: int, n_incoming: int = 1000) -> dict[str, object]:
    samples = generate_samples(history, seed=101)
    wall, cpu = time.perf_counter(), time.process_time()
    state = freezer_state(samples)
    state_wall, state_cpu = time.perf_counter() - wall, time.process_time() - cpu
    freezers = state.freezers["freezer_id"].astype(str).tolist()
    risk = excursion_risk(samples, freezers, state.as_of).risk
    incoming = incoming_samples(n_incoming, state.as_of, 101)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        placements = recommend(incoming, state, risk, top=3)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    chosen = [p.chosen.location for p in placements if p.chosen]
    assert len(chosen) == len(set(chosen)) == n_incoming, "every sample placed, no position twice"
    return {
        "history_samples": history,
        "free_positions": state.counts["free_positions"],
        "occupied_positions": state.counts["occupied_positions"],
        "incoming": n_incoming,
        "repeats": repeats,
        "place_wall_s_median": statistics.median(walls),
        "place_cpu_s_median": statistics.median(cpus),
        "place_wall_s_max": max(walls),
        "place_cpu_s_max": max(cpus),
        "state_wall_s": state_wall,
        "state_cpu_s": state_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--history", type=int, default=15_000)
    parser.add_argument("--incoming", type=int, default=1_000)
    parser.add_argument("--timing-history", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/storage_placement.json"))
    args = parser.parse_args()

    runs = [one_seed(seed, args.history, args.incoming) for seed in range(1, args.seeds + 1)]
    print(
        "| seed | risk source | realised: recommender | first-free | ratio | oracle | expected: recommender | first-free | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        rec, base, orc = r["recommender"], r["first_free"], r["oracle"]
        print(f"| {r['seed']} | {r['risk_source']} | {rec['excursion_rate']:.3f} | {base['excursion_rate']:.3f} | {r['ratio']:.2f} | "
              f"{orc['excursion_rate']:.3f} | {rec['expected_rate']:.3f} | {base['expected_rate']:.3f} | "
              f"{rec['expected_rate'] / base['expected_rate']:.2f} |")  # fmt: skip
    pooled: dict[str, float] = {}
    for metric in ("excursion_rate", "expected_rate"):
        for k in ("recommender", "first_free", "oracle"):
            pooled[f"{metric}_{k}"] = float(np.mean([r[k][metric] for r in runs]))
        pooled[f"{metric}_ratio"] = pooled[f"{metric}_recommender"] / pooled[f"{metric}_first_free"]
        better = sum(r["recommender"][metric] < r["first_free"][metric] for r in runs)
        pooled[f"{metric}_seeds_better"] = better
        print(f"\n{metric} over {len(runs)} seeds: recommender {pooled[f'{metric}_recommender']:.3f}, first-free "
              f"{pooled[f'{metric}_first_free']:.3f}, ratio {pooled[f'{metric}_ratio']:.2f} (recommender lower in {better} of "
              f"{len(runs)} seeds), oracle {pooled[f'{metric}_oracle']:.3f}")  # fmt: skip

    timed = timing(args.timing_history, args.repeats)
    print(f"\n1,000 samples placed jointly against {timed['free_positions']:,} free positions ({timed['history_samples']:,} samples of "
          f"history): wall median {timed['place_wall_s_median']:.3f} s (max {timed['place_wall_s_max']:.3f}), CPU median "
          f"{timed['place_cpu_s_median']:.3f} s (max {timed['place_cpu_s_max']:.3f}); freezer state built in "
          f"{timed['state_wall_s']:.2f} s wall, {timed['state_cpu_s']:.2f} s CPU")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seeds": runs, "pooled": pooled, "timing": timed, "args": vars(args)}, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
