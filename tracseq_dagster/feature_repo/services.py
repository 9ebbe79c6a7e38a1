"""One feature service per catalog model, generated from the catalog (the model's ``features``).

A new catalog module gets its service on the next ``apply`` with no edit here. Each feature
of the model is taken from the model's own view when it has one (a view tagged with the
model), else from the first shared feature view that holds it (:func:`views.feature_views`
order); another model's view is never used. A model whose features are not all in the store still gets a service, tagged
``coverage=partial`` with the missing features named, so the registry shows what is missing
instead of silently serving a smaller feature set; :func:`service_coverage` says the same in
code (training through Feast refuses a partial service).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from feast import FeatureService, FeatureView

from tracseq_dagster.models import ModelSpec, catalog


@dataclass(frozen=True)
class Coverage:
    """Which of a model's features the store has, by view, and which it lacks."""

    model: str
    by_view: Mapping[str, tuple[str, ...]]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


def service_coverage(spec: ModelSpec, views: Iterable[FeatureView]) -> Coverage:
    views = list(views)
    own = [v for v in views if v.tags.get("model") == spec.name]  # the model's own rows come first
    owner: dict[str, str] = {}
    for view in [*own, *(v for v in views if v.tags.get("model") is None)]:
        for field in view.features:
            owner.setdefault(field.name, view.name)
    by_view: dict[str, list[str]] = {}
    for feature in spec.features:
        if feature in owner:
            by_view.setdefault(owner[feature], []).append(feature)
    missing = tuple(f for f in spec.features if f not in owner)
    return Coverage(spec.name, {v: tuple(fs) for v, fs in by_view.items()}, missing)


def feature_service(spec: ModelSpec, views: Iterable[FeatureView]) -> FeatureService:
    views = list(views)
    coverage = service_coverage(spec, views)
    by_name = {v.name: v for v in views}
    projections = [by_name[name][list(features)] for name, features in coverage.by_view.items()]
    tags = {"model": spec.name, "entity": ",".join(spec.entity), "feature_code_version": spec.feature_code_version,
            "coverage": "complete" if coverage.complete else "partial"}  # fmt: skip
    if coverage.missing:
        tags["missing_features"] = ",".join(coverage.missing)
    return FeatureService(name=spec.name, features=projections, description=spec.description, tags=tags,
                          owner=views[0].owner if views else "")  # fmt: skip


def feature_services(views: Iterable[FeatureView], models: Mapping[str, ModelSpec] | None = None) -> tuple[FeatureService, ...]:
    """A service per model of the catalog (or of ``models``), in catalog order."""
    views = list(views)
    return tuple(feature_service(spec, views) for spec in (models if models is not None else catalog()).values())
