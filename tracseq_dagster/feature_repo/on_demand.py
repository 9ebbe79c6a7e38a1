"""The repository's on-demand feature views: request-time transformations over the views.

Register one by defining it here (Feast's ``@on_demand_feature_view`` over the views of
:func:`~tracseq_dagster.feature_repo.views.feature_views`) and listing it in
:func:`on_demand_views`; ``feast_registry`` applies it on its next run (the definitions' hash
changes), the registry keeps its versions, and ``queries.list_feature_views`` shows it. The
platform has none yet: its features are computed point in time by the project's own code,
before the store (``tests/test_feast_point_in_time.py`` registers one to show the path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from feast import FeatureView, OnDemandFeatureView


def on_demand_views(lake_dir: str | Path, views: Sequence[FeatureView]) -> tuple[OnDemandFeatureView, ...]:
    """The on-demand views of the repository, over ``views`` (the lake's batch views)."""
    return ()
