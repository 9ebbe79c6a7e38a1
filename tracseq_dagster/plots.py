"""Figures as things people look at: PNG bytes for MLflow and files, Markdown for Dagster metadata.

Every plot of the platform (drift histograms, A/B distributions, leaderboards, forecasts,
utilisation, the QC report) is a matplotlib figure made with the Agg backend (no screen) and
handed to one of these, so that a plot looks the same in the Dagster UI, in MLflow and in a
report. Dagster shows a Markdown metadata value with an embedded ``data:`` PNG as an image.
"""

from __future__ import annotations

import base64
import io
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # no screen: figures are rendered to bytes only

from matplotlib.figure import Figure  # noqa: E402

#: Resolution of every rendered figure; small enough for metadata (tens of kB), sharp enough to read.
DPI = 100


def new_figure(
    width: float = 7.0, height: float = 3.5, layout: Literal["constrained", "compressed", "tight"] | None = "constrained"
) -> Figure:
    """A figure not registered with pyplot, so nothing leaks between runs in one process.

    ``layout=None`` for many small panels with fixed margins: the constrained layout measures
    every tick label and took half the drawing time of an 8-panel drift figure.
    """
    return Figure(figsize=(width, height), layout=layout)


def png_bytes(figure: Figure) -> bytes:
    """The figure as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def markdown_image(figure: Figure, alt: str) -> str:
    """The figure as Markdown with an embedded PNG (``dg.MetadataValue.md`` shows it as an image)."""
    return markdown_png(png_bytes(figure), alt)


def markdown_png(png: bytes, alt: str) -> str:
    """PNG bytes already rendered as Markdown (render once, show in Dagster and log to MLflow)."""
    encoded = base64.b64encode(png).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
