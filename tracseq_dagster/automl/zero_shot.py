"""A table-specific known-good start for the boosting families: FLAML's zero-shot portfolio.

FLAML 2.7 ships, for each of its learners and tasks, a *portfolio* of configurations mined
offline on many public tables, and for each of those tables the configuration order that won
there (``flaml/default/<learner>/<task>.json``; Wang et al. 2022, "Mining Robust Default
Configurations for Resource-constrained AutoML"). A new table is matched to its nearest mined
table by four meta-features (rows, features, classes, share of numeric features, each centred
and scaled as the file says) and gets that table's first choice. This module reads those JSON
files from the installed ``flaml`` package (it never imports FLAML: importing it costs seconds)
and does the nearest-neighbour look-up itself, as ``flaml.default.suggest_config(..., k=1)``.

The engine runs the suggestion as each boosting family's second trial, right after the
library's default (:meth:`~tracseq_dagster.automl.families.ModelFamily.zero_shot_params`
translates it into the family's own search space), so the sweep starts from a strong,
table-specific point; the CV decides whether it beats the default.

Without FLAML installed, or for a learner or task without a portfolio, :func:`suggest` returns
None and the sweep starts from the default alone.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

#: Our family → FLAML's learner name (the portfolios used).
LEARNERS = {"lightgbm": "lgbm", "xgboost": "xgboost"}


@functools.cache
def _portfolio(learner: str, task: str) -> dict[str, Any] | None:
    """FLAML's mined portfolio for ``learner`` on ``task``, or None without one."""
    spec = importlib.util.find_spec("flaml")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default" / learner / f"{task}.json"
    if not path.is_file():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def meta_features(rows: int, features: int, classes: int, numeric_share: float) -> list[float]:
    """FLAML's meta-features in its order: instances, features, classes (0 for regression),
    share of numeric features."""
    return [float(rows), float(features), float(classes), float(numeric_share)]


def suggest(family: str, task: str, meta: list[float]) -> dict[str, Any] | None:
    """The portfolio's configuration for the nearest mined table, in FLAML's parameter names
    (``FLAML_sample_size`` removed); None when there is no portfolio or it suggests the
    library's defaults (an empty configuration: the first trial already is that)."""
    learner = LEARNERS.get(family)
    portfolio = None if learner is None else _portfolio(learner, task)
    if portfolio is None:
        return None
    names = portfolio["meta_feature_names"]
    if len(names) != len(meta):
        return None
    prep = portfolio["preprocessing"]
    point = (np.asarray(meta, dtype=float) - np.asarray(prep["center"], dtype=float)) / np.asarray(prep["scale"], dtype=float)
    neighbours = np.asarray([n["features"] for n in portfolio["neighbors"]], dtype=float)
    nearest = int(np.argmin(np.linalg.norm(neighbours - point, axis=1)))
    choice = portfolio["neighbors"][nearest]["choice"][0]
    config = dict(portfolio["portfolio"][choice].get("hyperparameters") or {})
    config.pop("FLAML_sample_size", None)
    return config or None
