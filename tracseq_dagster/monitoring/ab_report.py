"""The A/B report of one catalog model: how ``champion`` and ``challenger`` answered the traffic they were given.

From the model's rows of the prediction log in a window:

* **Volumes and answers** per variant: predictions, distinct samples, model versions, quantiles
  and a histogram of the answered value (P(target class) of a classifier, a regressor's
  prediction), a classifier's category mix, latency.
* **Agreement**: every logged feature vector (one per entity, the latest) re-scored by *both*
  registered versions, whichever variant answered it, so the two models are compared on the
  same inputs: for a classifier the share of equal categories and of equal predicted classes
  and the category cross-table, for both tasks the correlation of the two answers. The log
  carries every feature of every catalog model; should a model's feature have no column (a
  model added after the log was opened), the report says which instead.
* **Metrics where labels arrived later**, joined with the model's own labelled rows
  (``spec.labelled_rows``) on the entity key every log row carries (:data:`LOG_KEY`, spelled as
  ``labelled_rows`` spells its index, so a sample sequenced twice joins each run's label):
  per variant, a classifier's ROC AUC of P(target class), accuracy of the predicted class and
  Brier score; a regressor's MAE, RMSE and the coverage of its split-conformal interval (the
  half-width its registered version was measured with); each with a bootstrap percentile
  confidence interval, and the challenger-minus-champion difference with its interval. On the
  re-scored vectors the same labels give a paired comparison of the two models. Below
  ``min_labels`` labelled predictions a metric is not computed and the report says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

from tracseq_dagster.conformal import INTERVAL_HALF_WIDTH_TAG
from tracseq_dagster.features import SAMPLE_ID
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import ModelSpec
from tracseq_dagster.monitoring.drift import logged_features
from tracseq_dagster.registry import CHALLENGER, CHAMPION, ModelRegistry
from tracseq_dagster.serving.prediction_log import ENTITY_KEY_COLUMN
from tracseq_dagster.tracking import fluent_api

VARIANTS: tuple[str, ...] = (CHAMPION, CHALLENGER)
SCORE_BINS = np.linspace(0.0, 1.0, 11)
#: The column of the log rows that labels are joined on: the model's entity key, as the index
#: of its ``labelled_rows`` spells it ("RUN-…/TS-…", or the ``sample_id``).
LOG_KEY = ENTITY_KEY_COLUMN


def is_regression(spec: ModelSpec) -> bool:
    return spec.task == "regression"


@dataclass(frozen=True)
class ABSettings:
    """How much evidence a metric needs, and how its interval is drawn."""

    min_labels: int = 30
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class ScoringModel:
    """A registered version of a catalog model, loaded (a scikit-learn estimator over its features)."""

    version: str
    model: Any
    spec: ModelSpec
    half_width: float | None = None  # a regressor's split-conformal half-width (its version's tag)

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """P(target class) of a classifier, the prediction of a regressor."""
        frame = features[list(self.spec.features)]
        if is_regression(self.spec):
            return np.asarray(self.model.predict(frame), dtype=float)
        classes = [str(c) for c in self.model.classes_]
        return self.model.predict_proba(frame)[:, classes.index(self.spec.serving.target_class)]

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(features[list(self.spec.features)])).astype(str)


@dataclass(frozen=True)
class ABReport:
    """Everything the ``ab_test_report`` asset writes; tables as frames, the rest as plain values."""

    model: str
    task: str
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
            "model": self.model,
            "task": self.task,
            "rows": self.rows,
            "variants": records(self.variants),
            "score_histogram": records(self.score_histogram),
            "labelled": records(self.labelled),
            "differences": records(self.differences),
            "agreement": self.agreement,
            "notes": self.notes,
        }


# -- inputs -----------------------------------------------------------------------------------


def outcomes(lake: Lake, spec: ModelSpec) -> tuple[pd.Series, list[str]]:
    """The model's labels by :data:`LOG_KEY` (its ``labelled_rows`` index, the key the log rows
    carry), and notes on what could not be read. Every labelled row joins, a sample sequenced
    more than once included: each run of it has its own key."""
    empty = pd.Series(dtype="float64" if is_regression(spec) else "string", name=spec.label)
    try:
        labels = spec.labelled_rows(lake)[spec.label].dropna()
    except FileNotFoundError:
        return empty, [f"{spec.name}: no labelled rows in the lake yet"]
    labels = labels.set_axis(pd.Index(labels.index.astype(str), name=LOG_KEY))
    return (labels.astype(float) if is_regression(spec) else labels.astype(str).astype("string")), []


def load_version(registry: ModelRegistry, version: str, spec: ModelSpec) -> ScoringModel:
    """A registered version of the model, loaded through MLflow's sklearn flavour, with its interval."""
    with fluent_api(registry.client):
        model = mlflow.sklearn.load_model(registry.model_uri(str(version)))
        tags = registry.client.get_model_version(registry.name, str(version)).tags
    half_width = float(tags[INTERVAL_HALF_WIDTH_TAG]) if INTERVAL_HALF_WIDTH_TAG in tags else None
    return ScoringModel(str(version), model, spec, half_width)


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


def answered(log: pd.DataFrame) -> pd.Series:
    """The answered value of each row: ``prediction``, or ``quality_probability`` in rows logged before it existed."""
    return log["prediction"].astype(float).fillna(log["quality_probability"].astype(float))


# -- the report -------------------------------------------------------------------------------


def ab_test_report(
    log: pd.DataFrame,
    labels: pd.Series,
    spec: ModelSpec,
    models: dict[str, ScoringModel] | None = None,
    settings: ABSettings = ABSettings(),
) -> ABReport:
    """The report over ``log`` (the model's rows of the prediction log), with labels by :data:`LOG_KEY`."""
    notes: list[str] = []
    if log.empty:
        notes.append("no predictions in the window")
    labelled, differences = labelled_metrics(log, labels, spec, models or {}, settings, notes)
    agreement = None
    unlogged = logged_features(spec, log.columns)[1]
    if log.empty:
        pass
    elif unlogged:
        notes.append(f"agreement not computed: the prediction log does not carry {len(unlogged)} of the model's features "
                     f"({', '.join(unlogged)}), so the versions cannot re-score the logged requests")  # fmt: skip
    elif models and set(models) >= set(VARIANTS):
        agreement = model_agreement(log, labels, spec, models[CHAMPION], models[CHALLENGER], settings, notes)
    else:
        notes.append("agreement not computed: the registry has no champion and challenger to re-score with")
    return ABReport(spec.name, "regression" if is_regression(spec) else "classification", len(log),
                    variant_summary(log, spec), score_histogram(log, spec), labelled, differences, agreement, notes)  # fmt: skip


def variant_summary(log: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Per variant: volume, versions, answer quantiles, a classifier's category mix, latency."""
    rows = []
    value = "prediction" if is_regression(spec) else f"p_{spec.serving.target_class}"
    scores_of = answered(log)
    for variant, part in log.groupby("variant", sort=True):
        scores = scores_of.loc[part.index]
        row: dict[str, Any] = {
            "variant": variant,
            "predictions": len(part),
            "share": round(len(part) / len(log), 4),
            "samples": part[SAMPLE_ID].nunique(),
            "model_versions": ",".join(sorted(part["model_version"].dropna().astype(str).unique())),
            f"mean_{value}": scores.mean(),
        }
        row.update({f"{value}_q{int(q * 100):02d}": scores.quantile(q) for q in (0.1, 0.25, 0.5, 0.75, 0.9)})
        if not is_regression(spec):
            mix = part["category"].astype(str).value_counts(normalize=True)
            row.update({f"share_{c}": float(mix.get(c, 0.0)) for c, _ in spec.serving.categories})
        row["latency_ms_p50"] = part["latency_ms"].quantile(0.5)
        row["latency_ms_p99"] = part["latency_ms"].quantile(0.99)
        rows.append(row)
    return pd.DataFrame(rows)


def score_histogram(log: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Predictions per tenth of P(target class), or per tenth of the range of a regressor's answers; a column per variant."""
    scores = answered(log)
    bins = SCORE_BINS
    if is_regression(spec):
        known = scores.dropna()
        low, high = (float(known.min()), float(known.max())) if len(known) else (0.0, 1.0)
        bins = np.linspace(low, high if high > low else low + 1.0, 11)
    out = pd.DataFrame({"prediction" if is_regression(spec) else f"p_{spec.serving.target_class}":
                        [f"{lo:.4g}-{hi:.4g}" for lo, hi in zip(bins[:-1], bins[1:])]})  # fmt: skip
    for variant, part in log.groupby("variant", sort=True):
        counts, _ = np.histogram(scores.loc[part.index].dropna(), bins=bins)
        out[variant] = counts
    return out


# -- metrics on labels ------------------------------------------------------------------------

#: ``(outcome, answer, hit) -> value``. A classifier: outcome 1.0 where the label is the target
#: class, answer P(target class), hit 1.0 where the predicted class is the label. A regressor:
#: outcome the label, answer the prediction, hit 1.0 where the label is inside the interval.
Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def _auc(outcome: np.ndarray, score: np.ndarray, _: np.ndarray) -> float:
    return float(roc_auc_score(outcome, score)) if 0 < outcome.sum() < outcome.size else float("nan")


def _hit_rate(_: np.ndarray, __: np.ndarray, hit: np.ndarray) -> float:
    return float(hit.mean())


def _brier(outcome: np.ndarray, score: np.ndarray, _: np.ndarray) -> float:
    return float(np.mean((score - outcome) ** 2))


def _mae(outcome: np.ndarray, score: np.ndarray, _: np.ndarray) -> float:
    return float(np.mean(np.abs(score - outcome)))


def _rmse(outcome: np.ndarray, score: np.ndarray, _: np.ndarray) -> float:
    return float(np.sqrt(np.mean((score - outcome) ** 2)))


CLASSIFICATION_METRICS: dict[str, Metric] = {"roc_auc": _auc, "accuracy": _hit_rate, "brier": _brier}
REGRESSION_METRICS: dict[str, Metric] = {"mae": _mae, "rmse": _rmse, "interval_coverage": _hit_rate}
#: The metric of the paired comparison on re-scored vectors, per task.
PAIRED_METRIC = {False: "roc_auc", True: "mae"}


# The same metrics over many resamples at once (arrays of shape (resamples, rows), along the
# last axis), for ``scipy.stats.bootstrap(vectorized=True)``: the resamples then cost array
# operations instead of one scikit-learn call each (ROC AUC: 3 ms a call).
def _auc_many(outcome: np.ndarray, score: np.ndarray, _: np.ndarray) -> np.ndarray:
    """ROC AUC as the Mann-Whitney U of the positives' ranks (ties averaged, as roc_auc_score)."""
    ranks = stats.rankdata(score, axis=-1)
    positives = outcome.sum(axis=-1)
    negatives = outcome.shape[-1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * outcome).sum(axis=-1) - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


_MANY: dict[Metric, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    _auc: _auc_many,
    _hit_rate: lambda _, __, hit: hit.mean(axis=-1),
    _brier: lambda outcome, score, _: ((score - outcome) ** 2).mean(axis=-1),
    _mae: lambda outcome, score, _: np.abs(score - outcome).mean(axis=-1),
    _rmse: lambda outcome, score, _: np.sqrt(((score - outcome) ** 2).mean(axis=-1)),
}
#: Resampled values held in memory at once (rows x resamples per batch), about 16 MB a float array.
_BATCH_VALUES = 2_000_000


def bootstrap(metric: Metric, outcome: np.ndarray, score: np.ndarray, hit: np.ndarray, settings: ABSettings) -> np.ndarray:
    """The metric on ``settings.bootstrap`` resamples of the rows with replacement (NaN where undefined).

    ``scipy.stats.bootstrap`` draws the resamples (``paired``: a row's outcome, answer and hit
    stay together); its replicates are returned rather than its interval because a resample
    can leave ROC AUC undefined (one class only) and :func:`_interval` decides what to do with
    those. A 2-column ``score`` (the paired comparison) is split into columns, as scipy
    resamples along the last axis.
    """
    columns = [score] if score.ndim == 1 else list(score.T)
    many = getattr(metric, "many", None) or _MANY.get(metric)

    def statistic(o: np.ndarray, h: np.ndarray, *answers: np.ndarray, axis: int = -1) -> Any:
        answer = answers[0] if len(answers) == 1 else np.stack(answers, axis=-1)
        return metric(o, answer, h) if many is None else many(o, answer, h)

    with warnings.catch_warnings():
        # Resamples where ROC AUC is undefined are NaN on purpose: _interval judges them, not scipy.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (outcome, hit, *columns),
            statistic,
            n_resamples=settings.bootstrap,
            batch=max(1, _BATCH_VALUES // max(outcome.size, 1)),
            paired=True,
            vectorized=many is not None,
            confidence_level=settings.confidence,
            method="percentile",
            random_state=np.random.default_rng(settings.seed),
        )
    return np.asarray(result.bootstrap_distribution, dtype=float)


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    values = replicates[~np.isnan(replicates)]
    if values.size < 0.9 * replicates.size:  # too many resamples without both classes
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _outcome_and_hits(
    part: pd.DataFrame, score: np.ndarray, spec: ModelSpec, half_width: float | None
) -> tuple[np.ndarray, np.ndarray]:
    label = part[spec.label]
    if is_regression(spec):
        outcome = label.to_numpy(float)
        hit = (np.abs(outcome - score) <= half_width).astype(float) if half_width is not None else np.full(outcome.size, np.nan)
        return outcome, hit
    outcome = (label.astype(str) == spec.serving.target_class).to_numpy(float)
    return outcome, (part["predicted_status"].astype(str) == label.astype(str)).to_numpy(float)


def labelled_metrics(
    log: pd.DataFrame, labels: pd.Series, spec: ModelSpec, models: dict[str, ScoringModel], settings: ABSettings, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per variant metrics with intervals, and challenger − champion differences with intervals.

    An entity predicted several times counts once per variant (its latest prediction). A
    regressor's interval coverage needs its version's half-width (from ``models``).
    """
    regression = is_regression(spec)
    metrics = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    rows, replicates = [], {}
    latest = log.assign(_answer=answered(log)).drop_duplicates(["variant", LOG_KEY], keep="last")
    joined = latest.assign(**{spec.label: latest[LOG_KEY].map(labels)}).dropna(subset=[spec.label])
    for variant in sorted(log["variant"].dropna().unique()):
        part = joined[joined["variant"] == variant]
        row: dict[str, Any] = {"variant": variant, "labelled": len(part)}
        if len(part) < settings.min_labels:
            notes.append(f"{variant}: too few labels for metrics ({len(part)} labelled predictions, need {settings.min_labels})")
            rows.append(row)
            continue
        score = part["_answer"].to_numpy(float)
        half_width = models[variant].half_width if variant in models else None
        outcome, hit = _outcome_and_hits(part, score, spec, half_width)
        row["mean_label" if regression else f"{spec.serving.target_class}_rate"] = float(outcome.mean())
        for name, metric in metrics.items():
            if np.isnan(hit).all() and metric is _hit_rate:
                notes.append(f"{variant}: {name} not computed, the version has no interval half-width")
                continue
            row[name] = metric(outcome, score, hit)
            replicates[(variant, name)] = bootstrap(metric, outcome, score, hit, settings)
            row[f"{name}_low"], row[f"{name}_high"] = _interval(replicates[(variant, name)], settings.confidence)
        if not regression and np.isnan(row["roc_auc"]):
            notes.append(f"{variant}: ROC AUC undefined, every labelled prediction has the same outcome")
        rows.append(row)
    differences = []
    for name in metrics:
        if (CHAMPION, name) in replicates and (CHALLENGER, name) in replicates:
            diff = replicates[(CHALLENGER, name)] - replicates[(CHAMPION, name)]
            low, high = _interval(diff, settings.confidence)
            estimate = next(r[name] for r in rows if r["variant"] == CHALLENGER) - next(
                r[name] for r in rows if r["variant"] == CHAMPION
            )
            differences.append(
                {
                    "metric": name,
                    "challenger_minus_champion": estimate,
                    "low": low,
                    "high": high,
                    "significant": low is not None and high is not None and (low > 0 or high < 0),
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(differences)


# -- agreement --------------------------------------------------------------------------------


def model_agreement(
    log: pd.DataFrame,
    labels: pd.Series,
    spec: ModelSpec,
    champion: ScoringModel,
    challenger: ScoringModel,
    settings: ABSettings,
    notes: list[str],
) -> dict[str, Any]:
    """Both versions on the same logged feature vectors (the latest per entity)."""
    regression = is_regression(spec)
    vectors = log.drop_duplicates(LOG_KEY, keep="last").reset_index(drop=True)
    p_champion, p_challenger = champion.score(vectors), challenger.score(vectors)
    result: dict[str, Any] = {
        "champion_version": champion.version,
        "challenger_version": challenger.version,
        "samples": len(vectors),
        "score_pearson": _correlation(p_champion, p_challenger, "pearson"),
        "score_spearman": _correlation(p_champion, p_challenger, "spearman"),
        "mean_abs_score_difference": float(np.mean(np.abs(p_champion - p_challenger))),
    }
    s_champion = s_challenger = None
    if not regression:
        names = [name for name, _ in spec.serving.categories]
        c_champion, c_challenger = (
            np.array([spec.serving.category(p) for p in ps], dtype=object) for ps in (p_champion, p_challenger)
        )
        s_champion, s_challenger = champion.predict(vectors), challenger.predict(vectors)
        crosstab = pd.crosstab(pd.Categorical(c_champion, names), pd.Categorical(c_challenger, names), dropna=False)
        result |= {
            "category_agreement": float(np.mean(c_champion == c_challenger)),
            "status_agreement": float(np.mean(s_champion == s_challenger)),
            "category_crosstab": {f"champion_{i}": {f"challenger_{j}": int(crosstab.loc[i, j]) for j in names} for i in names},
        }
    if champion.version == challenger.version:
        notes.append(f"champion and challenger are the same version ({champion.version}): agreement is trivially complete")
    # The same labelled samples scored by both models: a paired comparison, free of traffic-split noise.
    label = vectors[LOG_KEY].map(labels)
    known = label.notna().to_numpy()
    if known.sum() < settings.min_labels:
        notes.append(
            f"paired comparison not computed: {int(known.sum())} re-scored samples have labels, need {settings.min_labels}"
        )
        return result
    name = PAIRED_METRIC[regression]
    metric = (REGRESSION_METRICS if regression else CLASSIFICATION_METRICS)[name]
    part = vectors[known].assign(**{spec.label: label[known].to_numpy()})
    paired: dict[str, dict[str, float]] = {}
    for who, p, s in (("champion", p_champion, s_champion), ("challenger", p_challenger, s_challenger)):
        outcome, hit = _outcome_and_hits(part.assign(predicted_status=s[known]) if s is not None else part, p[known], spec, None)
        paired[who] = {name: metric(outcome, p[known], hit)} | (
            {} if regression else {"accuracy": _hit_rate(outcome, p[known], hit)}
        )
    both = np.column_stack([p_champion[known], p_challenger[known]])
    low, high = _interval(bootstrap(_paired_gain(metric), outcome, both, outcome, settings), settings.confidence)
    result["paired_on_labelled"] = {"samples": int(known.sum()), **paired,
                                    f"{name}_difference": paired["challenger"][name] - paired["champion"][name],
                                    f"{name}_difference_low": low, f"{name}_difference_high": high}  # fmt: skip
    return result


def _paired_gain(metric: Metric) -> Metric:
    """The metric of the second answer column minus that of the first (challenger − champion)."""

    def gain(outcome: np.ndarray, both: np.ndarray, hit: np.ndarray) -> float:
        return metric(outcome, both[..., 1], hit) - metric(outcome, both[..., 0], hit)

    if (many := _MANY.get(metric)) is not None:  # the same over many resamples, for the bootstrap
        gain.many = lambda o, both, h: many(o, both[..., 1], h) - many(o, both[..., 0], h)  # type: ignore[attr-defined]
    return gain


def _correlation(a: np.ndarray, b: np.ndarray, method: str) -> float | None:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(pd.Series(a).corr(pd.Series(b), method=method))


def report_tables(report: ABReport) -> dict[str, pd.DataFrame]:
    """The report's tables by name (written as Parquet beside the JSON)."""
    return {
        "variants": report.variants,
        "score_histogram": report.score_histogram,
        "labelled": report.labelled,
        "differences": report.differences,
    }
