"""feast_registry and feast_entity_tables: the Feast repository applied, and the entity tables it reads."""

import dagster as dg

from assets.features.sample_features import FEATURES_AUTOMATION
from assets.metadata import records_table
from resources import LakeResource
from resources.feast import FeastResource
from tracseq_dagster.feature_repo.definitions import definitions_hash, repo_objects
from tracseq_dagster.feature_repo.store import apply_repo
from tracseq_dagster.feature_repo.tables import write_feature_tables
from tracseq_dagster.features import FEATURE_CODE_VERSION
from tracseq_dagster.run_features import RUN_FEATURE_CODE_VERSION

#: The definitions' hash: changes when a view, an entity, a feature or a catalog model's service
#: does, and then marks feast_registry as changed in the UI. The lake folder is no part of it
#: (the hash leaves paths out), so no setting is read at import.
DEFINITIONS_VERSION = definitions_hash(repo_objects("lake"))


@dg.asset(
    group_name="features",
    kinds={"feast"},
    code_version=DEFINITIONS_VERSION,
    automation_condition=dg.AutomationCondition.on_missing() | dg.AutomationCondition.code_version_changed(),
)
def feast_registry(context: dg.AssetExecutionContext, lake: LakeResource, feast: FeastResource) -> dg.MaterializeResult:
    """``feast apply``: registers the entities, feature views and one feature service per catalog model.

    Runs when the definitions change (its code version is their hash), and removes the views
    and services no longer defined. The metadata lists every view with its registry version
    and every service with its coverage (a model whose features are not all in the store is
    tagged partial, with the missing features).
    """
    objects = repo_objects(lake.root)
    store = feast.store()
    applied = apply_repo(store, objects)
    services = [
        {
            "service": s.name,
            "coverage": s.tags.get("coverage", ""),
            "missing": s.tags.get("missing_features", ""),
            "features": sum(len(p.features) for p in s.feature_view_projections),
        }  # fmt: skip
        for s in objects.services
    ]
    context.log.info(f"applied {len(objects.views)} views and {len(services)} services to {feast.project}")
    return dg.MaterializeResult(
        metadata={
            "definitions_hash": applied.definitions_hash,
            "project": feast.project,
            "registry": "sql" if feast.registry_url else str(feast.settings().folder / "registry.db"),
            "views": records_table([{"view": v, "version": ver} for v, ver in applied.views.items()]),
            "services": records_table(services),
            "removed": ", ".join(applied.removed) or "none",
        },
        data_version=dg.DataVersion(applied.definitions_hash),
    )


@dg.asset(
    deps=["validated_samples", "validated_runs"],
    group_name="features",
    kinds={"pandas", "parquet"},
    code_version=f"{FEATURE_CODE_VERSION}-{RUN_FEATURE_CODE_VERSION}",
    automation_condition=FEATURES_AUTOMATION,
)
def feast_entity_tables(lake: LakeResource) -> dg.MaterializeResult:
    """The tables Feast reads beside sample_features: entity histories and the run models' rows.

    The operator, site, freezer and instrument histories (``tracseq_dagster.entity_history``):
    one row per change of each aggregate, stamped just after the events it includes, so Feast's
    point-in-time join reads what the feature code reads as of any moment, and the online store
    holds each entity's latest value. The rows of the catalog models whose features are their
    own (``sequencing_success``, ``turnaround_hours``), as of their prediction times.
    """
    lake_ = lake.lake()
    written = write_feature_tables(lake_)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(written.values()),
            **{f"rows_{k}": v for k, v in written.items()},
            "path": dg.MetadataValue.path(str(lake_.root / "feast")),
        }  # fmt: skip
    )
