"""The A/B report: how ``champion`` and ``challenger`` answered the traffic they were given.

From the prediction log of a window:

* **Volumes and scores** per variant: predictions, distinct samples, model versions, quantiles
  and a histogram of ``quality_probability`` (P(qc_status == "pass")), the category mix, latency.
* **Agreement**: every logged feature vector (one per sample, the latest) re-scored by *both*
  registered versions, whichever variant answered it, so the two models are compared on the
  same inputs: share of equal categories and of equal predicted statuses, correlation of the
  two P(pass), and the category cross-table.
* **Metrics where QC labels arrived later** (joined on ``sample_id`` with the lake's validated
  samples): per variant, ROC AUC of ``quality_probability`` against ``qc_status == "pass"``,
  accuracy of ``predicted_status`` and the Brier score, each with a bootstrap percentile
  confidence interval, and the challenger-minus-champion difference with its interval. On the
  re-scored vectors the same labels give a paired comparison of the two models. Below
  ``min_labels`` labelled predictions a metric is not computed and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from tracseq_dagster.features import FEATURE_NAMES, LABEL_COLUMN, SAMPLE_ID
from tracseq_dagster.lake import Lake
from tracseq_dagster.registry import CHALLENGER, CHAMPION, ModelRegistry
from tracseq_dagster.tracking import fluent_api
from tracseq_dagster.serving.advice import HIGH_THRESHOLD, MEDIUM_THRESHOLD

PASS = "pass"
VARIANTS: tuple[str, ...] = (CHAMPION, CHALLENGER)
CATEGORIES: tuple[str, ...] = ("high", "medium", "low")
SCORE_BINS = np.linspace(0.0, 1.0, 11)


@dataclass(frozen=True)
class CategoryThresholds:
    """P(pass) cut-offs of the categories: the service's (``serving.advice``) unless overridden."""

    high: float = HIGH_THRESHOLD  # P(pass) >= high → "high"
    medium: float = MEDIUM_THRESHOLD  # medium <= P(pass) < high → "medium"; below → "low"

    def categorize(self, probability: np.ndarray) -> np.ndarray:
        return np.where(probability >= self.high, "high", np.where(probability >= self.medium, "medium", "low"))


@dataclass(frozen=True)
class ABSettings:
    """How much evidence a metric needs, and how its interval is drawn."""

    min_labels: int = 30
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    thresholds: CategoryThresholds = field(default_factory=CategoryThresholds)


@dataclass(frozen=True)
class ScoringModel:
    """A registered version, loaded (a scikit-learn classifier over ``FEATURE_NAMES``)."""

    version: str
    model: Any

    def pass_probability(self, features: pd.DataFrame) -> np.ndarray:
        classes = list(self.model.classes_)
        return self.model.predict_proba(features[list(FEATURE_NAMES)])[:, classes.index(PASS)]

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(features[list(FEATURE_NAMES)])).astype(str)


@dataclass(frozen=True)
class ABReport:
    """Everything the ``ab_test_report`` asset writes; tables as frames, the rest as plain values."""

    rows: int
    variants: pd.DataFrame
    score_histogram: pd.DataFrame
    labelled: pd.DataFrame
    differences: pd.DataFrame
    agreement: dict[str, Any] | None
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return frame.astype(object).where(frame.notna(), None).to_dict("records")

        return {
            "rows": self.rows,
            "variants": records(self.variants),
            "score_histogram": records(self.score_histogram),
            "labelled": records(self.labelled),
            "differences": records(self.differences),
            "agreement": self.agreement,
            "notes": self.notes,
        }


# -- inputs -----------------------------------------------------------------------------------


def labels_from_lake(lake: Lake) -> pd.Series:
    """``qc_status`` by ``sample_id`` of every validated sample that has one (the first export wins)."""
    frame = lake.read_validated(columns=[SAMPLE_ID, LABEL_COLUMN])
    if frame.empty:
        return pd.Series(dtype="string", name=LABEL_COLUMN)
    frame = frame.dropna(subset=[LABEL_COLUMN]).drop_duplicates(SAMPLE_ID, keep="first")
    return frame.set_index(SAMPLE_ID)[LABEL_COLUMN].astype("string")


def load_version(registry: ModelRegistry, version: str) -> ScoringModel:
    """A registered version of the model, loaded through MLflow's sklearn flavour."""
    with fluent_api(registry.client):
        return ScoringModel(str(version), mlflow.sklearn.load_model(registry.model_uri(str(version))))


def versions_to_compare(log: pd.DataFrame, registry: ModelRegistry) -> dict[str, str]:
    """Per variant, the version that answered last in the log, else the one holding the alias now."""
    out = {}
    for variant in VARIANTS:
        answered = log.loc[log["variant"] == variant, "model_version"].dropna()
        if len(answered):
            out[variant] = str(answered.iloc[-1])
        elif (version := registry.version(variant)) is not None:
            out[variant] = str(version.version)
    return out


# -- the report -------------------------------------------------------------------------------


def ab_test_report(
    log: pd.DataFrame,
    labels: pd.Series,
    models: dict[str, ScoringModel] | None = None,
    settings: ABSettings = ABSettings(),
) -> ABReport:
    """The report over ``log`` (rows of the prediction log), with labels by ``sample_id``."""
    notes: list[str] = []
    if log.empty:
        notes.append("no predictions in the window")
    labelled, differences = labelled_metrics(log, labels, settings, notes)
    agreement = None
    if models and set(models) >= set(VARIANTS) and not log.empty:
        agreement = model_agreement(log, labels, models[CHAMPION], models[CHALLENGER], settings, notes)
    elif not log.empty:
        notes.append("agreement not computed: the registry has no champion and challenger to re-score with")
    return ABReport(len(log), variant_summary(log), score_histogram(log), labelled, differences, agreement, notes)


def variant_summary(log: pd.DataFrame) -> pd.DataFrame:
    """Per variant: volume, versions, score quantiles, category mix, latency."""
    rows = []
    for variant, part in log.groupby("variant", sort=True):
        scores = part["quality_probability"].astype(float)
        row: dict[str, Any] = {
            "variant": variant,
            "predictions": len(part),
            "share": round(len(part) / len(log), 4),
            "samples": part[SAMPLE_ID].nunique(),
            "model_versions": ",".join(sorted(part["model_version"].dropna().astype(str).unique())),
            "mean_p_pass": scores.mean(),
        }
        row.update({f"p_pass_q{int(q * 100):02d}": scores.quantile(q) for q in (0.1, 0.25, 0.5, 0.75, 0.9)})
        mix = part["category"].astype(str).value_counts(normalize=True)
        row.update({f"share_{c}": float(mix.get(c, 0.0)) for c in CATEGORIES})
        row["latency_ms_p50"] = part["latency_ms"].quantile(0.5)
        row["latency_ms_p99"] = part["latency_ms"].quantile(0.99)
        rows.append(row)
    return pd.DataFrame(rows)


def score_histogram(log: pd.DataFrame) -> pd.DataFrame:
    """Predictions per tenth of P(pass), one column per variant."""
    labels = [f"{lo:.1f}-{hi:.1f}" for lo, hi in zip(SCORE_BINS[:-1], SCORE_BINS[1:])]
    out = pd.DataFrame({"p_pass": labels})
    for variant, part in log.groupby("variant", sort=True):
        counts, _ = np.histogram(part["quality_probability"].astype(float).dropna(), bins=SCORE_BINS)
        out[variant] = counts
    return out


# -- metrics on labels ------------------------------------------------------------------------


Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def _auc(is_pass: np.ndarray, score: np.ndarray, _: np.ndarray) -> float:
    return float(roc_auc_score(is_pass, score)) if 0 < is_pass.sum() < is_pass.size else float("nan")


def _accuracy(_: np.ndarray, __: np.ndarray, correct: np.ndarray) -> float:
    return float(correct.mean())


def _brier(is_pass: np.ndarray, score: np.ndarray, _: np.ndarray) -> float:
    return float(np.mean((score - is_pass) ** 2))


METRICS: dict[str, Metric] = {"roc_auc": _auc, "accuracy": _accuracy, "brier": _brier}


def bootstrap(
    metric: Metric, is_pass: np.ndarray, score: np.ndarray, correct: np.ndarray, settings: ABSettings
) -> np.ndarray:
    """The metric on ``settings.bootstrap`` resamples with replacement (NaN where undefined)."""
    rng = np.random.default_rng(settings.seed)
    out = np.empty(settings.bootstrap)
    for b in range(settings.bootstrap):
        pick = rng.integers(0, is_pass.size, is_pass.size)
        out[b] = metric(is_pass[pick], score[pick], correct[pick])
    return out


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    values = replicates[~np.isnan(replicates)]
    if values.size < 0.9 * replicates.size:  # too many resamples without both classes
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def labelled_metrics(
    log: pd.DataFrame, labels: pd.Series, settings: ABSettings, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per variant metrics with intervals, and challenger − champion differences with intervals.

    A sample predicted several times counts once per variant (its latest prediction).
    """
    rows, replicates = [], {}
    latest = log.drop_duplicates(["variant", SAMPLE_ID], keep="last")
    joined = latest.join(labels.rename(LABEL_COLUMN), on=SAMPLE_ID, how="inner")
    for variant in sorted(log["variant"].dropna().unique()):
        part = joined[joined["variant"] == variant]
        row: dict[str, Any] = {"variant": variant, "labelled": len(part)}
        if len(part) < settings.min_labels:
            notes.append(f"{variant}: too few labels for metrics ({len(part)} labelled predictions, need {settings.min_labels})")
            rows.append(row)
            continue
        is_pass = (part[LABEL_COLUMN].astype(str) == PASS).to_numpy(float)
        score = part["quality_probability"].to_numpy(float)
        correct = (part["predicted_status"].astype(str) == part[LABEL_COLUMN].astype(str)).to_numpy(float)
        row["pass_rate"] = float(is_pass.mean())
        for name, metric in METRICS.items():
            row[name] = metric(is_pass, score, correct)
            replicates[(variant, name)] = bootstrap(metric, is_pass, score, correct, settings)
            row[f"{name}_low"], row[f"{name}_high"] = _interval(replicates[(variant, name)], settings.confidence)
        if np.isnan(row["roc_auc"]):
            notes.append(f"{variant}: ROC AUC undefined, every labelled sample has the same outcome")
        rows.append(row)
    differences = []
    for name in METRICS:
        if (CHAMPION, name) in replicates and (CHALLENGER, name) in replicates:
            diff = replicates[(CHALLENGER, name)] - replicates[(CHAMPION, name)]
            low, high = _interval(diff, settings.confidence)
            estimate = next(r[name] for r in rows if r["variant"] == CHALLENGER) - next(r[name] for r in rows if r["variant"] == CHAMPION)
            differences.append({"metric": name, "challenger_minus_champion": estimate, "low": low, "high": high,
                                "significant": low is not None and high is not None and (low > 0 or high < 0)})
    return pd.DataFrame(rows), pd.DataFrame(differences)


# -- agreement --------------------------------------------------------------------------------


def model_agreement(
    log: pd.DataFrame,
    labels: pd.Series,
    champion: ScoringModel,
    challenger: ScoringModel,
    settings: ABSettings,
    notes: list[str],
) -> dict[str, Any]:
    """Both versions on the same logged feature vectors (the latest per sample)."""
    vectors = log.drop_duplicates(SAMPLE_ID, keep="last").reset_index(drop=True)
    p_champion, p_challenger = champion.pass_probability(vectors), challenger.pass_probability(vectors)
    c_champion, c_challenger = settings.thresholds.categorize(p_champion), settings.thresholds.categorize(p_challenger)
    s_champion, s_challenger = champion.predict(vectors), challenger.predict(vectors)
    crosstab = pd.crosstab(pd.Categorical(c_champion, CATEGORIES), pd.Categorical(c_challenger, CATEGORIES), dropna=False)
    result: dict[str, Any] = {
        "champion_version": champion.version,
        "challenger_version": challenger.version,
        "samples": len(vectors),
        "category_agreement": float(np.mean(c_champion == c_challenger)),
        "status_agreement": float(np.mean(s_champion == s_challenger)),
        "score_pearson": _correlation(p_champion, p_challenger, "pearson"),
        "score_spearman": _correlation(p_champion, p_challenger, "spearman"),
        "mean_abs_score_difference": float(np.mean(np.abs(p_champion - p_challenger))),
        "category_crosstab": {f"champion_{i}": {f"challenger_{j}": int(crosstab.loc[i, j]) for j in CATEGORIES} for i in CATEGORIES},
    }
    if champion.version == challenger.version:
        notes.append(f"champion and challenger are the same version ({champion.version}): agreement is trivially complete")
    # The same labelled samples scored by both models: a paired comparison, free of traffic-split noise.
    label = vectors[SAMPLE_ID].map(labels)
    known = label.notna().to_numpy()
    if known.sum() >= settings.min_labels:
        is_pass = (label[known].astype(str) == PASS).to_numpy(float)
        paired = {}
        for name, p, s in (("champion", p_champion, s_champion), ("challenger", p_challenger, s_challenger)):
            correct = (s[known] == label[known].astype(str).to_numpy()).astype(float)
            paired[name] = {m: METRICS[m](is_pass, p[known], correct) for m in ("roc_auc", "accuracy")}
        both = np.column_stack([p_champion[known], p_challenger[known]])
        diff = bootstrap(_auc_gain, is_pass, both, is_pass, settings)
        low, high = _interval(diff, settings.confidence)
        result["paired_on_labelled"] = {"samples": int(known.sum()), **paired,
                                        "roc_auc_difference": paired["challenger"]["roc_auc"] - paired["champion"]["roc_auc"],
                                        "roc_auc_difference_low": low, "roc_auc_difference_high": high}
    else:
        notes.append(f"paired comparison not computed: {int(known.sum())} re-scored samples have labels, need {settings.min_labels}")
    return result


def _auc_gain(is_pass: np.ndarray, both: np.ndarray, _: np.ndarray) -> float:
    """ROC AUC of the second score column minus that of the first (challenger − champion)."""
    return _auc(is_pass, both[:, 1], _) - _auc(is_pass, both[:, 0], _)


def _correlation(a: np.ndarray, b: np.ndarray, method: str) -> float | None:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(pd.Series(a).corr(pd.Series(b), method=method))


def report_tables(report: ABReport) -> dict[str, pd.DataFrame]:
    """The report's tables by name (written as Parquet beside the JSON)."""
    return {"variants": report.variants, "score_histogram": report.score_histogram,
            "labelled": report.labelled, "differences": report.differences}

