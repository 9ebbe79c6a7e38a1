"""The A/B report's bootstrap: the hand-written resampling loop it had against ``scipy.stats.bootstrap`` it uses now.

Same data, same number of resamples, same percentile intervals; prints per metric both
intervals, their difference in units of the interval's Monte-Carlo error (the spread of the
interval's ends over independent seeds) and the CPU time of each. CPU time, because the
machine is shared and wall-clock is not reliable.

    .venv/bin/python benchmarks/ab_bootstrap.py [--rows 600] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from tracseq_dagster.monitoring.ab_report import CLASSIFICATION_METRICS, REGRESSION_METRICS, ABSettings, _interval, bootstrap


def loop_bootstrap(metric, outcome, score, hit, settings: ABSettings) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The hand-written loop the report used before (kept here only to compare)."""
    rng = np.random.default_rng(settings.seed)
    out = np.empty(settings.bootstrap)
    for b in range(settings.bootstrap):
        pick = rng.integers(0, outcome.size, outcome.size)
        out[b] = metric(outcome[pick], score[pick], hit[pick])
    return out


def data(rows: int, regression: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if regression:
        outcome = rng.gamma(4.0, 10.0, rows)
        score = outcome + rng.normal(0, 8.0, rows)
        return outcome, score, (np.abs(outcome - score) <= 12.0).astype(float)
    score = rng.uniform(0, 1, rows)
    outcome = (rng.uniform(0, 1, rows) < score).astype(float)
    return outcome, score, ((score > 0.5) == (outcome == 1)).astype(float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the Monte-Carlo error of an interval end")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"rows {args.rows}, resamples {args.resamples}; CPU seconds per metric (mean of {args.seeds} seeds)")
    print("| metric | loop interval | scipy interval | max end gap / MC error | loop CPU s | scipy CPU s |")
    print("|---|---|---|---|---|---|")
    total = {"loop": 0.0, "scipy": 0.0}
    for regression, metrics in ((False, CLASSIFICATION_METRICS), (True, REGRESSION_METRICS)):
        outcome, score, hit = data(args.rows, regression)
        for name, metric in metrics.items():
            ends: dict[str, list[tuple[float, float]]] = {"loop": [], "scipy": []}
            cpu = {"loop": 0.0, "scipy": 0.0}
            for seed in range(args.seeds):
                settings = ABSettings(bootstrap=args.resamples, seed=seed)
                for who, fn in (("loop", loop_bootstrap), ("scipy", bootstrap)):
                    start = time.process_time()
                    replicates = fn(metric, outcome, score, hit, settings)
                    cpu[who] += time.process_time() - start
                    ends[who].append(_interval(replicates, settings.confidence))  # type: ignore[arg-type]
            loop, new = np.array(ends["loop"]), np.array(ends["scipy"])
            mc_error = np.maximum(loop.std(axis=0, ddof=1), new.std(axis=0, ddof=1))
            gap = np.abs(loop.mean(axis=0) - new.mean(axis=0)) / (mc_error / np.sqrt(args.seeds))
            for who in cpu:
                total[who] += cpu[who] / args.seeds
            print(
                f"| {name} | [{loop[0, 0]:.4f}, {loop[0, 1]:.4f}] | [{new[0, 0]:.4f}, {new[0, 1]:.4f}] | "
                f"{gap.max():.2f} | {cpu['loop'] / args.seeds:.3f} | {cpu['scipy'] / args.seeds:.3f} |"
            )
    print(f"\ntotal CPU s per report-sized set of 6 metrics: loop {total['loop']:.3f}, scipy {total['scipy']:.3f}")


if __name__ == "__main__":
    main()
