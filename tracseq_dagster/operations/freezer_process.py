"""The hidden freezer excursion process of the synthetic lab (documented, so that a model can be checked against it).

Every storage unit (``FRZ-01`` .., ``FRG-01`` .., ``CAB-01``, see ``generator.STORAGE_UNITS``)
has its own excursion hazard ``h(f, d)``, in excursions per day, on day ``d`` (UTC days since
:data:`REFERENCE`, 2025-01-01)::

    h(f, d) = base(f) * exp(growth(f) * d / 365)              a unit that ages or degrades
              * (EPISODE_FACTOR if f is in a fault episode on d else 1)
              + DOOR_MAX * intake(f, d) / (intake(f, d) + DOOR_HALF)   door openings when samples go in

* ``base``, ``growth``, ``episode_chance`` and ``severity_c`` per unit are in :data:`PROFILES`:
  FRZ-03 and FRZ-08 are bad units (base 0.07-0.08/day), FRZ-01, FRZ-06, FRZ-09 good ones
  (0.006/day), FRZ-04 and FRZ-09 degrade (their hazard grows eight- and fivefold a year),
  the fridges and the cabinet sit in between. A unit not in the table gets a profile derived
  from its name (base 0.008-0.04/day, no growth).
* Fault episodes (a failing compressor, a door seal): in every 30-day block since
  :data:`REFERENCE` an episode starts with probability ``episode_chance(f)`` at a uniform day of
  the block and lasts 10 to 40 days; during it the hazard is ``EPISODE_FACTOR`` (6) times higher.
  Episodes make the near future of a unit look like its recent past, which is what a model
  predicting "an excursion in the next 30 days" from the history can learn.
* Door load: every sample put in the unit that day adds to the hazard, saturating at
  ``DOOR_MAX`` (0.03/day) for busy days (``DOOR_HALF`` = 10 samples gives half of it).
* Excursions per day are Poisson(``h``), at uniform times of the day; each excursion warms the
  unit by ``severity_c(f) * (0.5 + Exp(1))`` °C above its set point.

Draws are counter-based: the uniforms of unit ``f`` on day ``d`` depend only on (seed, f, d),
and the count is the Poisson quantile of one uniform, so a higher hazard never gives fewer
excursions (common random numbers) and :func:`simulate_excursions` for the 30 days after a
generated export continues the export's history (same episodes, same degradation) when it is
given the generator's seed. The generator (``generate_samples``) records, per sample, the
excursions of its unit while it was stored there (from ``received_ts`` until extraction, or
until the export for a sample not extracted): :func:`sample_excursions`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import poisson

#: Day 0 of the process (UTC); hazards grow from here.
REFERENCE = pd.Timestamp("2025-01-01", tz="UTC")
EPISODE_FACTOR = 6.0
EPISODE_BLOCK_DAYS = 30
EPISODE_DAYS = (10, 40)
DOOR_MAX = 0.03
DOOR_HALF = 10.0
#: At most this many excursions a unit-day (the Poisson count is cut there).
MAX_PER_DAY = 6
_DAY_S = 86_400
_YEAR_DAYS = 366  # days drawn per counter block
_EVENT_COLUMNS = ["freezer_id", "ts", "deviation_c"]


@dataclass(frozen=True)
class FreezerProfile:
    """How often a unit has excursions (per day), how that changes, and how bad they are."""

    base_per_day: float
    growth_per_year: float = 0.0  # log of the yearly factor of the hazard
    episode_chance: float = 0.1  # P(a fault episode starts in a 30-day block)
    severity_c: float = 3.0  # typical warming of one excursion


PROFILES: dict[str, FreezerProfile] = {
    "FRZ-01": FreezerProfile(0.006, episode_chance=0.05, severity_c=2.5),
    "FRZ-02": FreezerProfile(0.018, episode_chance=0.10),
    "FRZ-03": FreezerProfile(0.080, episode_chance=0.20, severity_c=5.0),
    "FRZ-04": FreezerProfile(0.008, growth_per_year=np.log(8.0), episode_chance=0.10, severity_c=4.0),
    "FRZ-05": FreezerProfile(0.030, episode_chance=0.15),
    "FRZ-06": FreezerProfile(0.006, episode_chance=0.05, severity_c=2.5),
    "FRZ-07": FreezerProfile(0.020, episode_chance=0.10),
    "FRZ-08": FreezerProfile(0.070, episode_chance=0.20, severity_c=4.5),
    "FRZ-09": FreezerProfile(0.006, growth_per_year=np.log(5.0), episode_chance=0.10),
    "FRZ-10": FreezerProfile(0.015, episode_chance=0.10),
    "FRG-01": FreezerProfile(0.035, episode_chance=0.10, severity_c=2.0),
    "FRG-02": FreezerProfile(0.012, episode_chance=0.10, severity_c=2.0),
    "CAB-01": FreezerProfile(0.015, episode_chance=0.05, severity_c=2.0),
}


def _code(freezer_id: str) -> int:
    return zlib.crc32(freezer_id.encode("utf-8"))


def profile(freezer_id: str) -> FreezerProfile:
    """The unit's profile: from :data:`PROFILES`, else derived from its name (deterministic)."""
    if freezer_id in PROFILES:
        return PROFILES[freezer_id]
    u = np.random.default_rng([_code(freezer_id), 0x9F]).random(2)
    return FreezerProfile(0.008 + 0.032 * float(u[0]), episode_chance=0.05 + 0.15 * float(u[1]))


def _day_index(ts: pd.Timestamp | str) -> int:
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int((stamp.floor("D") - REFERENCE) // pd.Timedelta(days=1))


def _blocked_uniforms(seed: int, freezer_id: str, stream: int, first: int, count: int, width: int) -> np.ndarray:
    """Uniforms of shape (count, width) for indices first .. first + count - 1; row i depends only on
    (seed, unit, stream, index), whatever window is asked for."""
    rows = []
    for block in range(first // _YEAR_DAYS, (first + count - 1) // _YEAR_DAYS + 1):
        rng = np.random.default_rng([seed, _code(freezer_id), stream, block + 10_000])
        rows.append(rng.random((_YEAR_DAYS, width)))
    table = np.concatenate(rows)
    offset = first - (first // _YEAR_DAYS) * _YEAR_DAYS
    return table[offset : offset + count]


def in_episode(freezer_id: str, first: int, days: int, seed: int) -> np.ndarray:
    """Whether the unit is in a fault episode on days first .. first + days - 1 (day indices since REFERENCE)."""
    chance = profile(freezer_id).episode_chance
    low, high = EPISODE_DAYS
    first_block = (first - high) // EPISODE_BLOCK_DAYS
    last_block = (first + days - 1) // EPISODE_BLOCK_DAYS
    draws = _blocked_uniforms(seed, freezer_id, 1, first_block, last_block - first_block + 1, 3)
    flags = np.zeros(days, dtype=bool)
    for block, (u_start, u_offset, u_length) in zip(range(first_block, last_block + 1), draws):
        if u_start >= chance:
            continue
        begin = block * EPISODE_BLOCK_DAYS + int(u_offset * EPISODE_BLOCK_DAYS)
        end = begin + low + int(u_length * (high - low + 1))
        flags[max(begin - first, 0) : max(end - first, 0)] = True
    return flags


def hazard(freezer_id: str, first: int, days: int, seed: int, intake: np.ndarray | None = None) -> np.ndarray:
    """h(f, d) for d = first .. first + days - 1 (excursions per day; see the module docstring)."""
    spec = profile(freezer_id)
    day = np.arange(first, first + days, dtype=float)
    rate = spec.base_per_day * np.exp(spec.growth_per_year * day / 365.0)
    rate = rate * np.where(in_episode(freezer_id, first, days, seed), EPISODE_FACTOR, 1.0)
    if intake is not None:
        load = np.asarray(intake, dtype=float)
        rate = rate + DOOR_MAX * load / (load + DOOR_HALF)
    return rate


def _unit_events(freezer_id: str, first: int, days: int, seed: int, intake: np.ndarray | None) -> pd.DataFrame:
    rate = hazard(freezer_id, first, days, seed, intake)
    draws = _blocked_uniforms(seed, freezer_id, 2, first, days, 1 + 2 * MAX_PER_DAY)
    counts = np.minimum(poisson.ppf(draws[:, 0], rate), MAX_PER_DAY).astype(int)
    day_of, slot = np.nonzero(np.arange(MAX_PER_DAY)[None, :] < counts[:, None])
    fraction = draws[day_of, 1 + slot]
    # Exp(1) by inversion of the slot's second uniform.
    deviation = profile(freezer_id).severity_c * (0.5 - np.log1p(-draws[day_of, 1 + MAX_PER_DAY + slot]))
    seconds = (first + day_of) * _DAY_S + (fraction * _DAY_S).astype(np.int64)
    ts = REFERENCE + pd.to_timedelta(seconds, unit="s")
    events = pd.DataFrame({"freezer_id": freezer_id, "ts": ts, "deviation_c": np.round(deviation, 1)})
    return events.sort_values("ts", kind="stable")


def simulate_excursions(
    freezers: list[str] | tuple[str, ...],
    start: pd.Timestamp | str,
    days: int,
    seed: int,
    intake: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The excursions of ``freezers`` on the ``days`` UTC days from ``start``'s day: freezer_id, ts, deviation_c.

    ``intake`` (optional): samples put in per unit and day (columns freezer_id, day, samples) for
    the door-load term; without it the door term is 0. With the generator's seed the result
    continues a generated export's history.
    """
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    first = _day_index(start)
    frames = []
    for freezer_id in dict.fromkeys(freezers):
        load = None
        if intake is not None:
            mine = intake[intake["freezer_id"] == freezer_id]
            index = [_day_index(d) - first for d in mine["day"]]
            load = np.zeros(days)
            for i, samples in zip(index, mine["samples"]):
                if 0 <= i < days:
                    load[i] += samples
        frames.append(_unit_events(freezer_id, first, days, seed, load))
    if not frames or days == 0:
        return pd.DataFrame({"freezer_id": pd.Series(dtype="object"), "ts": pd.Series(dtype="datetime64[ns, UTC]"),
                             "deviation_c": pd.Series(dtype="float64")})  # fmt: skip
    return pd.concat(frames, ignore_index=True)[_EVENT_COLUMNS]


def sample_excursions(
    freezer_ids: np.ndarray,
    stored_from: np.ndarray,
    stored_until: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the excursions of its unit while it was stored there, and the largest warming (°C).

    ``stored_from`` / ``stored_until`` are whole seconds since the epoch (UTC), the stay is
    ``[from, until)``; a sample without excursions gets a largest deviation of ``|N(0, 0.3)|``
    (sensor noise). The units' intake per day (the door-load term) is counted from
    ``stored_from``. Returns (counts as int64, deviations rounded to 0.1 °C).
    """
    freezer_ids = np.asarray(freezer_ids, dtype=object)
    start = np.asarray(stored_from, dtype=np.int64)
    until = np.maximum(np.asarray(stored_until, dtype=np.int64), start)
    n = len(freezer_ids)
    counts = np.zeros(n, dtype=np.int64)
    deviation = np.zeros(n)
    if n == 0:
        return counts, deviation
    reference_s = REFERENCE.value // 10**9
    first = int((start.min() - reference_s) // _DAY_S)
    days = int((until.max() - reference_s) // _DAY_S) - first + 1
    for freezer_id in np.unique(freezer_ids):
        here = np.flatnonzero(freezer_ids == freezer_id)
        intake = np.bincount((start[here] - reference_s) // _DAY_S - first, minlength=days)[:days]
        events = _unit_events(str(freezer_id), first, days, seed, intake)
        times = ((events["ts"] - REFERENCE) // pd.Timedelta(seconds=1)).to_numpy(np.int64) + reference_s
        counts[here] = np.searchsorted(times, until[here], side="left") - np.searchsorted(times, start[here], side="left")
        worst = np.zeros(len(here))
        for time, warming in zip(times, events["deviation_c"].to_numpy(float)):
            inside = (start[here] <= time) & (time < until[here])
            worst[inside] = np.maximum(worst[inside], warming)
        deviation[here] = worst
    noise = np.abs(np.random.default_rng([seed, 0x5E45]).normal(0.0, 0.3, n))
    return counts, np.round(np.where(counts > 0, deviation, noise), 1)
