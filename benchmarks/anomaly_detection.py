"""Anomaly detection benchmark: recall per injected kind and false alarms, on generated labs and a public table.

For each seed: a year of generated samples (tracseq_dagster.generator), anomalies of every kind of
tracseq_dagster.operations.anomaly_injection injected into the last ``--new-days`` days, features
computed as the sample_features asset does (compute_features, as_of=None), freezer days as
freezer_history.freezer_days; the detectors are fitted on the days before and score the new
window. Recall per kind (samples: sensor glitch, impossible combination; freezer days: freezer
failing) and the false-alarm rate (flagged share of the untouched new rows / freezer days) are
summed over seeds. Detectors compared at the same false-alarm budget: the Isolation Forest of
anomaly_detection (a forest plus a per-feature envelope), the same forest alone, a per-feature rule (largest robust |z|),
and, when PyOD is installed (a benchmark-only dependency), PyOD's ECOD and HBOS, each thresholded
at the same reference quantile.

Public data: scikit-learn ships the KDD Cup '99 loader but downloads it; the one labelled anomaly
set inside an installed package is the Wisconsin breast cancer table (sklearn.datasets, no
download), used in the outlier-detection literature (ODDS "breastw"-like setting) with the
malignant class subsampled to a few percent as the anomalies. Reported as ROC AUC and recall at
the same budget.

    .venv/bin/python benchmarks/anomaly_detection.py [--seeds 5] [--rows 40000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from tracseq_dagster.features import compute_features
from tracseq_dagster.generator import DEFAULT_START, SPAN_DAYS, generate_samples
from tracseq_dagster.operations.anomaly_detection import (
    FREEZER_REFERENCE_DAYS,
    AnomalyDetector,
    freezer_day_frame,
    sample_detector_frame,
    split_reference,
)
from tracseq_dagster.operations.anomaly_injection import FREEZER_FAILING, SAMPLE_KINDS, inject_anomalies
from tracseq_dagster.operations.freezer_history import freezer_days


class RobustZ:
    """Baseline: the largest per-feature robust |z| against the reference, same threshold rule."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def fit(self, reference: pd.DataFrame) -> RobustZ:
        values = reference.to_numpy(dtype="float64")
        self.median = np.nan_to_num(np.nanmedian(values, axis=0))
        filled = np.where(np.isnan(values), self.median, values)
        mad = 1.4826 * np.median(np.abs(filled - self.median), axis=0)
        std = filled.std(axis=0)
        self.scale = np.where(mad > 0, mad, np.where(std > 0, std, 1.0))
        self.threshold = float(np.quantile(self._score(filled), 1 - self.budget))
        return self

    def _score(self, filled: np.ndarray) -> np.ndarray:
        return np.abs((filled - self.median) / self.scale).max(axis=1)

    def flags(self, rows: pd.DataFrame) -> np.ndarray:
        values = rows.to_numpy(dtype="float64")
        return self._score(np.where(np.isnan(values), self.median, values)) > self.threshold


class PyOD:
    """A PyOD detector (ECOD, HBOS) on median-imputed rows, same threshold rule; PyOD is a benchmark-only dependency."""

    def __init__(self, name: str, budget: float) -> None:
        self.name, self.budget = name, budget

    def fit(self, reference: pd.DataFrame) -> PyOD:
        from pyod.models.ecod import ECOD
        from pyod.models.hbos import HBOS

        values = reference.to_numpy(dtype="float64")
        self.median = np.nan_to_num(np.nanmedian(values, axis=0))
        self.model = {"ecod": ECOD, "hbos": HBOS}[self.name]().fit(np.where(np.isnan(values), self.median, values))
        self.threshold = float(np.quantile(self.model.decision_scores_, 1 - self.budget))
        return self

    def flags(self, rows: pd.DataFrame) -> np.ndarray:
        values = rows.to_numpy(dtype="float64")
        return self.model.decision_function(np.where(np.isnan(values), self.median, values)) > self.threshold


class ForestOnly:
    """The Isolation Forest of AnomalyDetector without its envelope, thresholded at the whole budget."""

    def __init__(self, budget: float, seed: int) -> None:
        self.budget, self.seed = budget, seed

    def fit(self, reference: pd.DataFrame) -> ForestOnly:
        values = reference.to_numpy(dtype="float64")
        self.median = np.nan_to_num(np.nanmedian(values, axis=0))
        filled = np.where(np.isnan(values), self.median, values)
        self.forest = IsolationForest(n_estimators=200, max_samples=min(512, len(filled)), random_state=self.seed).fit(filled)
        self.threshold = float(np.quantile(-self.forest.score_samples(filled), 1 - self.budget))
        return self

    def flags(self, rows: pd.DataFrame) -> np.ndarray:
        values = rows.to_numpy(dtype="float64")
        return -self.forest.score_samples(np.where(np.isnan(values), self.median, values)) > self.threshold


def _pyod_available() -> bool:
    try:
        import pyod  # noqa: F401
    except ImportError:
        return False
    return True


def if_flags(reference: pd.DataFrame, rows: pd.DataFrame, budget: float, seed: int) -> tuple[np.ndarray, float, float]:
    started = time.process_time()
    detector = AnomalyDetector(false_alarm_budget=budget, seed=seed).fit(reference)
    fitted = time.process_time()
    flags = detector.score(rows).is_anomaly
    return flags, fitted - started, time.process_time() - fitted


def one_seed(seed: int, rows: int, new_days: float, budget: float, share: float) -> dict[str, dict[str, list[int]]]:
    """Counts (hits, total) per detector and kind for one generated lab."""
    samples = generate_samples(rows, seed=seed)
    # The generator's last collection day; the few later receipts are couriers held up, judged too.
    since = DEFAULT_START + pd.Timedelta(days=SPAN_DAYS - new_days)
    injected = inject_anomalies(samples, since=since, share=share, failing_freezers=2, failing_days=5, seed=seed)
    features = compute_features(injected.samples, injected.samples, as_of=None)
    table = (
        injected.samples[["sample_id", "received_ts"]]
        .assign(kind=injected.sample_kind.to_numpy())
        .merge(features.reset_index(), on="sample_id")
    )
    reference, new = split_reference(table, "received_ts", since)
    days = freezer_days(injected.samples)
    days = days[days["day"] < DEFAULT_START + pd.Timedelta(days=SPAN_DAYS)]  # courier stragglers' days: a handful of rows
    day_ref, day_new = split_reference(days, "day", since)
    day_ref = day_ref[day_ref["day"] >= since - pd.Timedelta(days=FREEZER_REFERENCE_DAYS)]  # as score_freezer_days
    failing = set(zip(injected.failing_days["freezer_id"], injected.failing_days["day"], strict=True))
    day_truth = np.array([(f, d) in failing for f, d in zip(day_new["freezer_id"], day_new["day"], strict=True)])
    # Days that hold an injected sample (received or closed that day: a glitching probe, the failing
    # freezer's records closed after its failure) are not normal days either: left out of the false
    # alarms and counted apart.
    touched_rows = injected.samples[injected.sample_kind.notna().to_numpy()]
    unit = touched_rows["storage_location"].astype(str).str.split("/").str[0]
    touched = {
        (f, d)
        for column in ("received_ts", "extraction_ts")
        for f, d in zip(unit, pd.to_datetime(touched_rows[column], utc=True).dt.floor("D"), strict=True)
        if pd.notna(d)
    }
    day_touched = np.array([(f, d) in touched for f, d in zip(day_new["freezer_id"], day_new["day"], strict=True)]) & ~day_truth

    counts: dict[str, dict[str, list[int]]] = {}
    kind = new["kind"].fillna("normal").to_numpy()
    names = ["isolation_forest", "forest_only", "robust_z", *(["pyod_ecod", "pyod_hbos"] if _pyod_available() else [])]
    for name in names:
        if name == "isolation_forest":
            flags, fit_s, score_s = if_flags(sample_detector_frame(reference), sample_detector_frame(new), budget, seed)
            day_flags, _, _ = if_flags(freezer_day_frame(day_ref), freezer_day_frame(day_new), budget, seed)
            counts.setdefault("_cpu", {})["sample_fit_s"] = [fit_s]
            counts["_cpu"]["sample_score_s"] = [score_s]
            counts["_cpu"]["reference_rows"] = [len(reference)]
            counts["_cpu"]["scored_rows"] = [len(new)]
        else:
            makers = {"robust_z": lambda: RobustZ(budget), "forest_only": lambda: ForestOnly(budget, seed)}
            make = makers.get(name, lambda: PyOD(name.removeprefix("pyod_"), budget))
            flags = make().fit(sample_detector_frame(reference)).flags(sample_detector_frame(new))
            day_flags = make().fit(freezer_day_frame(day_ref)).flags(freezer_day_frame(day_new))
        result = {k: [int(flags[kind == k].sum()), int((kind == k).sum())] for k in SAMPLE_KINDS}
        result["false_alarm_samples"] = [int(flags[kind == "normal"].sum()), int((kind == "normal").sum())]
        result[FREEZER_FAILING] = [int(day_flags[day_truth].sum()), int(day_truth.sum())]
        normal_days = ~day_truth & ~day_touched
        result["false_alarm_freezer_days"] = [int(day_flags[normal_days].sum()), int(normal_days.sum())]
        result["flagged_days_with_injected_samples"] = [int(day_flags[day_touched].sum()), int(day_touched.sum())]
        counts[name] = result
    return counts


def public_table(budget: float, seed: int) -> dict[str, float]:
    """Breast cancer (sklearn, shipped): benign rows normal, ~4 % malignant rows the anomalies."""
    data = load_breast_cancer(as_frame=True)
    rng = np.random.default_rng(seed)
    frame, label = data.data, (data.target == 0).to_numpy()  # 0 = malignant
    benign = np.flatnonzero(~label)
    malignant = rng.choice(np.flatnonzero(label), size=int(0.04 * len(benign)), replace=False)
    benign = rng.permutation(benign)
    reference_rows, test_benign = benign[: len(benign) // 2], benign[len(benign) // 2 :]
    test = np.concatenate([test_benign, malignant])
    truth = np.concatenate([np.zeros(len(test_benign), bool), np.ones(len(malignant), bool)])
    detector = AnomalyDetector(false_alarm_budget=budget, seed=seed).fit(frame.iloc[reference_rows])
    scores = detector.score(frame.iloc[test])
    return {
        "roc_auc": float(roc_auc_score(truth, scores.score)),
        "recall": float(scores.is_anomaly[truth].mean()),
        "false_alarm_rate": float(scores.is_anomaly[~truth].mean()),
        "anomalies": int(truth.sum()),
        "normal": int((~truth).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--new-days", type=float, default=7.0)
    parser.add_argument("--budget", type=float, default=0.01)
    parser.add_argument("--share", type=float, default=0.05)
    args = parser.parse_args()
    total: dict[str, dict[str, list[int | float]]] = {}
    for seed in range(args.seeds):
        for name, result in one_seed(seed, args.rows, args.new_days, args.budget, args.share).items():
            for key, (hit, *n) in result.items():
                slot = total.setdefault(name, {}).setdefault(key, [0, 0])
                slot[0] += hit
                if n:
                    slot[1] += n[0]
    report: dict[str, object] = {"settings": vars(args)}
    for name, result in total.items():
        if name == "_cpu":
            report["cpu_s_per_seed"] = {k: round(v[0] / args.seeds, 3) for k, v in result.items()}
            continue
        report[name] = {k: {"rate": round(hit / n, 4) if n else None, "hits": hit, "of": n} for k, (hit, n) in result.items()}
        kinds = [*SAMPLE_KINDS, FREEZER_FAILING]
        hits, n = sum(result[k][0] for k in kinds), sum(result[k][1] for k in kinds)
        report[name]["recall_overall"] = round(hits / n, 4)
    splits = [public_table(args.budget, seed) for seed in range(10)]
    report["breast_cancer_public_10_splits"] = {
        "roc_auc_mean": round(float(np.mean([r["roc_auc"] for r in splits])), 4),
        "recall_mean": round(float(np.mean([r["recall"] for r in splits])), 4),
        "false_alarm_rate_mean": round(float(np.mean([r["false_alarm_rate"] for r in splits])), 4),
        "anomalies_per_split": splits[0]["anomalies"],
        "normal_per_split": splits[0]["normal"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
