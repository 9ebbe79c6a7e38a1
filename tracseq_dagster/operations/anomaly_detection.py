"""Anomaly detection: how unusual is each new validated sample and each freezer day against history.

Why an Isolation Forest, with an envelope
-----------------------------------------
The detector is scikit-learn's :class:`~sklearn.ensemble.IsolationForest` (already locked; no new
dependency) beside a per-feature *envelope*, each given half of the false-alarm budget; a row is an
anomaly when either passes its threshold. Chosen by measurement (``benchmarks/anomaly_detection.py``,
numbers in BENCHMARKS.md), against a per-feature robust z-score rule and PyOD's ECOD and HBOS:

* The forest alone found almost none of the injected sample anomalies. A forest cannot score a
  value *beyond* the range it was fitted on as more isolated than the reference's own extremes
  (the split points lie inside that range), and the lab's normal data are heavy-tailed (5 % of
  samples stored several degrees warm, a few thawed twenty times), so its top 1 % is taken by rare
  but normal rows that are moderately unusual on several features at once. ECOD and HBOS sum
  per-feature tail scores and have the same weakness.
* The envelope is what a glitch needs: per feature, how far a value lies beyond the reference's
  0.1 % / 99.9 % quantiles, in units of that feature's extent (quantile to median); the largest over
  the features is the row's envelope score. It extrapolates: a probe reading 95 °C below the set
  point is far outside anything history has shown, however rare warm samples are.
* The forest keeps what the envelope cannot see: rows unusual in several features together inside
  their ranges (a failing freezer's day: intake, warm readings and excursions at once).

The combined score is ``max(forest score / forest threshold, envelope / envelope threshold)``, so
1.0 is the threshold of both. The forest also suits the data otherwise: it needs no scaling or
distribution assumption, is unsupervised (the lab has no anomaly labels) and fits 20,000 reference
rows in under a second of CPU.

Features
--------
Samples are scored on the same point-in-time features the models use (:mod:`tracseq_dagster.features`,
the ``sample_features`` table, each row as of its own latest event), less the ones that drift by
construction and so would flag every new sample (``operator_history_count``, ``site_history_count``
grow with time; ``weekday_received`` and ``is_urgent`` are not measurements), plus two
*consistency* features derived from them, because an impossible combination of individually
plausible values is invisible to any per-feature view:

* ``deviation_beyond_record_c`` = ``|storage_temp_deviation_c| - max_temp_deviation_c``: a storage
  reading farther from the set point than the largest deviation ever recorded (> 0 is impossible);
* ``deviation_without_excursion_c`` = ``max_temp_deviation_c - |storage_temp_deviation_c|`` where
  no excursion was recorded (else 0): a large deviation that neither counted as an excursion nor
  shows in the storage reading.

Freezer days are scored on the columns of ``freezer_days`` (one row per freezer per day, see
:mod:`tracseq_dagster.operations.freezer_history`) that describe the day: intake, the storage
readings of the samples stored that day, the excursion record (:data:`FREEZER_DAY_FEATURES`).

Reference, score and threshold
------------------------------
Both parts are fitted on a reference window (the history before the rows being judged) and score
the new rows. Each threshold is the ``1 - false_alarm_budget / 2`` quantile of its score over the
reference rows (the envelope's at least 0.25: a quarter of the feature's extent past its extreme
quantile): with a budget of 1 %, at most about 1 % of normal new rows are flagged, whatever the
data look like.
Missing values are imputed with the reference median (NaN means "not measured", e.g. the RIN of a
DNA sample, and should not on its own make a row unusual).

Reasons
-------
Each flagged row keeps its top reasons, the features that make it unusual, ranked by their
*empirical tail probability* against the reference, ``(1 + #reference rows at least as extreme) /
(n + 1)`` on the row's side of the median, ties (values beyond anything in the reference) broken by
the robust z-score ``(x - median) / (1.4826 MAD)``. Why not the z-score alone: heavy-tailed normal
features (freeze-thaw cycles) reach z = 10 routinely, so z ranks the wrong feature first; the tail
probability says how rare the value is, which is what the forest isolates on. Why not per-tree
attributions (SHAP): slower, another dependency, and not in the lab's units. A reason reads
``storage_temp_deviation_c = -95.2 (reference median 0, z = -118.0; beyond all 19515 reference rows)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from tracseq_dagster.features import NUMERIC_FEATURES

#: Model features not used for anomalies: they grow with time (history counts) or are not
#: measurements (weekday, priority), so every new sample would look unusual on them.
EXCLUDED_SAMPLE_FEATURES: tuple[str, ...] = ("operator_history_count", "site_history_count", "weekday_received", "is_urgent")
#: Consistency features derived from the model features (see the module docstring).
CONSISTENCY_FEATURES: tuple[str, ...] = ("deviation_beyond_record_c", "deviation_without_excursion_c")
SAMPLE_DETECTOR_FEATURES: tuple[str, ...] = (
    *(f for f in NUMERIC_FEATURES if f not in EXCLUDED_SAMPLE_FEATURES),
    *CONSISTENCY_FEATURES,
)
#: Columns of freezer_days (tracseq_dagster.operations.freezer_history) the freezer-day detector reads:
#: the day's own intake, storage readings and closed excursion records. Not the ones that grow by
#: construction (samples_stored, days_observed, excursion_rate_all, days_since_excursion), name the
#: freezer (set_point_c) or move slowly with a freezer's ageing (the 30/90-day rates and trend: the
#: freezer_excursion_risk model's inputs): on those every new day is beyond the reference.
FREEZER_DAY_FEATURES: tuple[str, ...] = (
    "intake",
    "mean_storage_deviation_c",
    "max_storage_deviation_c",
    "excursions_recorded",
    "records_with_excursion",
    "max_temp_deviation_c",
)

#: Freezer days are judged against the last this many days only: intake grows and freezers age, so a
#: year-old day is not what "normal" means today.
FREEZER_REFERENCE_DAYS = 90
#: Share of normal rows the threshold lets through as alarms (the false-alarm budget).
DEFAULT_FALSE_ALARM_BUDGET = 0.01
#: Samples are judged against the most recent this many earlier samples: enough to describe normal,
#: bounded in memory (the reasons keep one sorted copy of the reference) for a lab of millions.
MAX_REFERENCE_ROWS = 200_000
#: Fewer reference rows than this cannot describe "normal": fitting refuses.
MIN_REFERENCE_ROWS = 50
#: Reasons kept per row, and the tail probability under which a feature counts as a reason.
TOP_REASONS = 3
REASON_TAIL_PROBABILITY = 0.02
N_ESTIMATORS = 200
#: The envelope of a feature: its reference quantiles at 0.1 % and 99.9 %; a row must pass one by at
#: least this share of the feature's extent (quantile to median) to count, whatever the budget.
ENVELOPE_QUANTILE = 0.001
MIN_ENVELOPE_EXCESS = 0.25
MAX_SAMPLES = 512


def sample_detector_frame(features: pd.DataFrame) -> pd.DataFrame:
    """The detector's inputs from a sample feature table (the sample_features columns)."""
    missing = [f for f in SAMPLE_DETECTOR_FEATURES if f not in CONSISTENCY_FEATURES and f not in features.columns]
    if missing:
        raise ValueError(f"sample features lack {', '.join(missing)}: rebuild sample_features with the current code")
    frame = features[[f for f in SAMPLE_DETECTOR_FEATURES if f not in CONSISTENCY_FEATURES]].astype("float64")
    deviation = frame["storage_temp_deviation_c"].abs()
    recorded = frame["max_temp_deviation_c"]
    frame["deviation_beyond_record_c"] = deviation - recorded
    frame["deviation_without_excursion_c"] = (recorded - deviation).where(frame["temp_excursion_rate_per_day"] == 0, 0.0)
    return frame


def freezer_day_frame(days: pd.DataFrame) -> pd.DataFrame:
    """The detector's inputs from freezer_days (:data:`FREEZER_DAY_FEATURES`)."""
    missing = [c for c in FREEZER_DAY_FEATURES if c not in days.columns]
    if missing:
        raise ValueError(f"freezer days lack {', '.join(missing)} (columns: {', '.join(map(str, days.columns))})")
    return days[list(FREEZER_DAY_FEATURES)].astype("float64")


@dataclass(frozen=True)
class Scores:
    """Scores of new rows: ``score`` (higher = more unusual), ``is_anomaly`` and ``reasons`` per row."""

    score: np.ndarray
    is_anomaly: np.ndarray
    reasons: list[str]
    threshold: float


class AnomalyDetector:
    """An Isolation Forest fitted on reference rows, with the threshold and the per-feature reference."""

    def __init__(self, *, false_alarm_budget: float = DEFAULT_FALSE_ALARM_BUDGET, seed: int = 0) -> None:
        if not 0.0 < false_alarm_budget < 0.5:
            raise ValueError(f"false_alarm_budget must be in (0, 0.5), got {false_alarm_budget}")
        self.false_alarm_budget = false_alarm_budget
        self.seed = seed

    def fit(self, reference: pd.DataFrame) -> AnomalyDetector:
        """Learn what normal rows look like; refuses fewer than MIN_REFERENCE_ROWS rows."""
        if len(reference) < MIN_REFERENCE_ROWS:
            raise ValueError(f"{len(reference)} reference rows: at least {MIN_REFERENCE_ROWS} are needed to describe normal rows")
        self.columns = list(reference.columns)
        values = reference.to_numpy(dtype="float64")
        with warnings.catch_warnings():  # a column never measured in the reference: its median is 0
            warnings.simplefilter("ignore", RuntimeWarning)
            self.median = np.nan_to_num(np.nanmedian(values, axis=0), nan=0.0)
        filled = self._impute(values)
        # A spread below rounding noise (a feature that is constant but for float error) is no spread.
        noise = 1e-9 * (1.0 + np.abs(self.median))
        mad = 1.4826 * np.median(np.abs(filled - self.median), axis=0)
        std = filled.std(axis=0)
        self.scale = np.where(mad > noise, mad, np.where(std > noise, std, 1.0))
        self.sorted_reference = np.sort(filled, axis=0)
        self.low, self.high = np.quantile(filled, [ENVELOPE_QUANTILE, 1.0 - ENVELOPE_QUANTILE], axis=0)
        self.extent_low = np.maximum(self.median - self.low, self.scale)
        self.extent_high = np.maximum(self.high - self.median, self.scale)
        self.forest = IsolationForest(
            n_estimators=N_ESTIMATORS, max_samples=min(MAX_SAMPLES, len(filled)), random_state=self.seed, n_jobs=1
        ).fit(filled)
        # Half of the budget each: a normal row flagged by either counts once against it.
        quantile = 1.0 - self.false_alarm_budget / 2.0
        self.forest_threshold = float(np.quantile(-self.forest.score_samples(filled), quantile))
        self.envelope_threshold = max(float(np.quantile(self.envelope(filled), quantile)), MIN_ENVELOPE_EXCESS)
        return self

    def envelope(self, values: np.ndarray) -> np.ndarray:
        """Per row: the largest excess of a feature beyond the reference's extreme quantiles, in units of its extent."""
        above = (values - self.high) / self.extent_high
        below = (self.low - values) / self.extent_low
        return np.maximum(np.maximum(above, below), 0.0).max(axis=1)

    def raw_scores(self, values: np.ndarray) -> np.ndarray:
        """The combined score of imputed rows: > 1 means past the forest's or the envelope's threshold."""
        forest = -self.forest.score_samples(values) / self.forest_threshold
        return np.maximum(forest, self.envelope(values) / self.envelope_threshold)

    #: The combined score is relative to both thresholds: a row is an anomaly above 1.
    threshold = 1.0

    def _impute(self, values: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(values), self.median, values)

    def score(self, rows: pd.DataFrame) -> Scores:
        """Score new rows (same columns as the reference) and explain the ones above the threshold."""
        absent = [c for c in self.columns if c not in rows.columns]
        if absent:
            raise ValueError(f"rows to score lack the reference columns {', '.join(absent)}")
        if len(rows) == 0:
            return Scores(np.zeros(0), np.zeros(0, dtype=bool), [], self.threshold)
        raw = rows[self.columns].to_numpy(dtype="float64")
        score = self.raw_scores(self._impute(raw))
        flagged = score > self.threshold
        reasons = ["" for _ in range(len(rows))]
        for i in np.flatnonzero(flagged):
            reasons[i] = "; ".join(self.reasons(raw[i]))
        return Scores(score, flagged, reasons, self.threshold)

    def tail_probability(self, values: np.ndarray) -> np.ndarray:
        """Per feature: (1 + reference rows at least as extreme on the value's side of the median) / (n + 1)."""
        n = len(self.sorted_reference)
        above = n - np.array([np.searchsorted(self.sorted_reference[:, j], v, side="left") for j, v in enumerate(values)])
        below = np.array([np.searchsorted(self.sorted_reference[:, j], v, side="right") for j, v in enumerate(values)])
        count = np.where(values >= self.median, above, below)
        return (1.0 + count) / (n + 1.0)

    def reasons(self, raw: np.ndarray, top: int = TOP_REASONS) -> list[str]:
        """The features that make one row unusual, rarest first (missing values are never a reason)."""
        values = self._impute(raw)
        tail = self.tail_probability(values)
        z = (values - self.median) / self.scale
        order = np.lexsort((-np.abs(z), tail))  # rarest first; beyond the reference, farthest first
        out: list[str] = []
        for j in order:
            if len(out) == top or tail[j] > REASON_TAIL_PROBABILITY:
                break
            if np.isnan(raw[j]):
                continue
            n = len(self.sorted_reference)
            rarity = (
                f"beyond all {n} reference rows"
                if tail[j] * (n + 1) < 1.5
                else f"rarer than {100.0 * (1.0 - tail[j]):.1f} % of reference rows"
            )
            out.append(f"{self.columns[j]} = {raw[j]:.4g} (reference median {self.median[j]:.4g}, z = {z[j]:+.1f}; {rarity})")
        return out or ["unusual combination of features (no single feature outside the reference)"]


def split_reference(frame: pd.DataFrame, ts_column: str, since: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History (``ts_column`` before ``since``) and the new rows to judge (at or after it)."""
    ts = pd.to_datetime(frame[ts_column], utc=True)
    return frame[ts < since], frame[ts >= since]


def window_start(ts: pd.Series, new_days: float) -> pd.Timestamp:
    """Start of the window judged: ``new_days`` before the latest of ``ts`` (UTC)."""
    return pd.to_datetime(ts, utc=True).max() - pd.Timedelta(days=new_days)


def score_table(
    rows: pd.DataFrame,
    scores: Scores,
    *,
    kind: str,
    entity: Sequence[str],
    ts: Sequence[pd.Timestamp],
    project_id: Sequence[str | None] | None = None,
    site: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """Rows of the ANOMALIES contract (tracseq_dagster.operations.outputs) for one kind of scored row."""
    n = len(rows)
    return pd.DataFrame(
        {
            "kind": pd.array([kind] * n, dtype="string"),
            "entity": pd.array(list(entity), dtype="string"),
            "ts": pd.to_datetime(pd.Series(list(ts), dtype="object"), utc=True).astype("datetime64[ns, UTC]").array,
            "score": scores.score.astype("float64"),
            "threshold": np.full(n, scores.threshold),
            "is_anomaly": scores.is_anomaly.astype(bool),
            "reasons": pd.array(scores.reasons, dtype="string"),
            "project_id": pd.array(list(project_id) if project_id is not None else [None] * n, dtype="string"),
            "site": pd.array(list(site) if site is not None else [None] * n, dtype="string"),
        }
    )


def empty_scores() -> pd.DataFrame:
    """An ANOMALIES table with no row but every column (nothing could be scored)."""
    return score_table(pd.DataFrame(), Scores(np.zeros(0), np.zeros(0, dtype=bool), [], 1.0), kind="sample", entity=[], ts=[])


def score_samples(
    features: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    since: pd.Timestamp,
    budget: float = DEFAULT_FALSE_ALARM_BUDGET,
    seed: int = 0,
) -> pd.DataFrame:
    """Score the samples received at or after ``since`` against the samples received before.

    ``features`` is the sample_features table (sample_id plus the feature columns), ``samples`` the
    accepted samples (sample_id, received_ts, project_id, site).
    """
    facts = samples[["sample_id", "received_ts", "project_id", "site"]].drop_duplicates("sample_id")
    table = features.merge(facts, on="sample_id", how="inner", validate="one_to_one")
    reference, new = split_reference(table, "received_ts", since)
    reference = reference.sort_values("received_ts").tail(MAX_REFERENCE_ROWS)
    detector = AnomalyDetector(false_alarm_budget=budget, seed=seed).fit(sample_detector_frame(reference))
    scores = detector.score(sample_detector_frame(new))
    return score_table(
        new,
        scores,
        kind="sample",
        entity=new["sample_id"].astype(str).tolist(),
        ts=new["received_ts"].tolist(),
        project_id=new["project_id"].tolist(),
        site=new["site"].tolist(),
    )


def score_freezer_days(
    days: pd.DataFrame, *, since: pd.Timestamp, budget: float = DEFAULT_FALSE_ALARM_BUDGET, seed: int = 0
) -> pd.DataFrame:
    """Score the freezer days at or after ``since`` against the days before (all freezers pooled)."""
    if "freezer_id" not in days.columns or "day" not in days.columns:
        raise ValueError(f"freezer days need freezer_id and day (columns: {', '.join(map(str, days.columns))})")
    reference, new = split_reference(days, "day", since)
    reference = reference[reference["day"] >= since - pd.Timedelta(days=FREEZER_REFERENCE_DAYS)]
    detector = AnomalyDetector(false_alarm_budget=budget, seed=seed).fit(freezer_day_frame(reference))
    scores = detector.score(freezer_day_frame(new))
    return score_table(new, scores, kind="freezer_day", entity=new["freezer_id"].astype(str).tolist(), ts=new["day"].tolist())
