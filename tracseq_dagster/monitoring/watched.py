"""Which catalog models the monitoring watches in a window: those the prediction log has rows of.

The hourly monitoring run, ``tracseq monitor drift`` and the reports' skip messages share this
one rule: a model with no logged predictions in the window has nothing to judge (it is not
served yet, or nobody asked it), which is said, not failed.
"""

from __future__ import annotations

from datetime import datetime

from tracseq_dagster.models import model_names
from tracseq_dagster.serving.prediction_log import MODEL_COLUMN, PredictionLog


def predictions_per_model(log: PredictionLog, since: datetime | None, until: datetime | None) -> dict[str, int]:
    """Rows of each catalog model in ``[since, until)``, in catalog order (0 for a model without rows)."""
    counts = log.read(since, until, model=None)[MODEL_COLUMN].value_counts()
    return {name: int(counts.get(name, 0)) for name in model_names()}


def no_predictions_message(model: str, since: datetime) -> str:
    return f"{model}: no logged predictions since {since:%Y-%m-%d %H:%M} UTC, nothing to judge"
