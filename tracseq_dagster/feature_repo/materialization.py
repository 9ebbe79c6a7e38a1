"""One materialisation: every view into the online store, and its feature statistics saved.

Statistics are computed from the same tables Feast just loaded (each view's source file), so
what ``GET /features/{name}/stats`` shows is what was materialised, under the view version the
registry held at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from feast import FeatureStore, FeatureView, FileSource

from tracseq_dagster.feature_repo.statistics import save_statistics, table_statistics
from tracseq_dagster.feature_repo.store import materialize_all, view_version


@dataclass(frozen=True)
class Materialized:
    end: datetime
    rows: dict[str, int]
    versions: dict[str, str]
    statistics: dict[str, Path]
    waiting: tuple[str, ...] = ()  # views whose table does not exist yet (a lab without runs)
    summary: tuple[dict[str, object], ...] = ()  # per feature: view, count, nulls, median or top value


def _table(view: FeatureView) -> str:
    """The Parquet file a view reads (every view of the repository is over a lake file)."""
    source = view.batch_source
    if not isinstance(source, FileSource):
        raise TypeError(f"{view.name} reads {type(source).__name__}, not a lake file")
    return source.path


def materialize_with_statistics(store: FeatureStore, folder: Path) -> Materialized:
    """Materialise every registered view whose table exists up to now and save each one's
    statistics under ``folder``. A view without its table yet (the run models' before the first
    run export) is left out and named in ``waiting``, instead of failing the others."""
    registered = store.list_feature_views()
    views = [v for v in registered if Path(_table(v)).exists()]
    waiting = tuple(v.name for v in registered if v.name not in {w.name for w in views})
    end = materialize_all(store, [v.name for v in views]) if views else pd.Timestamp.now(tz="UTC").to_pydatetime()
    rows: dict[str, int] = {}
    versions: dict[str, str] = {}
    paths: dict[str, Path] = {}
    summary: list[dict[str, object]] = []
    for view in views:
        features = [f.name for f in view.features]
        table = pd.read_parquet(_table(view), columns=features)
        versions[view.name] = view_version(store, view.name)
        rows[view.name] = len(table)
        stats = table_statistics(table, features)
        paths[view.name] = save_statistics(folder, view.name, versions[view.name], pd.Timestamp(end), stats)
        for name, column in stats.items():
            top = (column.get("histogram") or {}).get("values") or [{}]
            typical = column["p50"] if column["feature_type"] == "numeric" else top[0].get("value")
            summary.append({"view": view.name, "feature": name, "count": column["count"], "nulls": column["null_count"],
                            "median or top": typical})  # fmt: skip
    return Materialized(end, rows, versions, paths, waiting, tuple(summary))
