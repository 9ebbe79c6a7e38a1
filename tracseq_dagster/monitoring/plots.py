"""Monitoring plots: what a person looks at before reading a drift or A/B table.

* :func:`drift_figure`: per feature, the reference (training rows) and current (logged
  predictions) shares of the very bins PSI was measured on, most shifted first; a drifted
  feature's title is red. The plot and the number cannot disagree, as both come from the same counts.
* :func:`ab_figure`: the answered values of both variants (the report's histogram as shares,
  so a 90/10 split still compares shapes), and per labelled metric both variants' bootstrap
  intervals with the challenger-minus-champion difference in the title.
* :func:`log_report_figures`: the figures in MLflow, in a run of the model's experiment nested
  under the Dagster run's parent run (as training's runs are), so a report's pictures sit beside
  the model they judge.

Figures are small (≈ 7×4 inches at 100 dpi, tens of kB) and drawn with the Agg backend via
:mod:`tracseq_dagster.plots`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient

from tracseq_dagster.monitoring.ab_report import ABReport
from tracseq_dagster.monitoring.drift import DriftReport, FeatureHistogram
from tracseq_dagster.plots import new_figure
from tracseq_dagster.registry import CHALLENGER, CHAMPION
from tracseq_dagster.tracking import child_run, parent_run

#: Features drawn in the drift figure (the most shifted by PSI); the table lists them all.
MAX_DRIFT_PANELS = 8
REFERENCE_COLOUR, CURRENT_COLOUR = "#9e9e9e", "#1f77b4"
VARIANT_COLOURS = {CHAMPION: "#1f77b4", CHALLENGER: "#ff7f0e"}
DRIFTED_COLOUR = "#c62828"


def _shares(counts: Sequence[float]) -> np.ndarray:
    values = np.asarray(counts, dtype=float)
    total = values.sum()
    return values / total if total else values


def drift_figure(report: DriftReport, max_panels: int = MAX_DRIFT_PANELS) -> Figure:
    """Reference vs current shares per PSI bin of the ``max_panels`` most shifted features."""
    by_name = {h.feature: h for h in report.histograms}
    table = report.table()
    shown = [by_name[f] for f in (table["feature"] if len(table) else []) if f in by_name][:max_panels]
    drifted = set(report.drifted_features)
    psi = {f.feature: f.psi for f in report.features}
    columns = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    height = 1.6 * rows + 0.4
    figure = new_figure(1.9 * columns, height, layout=None)  # fixed margins: see new_figure
    figure.subplots_adjust(left=0.06, right=0.99, top=1 - 0.75 / height, bottom=0.55 / height, hspace=1.1, wspace=0.3)
    who = f"{report.model}: " if report.model else ""
    figure.suptitle(
        f"{who}reference ({report.reference_rows} training rows) vs current ({report.current_rows} predictions)"
        + (f", {len(shown)} most shifted of {len(report.histograms)} features" if len(report.histograms) > len(shown) else ""),
        fontsize=9,
    )
    if not shown:
        figure.text(0.5, 0.5, "no feature measured", ha="center", va="center")
        return figure
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, histogram in zip(axes, shown):
        _drift_panel(ax, histogram, psi[histogram.feature], histogram.feature in drifted)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    axes[0].legend(fontsize=6, loc="upper right")
    return figure


def _drift_panel(ax, histogram: FeatureHistogram, psi: float, drifted: bool) -> None:  # type: ignore[no-untyped-def]
    positions = np.arange(len(histogram.bins))
    ax.bar(positions - 0.2, _shares(histogram.reference), width=0.4, color=REFERENCE_COLOUR, label="reference")
    ax.bar(positions + 0.2, _shares(histogram.current), width=0.4, color=CURRENT_COLOUR, label="current")
    ax.set_title(f"{histogram.feature}\nPSI {psi:.3f}", fontsize=7, color=DRIFTED_COLOUR if drifted else "black")
    ax.set_xticks(positions, [b if len(b) <= 10 else b[:9] + "…" for b in histogram.bins], rotation=90, fontsize=5)
    ax.tick_params(axis="y", labelsize=6)


def ab_figure(report: ABReport) -> Figure:
    """Both variants' answer distributions, and per labelled metric both intervals and the difference."""
    metrics = _interval_metrics(report.labelled)
    figure = new_figure(7.0, 2.6 + (2.2 if metrics else 0.0))
    grid = figure.add_gridspec(2 if metrics else 1, max(1, len(metrics)))
    _score_panel(figure.add_subplot(grid[0, :]), report)
    differences = {r["metric"]: r for r in report.differences.to_dict("records")} if len(report.differences) else {}
    for column, metric in enumerate(metrics):
        _metric_panel(figure.add_subplot(grid[1, column]), report.labelled, metric, differences.get(metric))
    figure.suptitle(f"{report.model}: A/B over {report.rows} predictions", fontsize=9)
    return figure


def _interval_metrics(labelled: pd.DataFrame) -> list[str]:
    """The metrics with an interval for at least one variant (``<name>_low`` present and set)."""
    names = [c[: -len("_low")] for c in labelled.columns if c.endswith("_low")]
    return [n for n in names if n in labelled and labelled[f"{n}_low"].notna().any()]


def _score_panel(ax, report: ABReport) -> None:  # type: ignore[no-untyped-def]
    histogram = report.score_histogram
    value = histogram.columns[0]
    variants = [v for v in histogram.columns[1:]]
    if not variants:
        ax.text(0.5, 0.5, "no predictions in the window", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    positions = np.arange(len(histogram))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        counts = histogram[variant].to_numpy(float)
        ax.bar(
            positions + (i - (len(variants) - 1) / 2) * width,
            _shares(counts),
            width=width,
            color=VARIANT_COLOURS.get(variant),
            label=f"{variant} ({int(counts.sum())})",
        )
    ax.set_xticks(positions, histogram[value].astype(str), rotation=30, fontsize=6)
    ax.set_xlabel(value, fontsize=7)
    ax.set_ylabel("share of predictions", fontsize=7)
    ax.tick_params(axis="y", labelsize=6)
    ax.legend(fontsize=7)


def _metric_panel(ax, labelled: pd.DataFrame, metric: str, difference: Mapping[str, object] | None) -> None:  # type: ignore[no-untyped-def]
    rows = labelled[labelled[f"{metric}_low"].notna()]
    for y, row in enumerate(rows.to_dict("records")):
        estimate, low, high = float(row[metric]), float(row[f"{metric}_low"]), float(row[f"{metric}_high"])
        ax.errorbar(
            estimate,
            y,
            xerr=[[estimate - low], [high - estimate]],
            fmt="o",
            capsize=3,
            color=VARIANT_COLOURS.get(str(row["variant"]), "black"),
        )
    ax.set_yticks(range(len(rows)), rows["variant"].astype(str), fontsize=6)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.tick_params(axis="x", labelsize=6)
    title = metric
    if difference is not None and difference.get("low") is not None:
        title += f"\nΔ {float(difference['challenger_minus_champion']):+.3g} [{float(difference['low']):+.3g}, {float(difference['high']):+.3g}]"  # type: ignore[arg-type]
    ax.set_title(title, fontsize=7, color=DRIFTED_COLOUR if difference and difference.get("significant") else "black")


def log_report_figures(
    client: MlflowClient,
    experiment_id: str,
    dagster_run_id: str,
    role: str,
    figures: Mapping[str, bytes],
    tags: Mapping[str, str] | None = None,
) -> str:
    """The rendered figures (PNG bytes by file name) as ``plots/<name>`` of a new run ``role`` under the
    Dagster run's parent run; its id. Bytes, not figures: the asset renders each figure once for both."""
    parent = parent_run(client, experiment_id, dagster_run_id)
    run_id = child_run(client, experiment_id, parent, role, role, {"dagster_run_id": dagster_run_id, **(tags or {})})
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, png in figures.items():
                (Path(folder) / name).write_bytes(png)
                client.log_artifact(run_id, str(Path(folder) / name), "plots")
    finally:
        client.set_terminated(run_id)
    return run_id
