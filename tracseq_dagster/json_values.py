"""One scalar of a frame or an Arrow column as JSON can carry it.

Shared by the online feature documents (:mod:`tracseq_dagster.serving.online_store`) and the
feature queries of the management API (:mod:`tracseq_dagster.feature_repo.queries`), which
answer the same kind of values: pandas' missing markers and NaN of any float width become
None, timestamps ISO text, numpy scalars plain Python.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars (a float32 NaN is no Python float until then)
        return json_value(value.item())
    return value
