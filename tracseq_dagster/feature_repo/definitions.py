"""Every object of the repository for one lake, and a hash of their definitions.

The hash covers each object's *spec* (Feast's protobuf, without the registry's metadata such
as creation times), sorted by kind and name: it changes when a view, a feature, a source, an
entity or a service changes (a new catalog model included) and only then. The Dagster asset
that runs ``feast apply`` uses it as its code version, so it shows as changed exactly when
the definitions did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView
from google.protobuf.message import Message

from tracseq_dagster.feature_repo.entities import ENTITIES
from tracseq_dagster.feature_repo.on_demand import on_demand_views
from tracseq_dagster.feature_repo.services import feature_services
from tracseq_dagster.feature_repo.views import feature_views


@dataclass(frozen=True)
class RepoObjects:
    """What one ``feast apply`` registers. ``on_demand_views`` are Feast on-demand feature views
    (request-time transformations over the views), added in code like any other definition."""

    entities: tuple[Entity, ...]
    views: tuple[FeatureView, ...]
    services: tuple[FeatureService, ...]
    on_demand_views: tuple[OnDemandFeatureView, ...] = ()

    def all(self) -> list[Entity | FeatureView | FeatureService | OnDemandFeatureView]:
        return [*self.entities, *self.views, *self.on_demand_views, *self.services]


def repo_objects(lake_dir: str | Path) -> RepoObjects:
    views = feature_views(lake_dir)
    return RepoObjects(ENTITIES, views, feature_services(views), on_demand_views(lake_dir, views))


def definitions_hash(objects: RepoObjects, *, ignore_paths: bool = True) -> str:
    """A short hash of the definitions. Source paths are left out by default: the same
    definitions over another lake folder are the same definitions."""
    digest = hashlib.sha256()
    items = []
    for obj in objects.all():
        spec = type(obj.to_proto().spec)()
        spec.CopyFrom(obj.to_proto().spec)
        _scrub(spec, ignore_paths)
        items.append((type(obj).__name__, obj.name, spec.SerializeToString(deterministic=True)))
    for kind, name, blob in sorted(items):
        digest.update(kind.encode())
        digest.update(name.encode())
        digest.update(blob)
    return digest.hexdigest()[:16]


def _scrub(message: Message, ignore_paths: bool) -> None:
    """Clear what is not a definition, at any depth: registry metadata (creation and update
    times, nested in every source a view or a service's projection carries) and, when asked,
    file paths."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.name == "meta":
            message.ClearField("meta")
            continue
        if field.name == "file_options" and ignore_paths:
            value.ClearField("uri")
        children = value if field.is_repeated else [value]
        for child in children:
            if isinstance(child, Message):
                _scrub(child, ignore_paths)
