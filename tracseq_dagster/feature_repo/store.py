"""Open the platform's Feast store, apply the repository, materialise it into the online store.

``apply`` registers (or updates) every object and removes the views and services that are no
longer defined (a model dropped from the catalog loses its service). ``materialize`` loads
every view's whole table into the online store (the tables are rewritten whole by their
assets, so an incremental window could miss a past row that changed); Feast keeps, per
entity, the row with the latest event timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from feast import FeatureStore, FeatureView, OnDemandFeatureView
from feast.feast_object import FeastObject

from tracseq_dagster.feature_repo.config import FeastSettings, feast_config
from tracseq_dagster.feature_repo.definitions import RepoObjects, definitions_hash

#: Materialisation starts here: before any lab event.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def open_store(feast: FeastSettings) -> FeatureStore:
    return FeatureStore(config=feast_config(feast))


@dataclass(frozen=True)
class Applied:
    definitions_hash: str
    views: dict[str, str]  # view -> its current version in the registry (v0, v1, ...)
    services: tuple[str, ...]
    removed: tuple[str, ...]


def apply_repo(store: FeatureStore, objects: RepoObjects) -> Applied:
    """``feast apply`` of ``objects``; objects of the project that are no longer defined are deleted."""
    digest = definitions_hash(objects)  # before apply, which stamps the objects with registry metadata
    wanted_views = {v.name for v in (*objects.views, *objects.on_demand_views)}
    wanted_services = {s.name for s in objects.services}
    registered: list[FeatureView | OnDemandFeatureView] = [*store.list_feature_views(), *store.list_on_demand_feature_views()]
    stale_views = [v for v in registered if v.name not in wanted_views]
    stale_services = [s for s in store.list_feature_services() if s.name not in wanted_services]
    stale: list[FeastObject] = [*stale_services, *stale_views]
    store.apply(list[FeastObject](objects.all()), objects_to_delete=stale, partial=False)
    return Applied(
        digest,
        {v.name: view_version(store, v.name) for v in (*objects.views, *objects.on_demand_views)},
        tuple(sorted(wanted_services)),
        tuple(sorted(o.name for o in (*stale_views, *stale_services))),
    )


def view_version(store: FeatureStore, view: str) -> str:
    """The registry's latest version of a view (``v0`` after its first apply)."""
    versions = store.list_feature_view_versions(view)
    return max(versions, key=lambda r: r["version_number"])["version"] if versions else "v0"


def materialize_all(store: FeatureStore, views: list[str] | None = None, end: datetime | None = None) -> datetime:
    """Load every row up to ``end`` (now) of the given views (all) into the online store; returns ``end``."""
    end = end or pd.Timestamp.now(tz="UTC").to_pydatetime()
    store.materialize(EPOCH, end, feature_views=views)
    return end
