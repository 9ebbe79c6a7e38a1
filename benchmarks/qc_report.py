"""How long the weekly QC report takes on a generated lab: build (read the lake, compute the sections,
draw the plots), HTML and PDF, for the busiest project's busiest week, with a prediction log.

CPU time (``time.process_time``) beside wall-clock: the machine these numbers come from is shared,
so wall-clock is an upper bound. Run: ``.venv/bin/python benchmarks/qc_report.py --rows 20000``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import RUNS, Lake
from tracseq_dagster.operations.qc_report import IsoWeek, build_report
from tracseq_dagster.operations.report_html import render_html
from tracseq_dagster.operations.report_pdf import render_pdf
from tracseq_dagster.run_generator import generate_runs


def predictions_for(samples: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One sample_quality and one turnaround_hours prediction per sample (values drawn at random)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, len(samples))
    quality = pd.DataFrame({"model": "sample_quality", "sample_id": samples["sample_id"], "entity_key": samples["sample_id"],
                            "ts": samples["received_ts"], "prediction": p,
                            "category": np.where(p >= 0.7, "high", np.where(p >= 0.4, "medium", "low"))})  # fmt: skip
    turnaround = quality.assign(model="turnaround_hours", prediction=rng.gamma(4, 20, len(samples)), category=None)
    return pd.concat([quality, turnaround], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        lake = Lake(Path(folder) / "lake")
        samples = generate_samples(args.rows, seed=1)
        lake.write_record("s" * 16, "samples.csv", len(samples))
        lake.write_table(lake.validated_path("s" * 16), samples)
        runs = generate_runs(samples, seed=1)
        lake.write_record("r" * 16, "runs.csv", len(runs), kind=RUNS)
        lake.write_table(lake.validated_path("r" * 16), runs)
        project = str(samples["project_id"].value_counts().index[0])
        ours = samples[samples["project_id"] == project]
        weeks = ours["received_ts"].dt.isocalendar()
        busiest = weeks.groupby(["year", "week"]).size().idxmax()
        week = IsoWeek(int(busiest[0]), int(busiest[1]))
        predictions = predictions_for(samples, 1)
        timings: dict[str, list[tuple[float, float]]] = {"build": [], "html": [], "pdf": []}
        for _ in range(args.repeats):
            steps = {}
            wall, cpu = time.perf_counter(), time.process_time()
            report = build_report(lake, week, project, predictions=predictions)
            steps["build"] = (time.perf_counter() - wall, time.process_time() - cpu)
            wall, cpu = time.perf_counter(), time.process_time()
            html = render_html(report)
            steps["html"] = (time.perf_counter() - wall, time.process_time() - cpu)
            wall, cpu = time.perf_counter(), time.process_time()
            pdf = render_pdf(report)
            steps["pdf"] = (time.perf_counter() - wall, time.process_time() - cpu)
            for name, value in steps.items():
                timings[name].append(value)
        print(f"lake: {args.rows} samples, {len(runs)} run rows; report: {project} {week.key}, "
              f"{report.section('received').figures['samples received']} samples received, "
              f"{report.section('at_risk').figures['samples at risk']} at risk")  # fmt: skip
        print(f"files: HTML {len(html) / 1024:.0f} kB, PDF {len(pdf) / 1024:.0f} kB")
        print("| step | median wall (s) | median CPU (s) |")
        print("|---|---|---|")
        for name, values in timings.items():
            print(f"| {name} | {statistics.median(v[0] for v in values):.2f} | {statistics.median(v[1] for v in values):.2f} |")


if __name__ == "__main__":
    main()
