"""The AutoML leaderboard as a picture: each family's best cross-validated score with its spread.

One horizontal bar per family (best first, the winner coloured), the CV standard deviation as
an error bar, and the trials behind it (complete / pruned) beside the bar: whether the winner
won by a margin or within the noise is what the table makes people compute by hand. The
optimisation history (best score over trials per family) is Optuna's own plot
(:func:`tracseq_dagster.training.optimisation_history_figure`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tracseq_dagster.plots import new_figure

WINNER_COLOUR, OTHER_COLOUR = "#2e7d32", "#9e9e9e"


def leaderboard_figure(table: pd.DataFrame, metric: str, greater_is_better: bool) -> Figure:
    """``table`` as :func:`tracseq_dagster.training.leaderboard_table` makes it (ranked, winner first)."""
    figure = new_figure(6.0, 0.45 * max(len(table), 1) + 1.2)
    ax = figure.add_subplot()
    if table.empty:
        ax.text(0.5, 0.5, "no family finished a trial", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return figure
    positions = np.arange(len(table))[::-1]  # the winner on top
    means = table["cv_mean"].to_numpy(float)
    spreads = np.nan_to_num(table["cv_std"].to_numpy(float))
    colours = [WINNER_COLOUR] + [OTHER_COLOUR] * (len(table) - 1)
    ax.barh(positions, means, xerr=spreads, color=colours, capsize=3)
    ax.set_yticks(positions, table["family"].astype(str), fontsize=8)
    low, high = float(np.min(means - spreads)), float(np.max(means + spreads))
    pad = (high - low) * 0.15 or abs(high) * 0.05 or 0.05
    ax.set_xlim(low - pad, high + pad * 3)  # bars start near the scores: differences stay visible
    for y, row in zip(positions, table.to_dict("records")):
        trials = f"{row.get('complete', row.get('trials', '?'))} done" + (
            f", {row['pruned']} pruned" if row.get("pruned") else ""
        )
        ax.text(row["cv_mean"] + (row["cv_std"] or 0) + pad * 0.2, y, f"{row['cv_mean']:.4g} ({trials})", va="center", fontsize=7)
    ax.set_xlabel(f"CV {metric} ({'higher' if greater_is_better else 'lower'} is better), ± 1 std", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"leaderboard: {table['family'].iloc[0]} wins", fontsize=9)
    return figure
