"""What the management API answers about features, as plain functions (no HTTP here).

Each returns JSON-ready values (dicts, lists, strings, numbers, ISO times), so a route only
validates its input and returns the result:

* :func:`list_feature_views`, :func:`list_feature_services`: names, descriptions, owners,
  tags, features with types and units, and each view's version history from the registry;
* :func:`feature_statistics`: a feature's statistics of the latest (or a given) version;
* :func:`online_features`: the latest features of many entities;
* :func:`historical_features`: features of many entities as of one timestamp (time travel)
  or each at its own, through Feast's point-in-time join.

Features are named as Feast names them, ``view:feature``, or by a bare feature name when one
shared view holds it (or, for a feature no shared view holds, one model's view); a feature
service's name stands for all of its features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureService, FeatureStore, FeatureView, OnDemandFeatureView

from tracseq_dagster.feature_repo.statistics import load_statistics, statistics_versions
from tracseq_dagster.json_values import json_value

ENTITY_TIMESTAMP = "event_timestamp"


class UnknownFeature(KeyError):
    """A feature, view or service the registry does not hold; the message says which exist."""

    def __str__(self) -> str:
        return str(self.args[0])


def _time(value: Any) -> str | None:
    return None if value is None else pd.Timestamp(value).isoformat()


def _versions(store: FeatureStore, name: str) -> dict[str, Any]:
    versions = sorted(store.list_feature_view_versions(name), key=lambda r: r["version_number"])
    return {"version": versions[-1]["version"] if versions else None,
            "versions": [{"version": r["version"], "created": _time(r["created_timestamp"])} for r in versions]}  # fmt: skip


def _view_summary(store: FeatureStore, view: FeatureView | OnDemandFeatureView) -> dict[str, Any]:
    source: str | None
    timestamp_field: str | None
    if isinstance(view, OnDemandFeatureView):  # a request-time transformation over other views
        sources = sorted(view.source_feature_view_projections)
        batch_views = {v.name: v for v in store.list_feature_views()}
        entities = sorted({c.name for s in sources if s in batch_views for c in batch_views[s].entity_columns})
        kind, source, timestamp_field = "on_demand", ",".join(sources), None
    else:
        entities = [c.name for c in view.entity_columns]
        batch = view.batch_source
        kind, source, timestamp_field = "batch", batch.name if batch else None, batch.timestamp_field if batch else None
    return {
        "name": view.name,
        "kind": kind,
        "description": view.description,
        "owner": view.owner,
        "tags": dict(view.tags),
        "entities": entities,
        "features": [
            {"name": f.name, "type": str(f.dtype), "description": f.description, "unit": f.tags.get("unit")}
            for f in view.features
        ],  # fmt: skip
        "source": source,
        "timestamp_field": timestamp_field,
        **_versions(store, view.name),
        "created": _time(view.created_timestamp),
        "updated": _time(view.last_updated_timestamp),
    }


def _all_views(store: FeatureStore) -> list[FeatureView | OnDemandFeatureView]:
    return [*store.list_feature_views(), *store.list_on_demand_feature_views()]


def list_feature_views(store: FeatureStore) -> list[dict[str, Any]]:
    """Batch and on-demand feature views, by name."""
    return [_view_summary(store, v) for v in sorted(_all_views(store), key=lambda v: v.name)]


def _service_summary(service: FeatureService) -> dict[str, Any]:
    return {
        "name": service.name,
        "description": service.description,
        "owner": service.owner,
        "tags": dict(service.tags),
        "features": [f"{p.name}:{f.name}" for p in service.feature_view_projections for f in p.features],
        "created": _time(service.created_timestamp),
        "updated": _time(service.last_updated_timestamp),
    }


def list_feature_services(store: FeatureStore) -> list[dict[str, Any]]:
    return [_service_summary(s) for s in sorted(store.list_feature_services(), key=lambda s: s.name)]


def _views_by_feature(store: FeatureStore) -> dict[str, list[str]]:
    """Feature name -> the views holding it: the shared views, or when none does, the models' own
    views (a model's view repeats the sample features as of its own prediction time)."""
    shared: dict[str, list[str]] = {}
    own: dict[str, list[str]] = {}
    for view in _all_views(store):
        for feature in view.features:
            (own if view.tags.get("model") else shared).setdefault(feature.name, []).append(view.name)
    return {name: shared.get(name) or own[name] for name in {*shared, *own}}


def resolve_feature(store: FeatureStore, name: str) -> tuple[str, str]:
    """(view, feature) of ``view:feature`` or of a bare feature name held by one view."""
    if ":" in name:
        view, feature = name.split(":", 1)
        known = {v.name: [f.name for f in v.features] for v in _all_views(store)}
        if feature not in known.get(view, []):
            raise UnknownFeature(f"no feature {name!r}; views: {', '.join(sorted(known))}")
        return view, feature
    views = _views_by_feature(store).get(name, [])
    if len(views) != 1:
        what = "no view holds" if not views else f"several views hold ({', '.join(views)})"
        raise UnknownFeature(f"{what} the feature {name!r}: name it view:feature")
    return views[0], name


def feature_statistics(store: FeatureStore, folder: Path, name: str, version: str | None = None) -> dict[str, Any]:
    """Statistics of one feature at its view's latest (or the given) version, from its latest materialisation."""
    view, feature = resolve_feature(store, name)
    stats = load_statistics(folder, view, version)
    if stats is None or feature not in stats["features"]:
        raise UnknownFeature(f"no statistics for {view}:{feature} at version {version or 'latest'}: materialise it first")
    return {"view": view, "feature": feature, "version": stats["version"], "materialized_at": stats["materialized_at"],
            "versions_with_statistics": statistics_versions(folder, view), **stats["features"][feature]}  # fmt: skip


def _references(store: FeatureStore, features: str | Sequence[str]) -> FeatureService | list[str]:
    if isinstance(features, str):
        try:
            return store.get_feature_service(features)
        except Exception:  # noqa: BLE001 - Feast raises its own not-found errors per registry type
            features = [features]
    return [":".join(resolve_feature(store, f)) for f in features]


def online_features(
    store: FeatureStore, features: str | Sequence[str], entity_rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The latest values of ``features`` (a service name or feature names) for each entity row, in order."""
    response = store.get_online_features(features=_references(store, features), entity_rows=[dict(r) for r in entity_rows])
    columns = response.to_dict()
    return [{k: json_value(v[i]) for k, v in columns.items()} for i in range(len(entity_rows))]


def historical_features(
    store: FeatureStore,
    features: str | Sequence[str],
    entity_rows: Sequence[Mapping[str, Any]],
    as_of: datetime | str | None = None,
) -> list[dict[str, Any]]:
    """Features of each entity row as they stood at ``as_of`` (one instant for all rows), or at each
    row's own ``event_timestamp`` when ``as_of`` is None; rows in the order given."""
    frame = pd.DataFrame([dict(r) for r in entity_rows])
    if as_of is not None:
        moment = pd.Timestamp(as_of)
        frame[ENTITY_TIMESTAMP] = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    elif ENTITY_TIMESTAMP not in frame.columns:
        raise ValueError(f"give as_of, or an {ENTITY_TIMESTAMP} in every entity row")
    frame[ENTITY_TIMESTAMP] = pd.to_datetime(frame[ENTITY_TIMESTAMP], utc=True)
    frame["_row"] = np.arange(len(frame))
    joined = store.get_historical_features(entity_df=frame, features=_references(store, features)).to_df()
    # Feast's file (Dask) store drops an entity row that has no feature row at or before its time
    # (no TTL); put it back with empty features, so every row asked for is answered, in order.
    added = [c for c in joined.columns if c not in frame.columns]
    joined = frame.merge(joined[["_row", *added]], on="_row", how="left").sort_values("_row").drop(columns="_row")
    return [{k: json_value(v) for k, v in row.items()} for row in joined.to_dict("records")]
