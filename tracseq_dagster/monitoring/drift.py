"""Feature drift of one catalog model: the feature vectors it was asked about against its training rows.

Per feature of the model (:attr:`ModelSpec.features`) that its prediction log rows carry:

* **PSI** (population stability index), ``sum((c - r) * ln(c / r))`` over bins, where ``r`` and
  ``c`` are the reference and current shares of each bin. Numeric features use fixed bins cut at
  the reference's deciles (so each bin holds about a tenth of the reference); categorical
  features use their categories. Missing values are a bin of their own, so a feature that stops
  arriving drifts too. Empty bins count as a share of 0.0001 so the logarithm stays finite.
* **KS**, the two-sample Kolmogorov-Smirnov test (scipy) on the non-missing values of numeric
  features: ``D`` is the largest gap between the two cumulative distributions.

When a feature counts as drifted (:class:`DriftThresholds`): ``PSI >= 0.2`` (the usual rule of
thumb: below 0.1 stable, 0.1 to 0.2 a moderate shift, 0.2 and above a major one), or
``D >= 0.1`` **and** ``p < 0.01``. Why not the p-value alone: the reference holds tens of
thousands of rows, and at that size KS calls shifts far too small to matter significant; ``D``
is the size of the shift, and the p-value only guards against a large ``D`` by chance in a
small window. ``operator_history_count`` and ``site_history_count`` are measured but not judged
by default: they count the lab's history up to the moment of the prediction, so they grow
with time by construction and would "drift" forever. The report's verdict is ``drift`` when any feature drifted, ``no_drift``
otherwise, and ``insufficient_data`` when the window holds fewer than ``min_rows`` predictions.

The reference is the model's labelled rows (:func:`reference_features`, its training set as
``load_training_set`` builds it): the champion's training set plus the labels that arrived
since, which is what a retraining would learn from. The prediction log has a column for every
feature of every catalog model (:data:`~tracseq_dagster.serving.prediction_log.LOG_FEATURES`),
so each model's features are all measured; a feature the log read has no column for (a model
added to the catalog after the log was opened) cannot be, and the report lists it under
``unlogged`` rather than pretending it is stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from tracseq_dagster.features import FEATURE_NAMES, FEATURE_SPEC_BY_NAME, FeatureSpec
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import ModelSpec
from tracseq_dagster.serving.prediction_log import feature_specs
from tracseq_dagster.training_set import load_training_set

#: The asset check on ``feature_drift_report`` that fails on drift (the retraining sensor reads it).
DRIFT_CHECK_NAME = "feature_drift_within_threshold"
#: Share given to an empty bin (PSI takes logarithms of shares).
EMPTY_BIN_SHARE = 1e-4
MISSING = "<missing>"

Verdict = Literal["drift", "no_drift", "insufficient_data"]


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature counts as drifted; see the module docstring for why these defaults."""

    psi: float = 0.2
    ks_statistic: float = 0.1
    ks_alpha: float = 0.01
    min_rows: int = 200
    bins: int = 10
    #: Measured and shown, but never a reason for the verdict.
    not_judged: tuple[str, ...] = ("operator_history_count", "site_history_count")


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift measures (KS fields are None for categorical features)."""

    feature: str
    kind: str
    reference_rows: int
    current_rows: int
    reference_missing: float
    current_missing: float
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    drifted: bool
    reason: str


@dataclass(frozen=True)
class FeatureHistogram:
    """The bins one feature's PSI was measured on, with both counts: what the drift plot draws.

    Kept beside :class:`FeatureDrift` (not in it) so that the report's table and JSON stay as
    they were; the counts are cheap, the values behind them are not kept.
    """

    feature: str
    bins: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


@dataclass(frozen=True)
class DriftReport:
    """Every feature's drift and the verdict over them."""

    features: tuple[FeatureDrift, ...]
    thresholds: DriftThresholds
    reference_rows: int
    current_rows: int
    verdict: Verdict
    model: str | None = None
    #: Features of the model the prediction log has no column for: not measured.
    unlogged: tuple[str, ...] = ()
    #: Per measured feature, the PSI bins and both counts (for the plot; not in ``to_dict``).
    histograms: tuple[FeatureHistogram, ...] = field(default=(), repr=False, compare=False)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def table(self) -> pd.DataFrame:
        """One row per feature, the most shifted (by PSI) first."""
        frame = pd.DataFrame([asdict(f) for f in self.features])
        return frame.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True) if len(frame) else frame

    def summary(self) -> str:
        who = f"{self.model}: " if self.model else ""
        unseen = f"; {len(self.unlogged)} feature(s) not in the prediction log, not measured" if self.unlogged else ""
        if self.verdict == "insufficient_data":
            return f"{who}too few predictions to judge drift: {self.current_rows} < {self.thresholds.min_rows}{unseen}"
        if self.verdict == "no_drift":
            return f"{who}no feature drifted ({len(self.features)} features, {self.current_rows} predictions){unseen}"
        return f"{who}{len(self.drifted_features)} feature(s) drifted: " + "; ".join(
            f"{f.feature} ({f.reason})" for f in self.features if f.drifted
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "verdict": self.verdict,
            "summary": self.summary(),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted_features": self.drifted_features,
            "thresholds": asdict(self.thresholds),
            "features": [asdict(f) for f in self.features],
            "unlogged": list(self.unlogged),
        }


def reference_features(lake: Lake, spec: ModelSpec) -> pd.DataFrame:
    """The model's training features: its labelled rows, one column per feature of ``spec``."""
    return load_training_set(lake, spec).frame[list(spec.features)]


def logged_features(spec: ModelSpec, log_columns: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The model's features the prediction log carries (measured), and those it does not (listed)."""
    columns = set(log_columns)
    return tuple(f for f in spec.features if f in columns), tuple(f for f in spec.features if f not in columns)


def drift_against_training(
    current: pd.DataFrame, lake: Lake, spec: ModelSpec, thresholds: DriftThresholds = DriftThresholds()
) -> DriftReport:
    """Drift of ``current`` (the model's rows of the prediction log) against its training rows in ``lake``.

    Before anything was served or trained there is nothing to compare: no predictions and no
    training rows give an ``insufficient_data`` report rather than an error.
    """
    measured, unlogged = logged_features(spec, current.columns)
    try:
        reference = reference_features(lake, spec)
    except FileNotFoundError:
        if len(current):
            raise
        reference = pd.DataFrame(columns=list(spec.features))
    report = feature_drift(reference, current, thresholds, features=measured, kinds=feature_specs(spec))
    return replace(report, model=spec.name, unlogged=unlogged)


def population_stability_index(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI of two histograms over the same bins."""
    r = np.clip(reference_counts / max(reference_counts.sum(), 1), EMPTY_BIN_SHARE, None)
    c = np.clip(current_counts / max(current_counts.sum(), 1), EMPTY_BIN_SHARE, None)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_bins(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (repeated edges merged: discrete features)."""
    values = reference[~np.isnan(reference)]
    if values.size == 0:
        return np.array([])
    # Observed values as edges (not interpolated ones), so a discrete feature gets clean bins.
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf"))


def _numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin (…, e0], (e0, e1], …, (e_last, …) and a last bin for missing values."""
    missing = np.isnan(values)
    codes = np.where(missing, edges.size + 1, np.searchsorted(edges, values, side="left"))
    return np.bincount(codes, minlength=edges.size + 2).astype(float)


def _labels(series: pd.Series) -> pd.Series:
    return series.astype("object").where(series.notna(), MISSING).astype(str)


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: DriftThresholds = DriftThresholds(),
    *,
    features: Sequence[str] = FEATURE_NAMES,
    kinds: Mapping[str, FeatureSpec] = FEATURE_SPEC_BY_NAME,
) -> DriftReport:
    """PSI and KS of every feature of ``features`` (by default the sample features), and the verdict.

    ``kinds`` says which features are categorical; a feature it does not know is read from its
    reference dtype (numbers numeric, anything else categorical).
    """
    measured = [_one_feature(name, reference[name], current[name], thresholds, kinds.get(name)) for name in features]
    rows = [row for row, _ in measured]
    if len(current) < thresholds.min_rows:
        verdict: Verdict = "insufficient_data"
    else:
        verdict = "drift" if any(r.drifted for r in rows) else "no_drift"
    return DriftReport(tuple(rows), thresholds, len(reference), len(current), verdict, histograms=tuple(h for _, h in measured))


def _bin_names(edges: np.ndarray) -> tuple[str, ...]:
    """Names of the numeric bins of :func:`_numeric_counts`: (…, e0], (e0, e1], …, (e_last, …), missing."""
    if edges.size == 0:
        return ("all", MISSING)
    inner = [f"{lo:.3g}–{hi:.3g}" for lo, hi in zip(edges[:-1], edges[1:])]
    return (f"≤{edges[0]:.3g}", *inner, f">{edges[-1]:.3g}", MISSING)


def _one_feature(
    name: str, reference: pd.Series, current: pd.Series, t: DriftThresholds, spec: FeatureSpec | None
) -> tuple[FeatureDrift, FeatureHistogram]:
    numeric = pd.api.types.is_numeric_dtype(reference) and not isinstance(reference.dtype, pd.CategoricalDtype)
    kind = spec.kind if spec is not None else "numeric" if numeric else "categorical"
    ks_statistic = ks_pvalue = None
    if kind == "categorical":
        ref, cur = _labels(reference), _labels(current)
        categories = list(dict.fromkeys([*((spec.categories if spec else None) or ()), *ref.unique(), *cur.unique()]))
        ref_counts = ref.value_counts().reindex(categories, fill_value=0).to_numpy(float)
        cur_counts = cur.value_counts().reindex(categories, fill_value=0).to_numpy(float)
        bins = tuple(str(c) for c in categories)
        ref_missing = float((ref == MISSING).mean()) if len(ref) else 0.0
        cur_missing = float((cur == MISSING).mean()) if len(cur) else 0.0
    else:
        ref_values = pd.to_numeric(reference, errors="coerce").to_numpy(float)
        cur_values = pd.to_numeric(current, errors="coerce").to_numpy(float)
        edges = numeric_bins(ref_values, t.bins)
        ref_counts, cur_counts = _numeric_counts(ref_values, edges), _numeric_counts(cur_values, edges)
        bins = _bin_names(edges)
        ref_known, cur_known = ref_values[~np.isnan(ref_values)], cur_values[~np.isnan(cur_values)]
        if ref_known.size and cur_known.size:
            test = stats.ks_2samp(ref_known, cur_known)
            ks_statistic, ks_pvalue = float(test.statistic), float(test.pvalue)
        ref_missing = float(np.isnan(ref_values).mean()) if ref_values.size else 0.0
        cur_missing = float(np.isnan(cur_values).mean()) if cur_values.size else 0.0
    psi = population_stability_index(ref_counts, cur_counts)
    histogram = FeatureHistogram(name, bins, tuple(ref_counts.tolist()), tuple(cur_counts.tolist()))

    reasons = []
    if len(current) and psi >= t.psi:
        reasons.append(f"PSI {psi:.3f} >= {t.psi}")
    if ks_statistic is not None and ks_statistic >= t.ks_statistic and ks_pvalue is not None and ks_pvalue < t.ks_alpha:
        reasons.append(f"KS D {ks_statistic:.3f} >= {t.ks_statistic}, p {ks_pvalue:.2g} < {t.ks_alpha}")
    judged = name not in t.not_judged
    drift = FeatureDrift(
        feature=name,
        kind=kind,
        reference_rows=len(reference),
        current_rows=len(current),
        reference_missing=round(float(ref_missing), 6),
        current_missing=round(float(cur_missing), 6),
        psi=round(psi, 6),
        ks_statistic=ks_statistic,
        ks_pvalue=ks_pvalue,
        drifted=judged and bool(reasons),
        reason=("; ".join(reasons) or "within thresholds") + ("" if judged else " (not judged: grows with the history)"),
    )
    return drift, histogram
