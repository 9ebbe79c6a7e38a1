"""The Bento: every catalog model's champion packaged as one BentoML service.

The domain logic lives in :mod:`tracseq_dagster.serving`; these assets call it and describe
what they made.
"""

import time

import dagster as dg

from resources import EmbedderResource, LakeResource, LanceDBResource, MLflowResource
from tracseq_dagster.documents.citation_pack import pack_sop_citations
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.registry import CHAMPION, RegistryError
from tracseq_dagster.serving import SERVED_MODEL
from tracseq_dagster.serving.bento_build import build_catalog_bento
from tracseq_dagster.serving.bundle import export_bundle
from tracseq_dagster.serving.catalog_bundle import export_catalog


# document_index: the SOP citations are packed from it (the rollout sensor rebuilds when it has a new version).
@dg.asset(
    deps=["promotion_gate", "sample_features", "validated_runs", "document_index"],
    group_name="serving",
    kinds={"bentoml", "mlflow"},
)
def prediction_bento(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    mlflow_tracking: MLflowResource,
    lancedb: LanceDBResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """Every catalog model's MLflow champion (and challenger, for A/B) as one Bento.

    Exports, for each catalog model with a champion, its registered versions with the history
    it needs (every accepted sample; every accepted run for the run-based models) into the
    BentoML model store, then builds ``bentos/predictions`` around it: ``/models/{name}/…``
    for each model, and the original ``/predict`` routes for ``sample_quality``. Models without
    a champion are skipped (``skipped`` in the metadata says why). The Bento's version names
    sample_quality's registered versions (``v3`` or ``v3-c4``) plus content hashes. Serve it with
    ``bentoml serve tracseq_predictions:<version>``, containerize it with ``bentoml containerize``.

    When the lab's SOPs are indexed, each recommendation kind's SOP passages are retrieved here
    (the service's environment cannot) and packed with the models (documents/citation_pack.py);
    ``sop_citations`` in the metadata says what was packed, or why nothing was, and from which
    document index version; the build announces that version with its model, and
    ``champion_rollout_sensor`` rebuilds when the index has another one.
    """
    lake_ = lake.lake()
    started = time.perf_counter()
    bundle_dir = lake_.root / "serving" / context.run_id
    samples = accepted_samples(lake_)
    legacy = mlflow_tracking.registry(SERVED_MODEL)
    info = export_bundle(legacy, samples, lake_.read_features(), bundle_dir) if legacy.version(CHAMPION) is not None else None
    models = export_catalog(mlflow_tracking.registry, lake_, samples, bundle_dir)
    if not models.served:
        raise RegistryError(
            f"no catalog model has a champion yet: train and promote one first (tracseq train --model …); {models.skipped}"
        )
    citations = pack_sop_citations(bundle_dir, lancedb.uri, embedder.spec)
    bento = build_catalog_bento(bundle_dir, info, models, document_index_version=citations.index_version)
    context.log.info(f"built {bento.tag} serving {', '.join(models.served)}; skipped {models.skipped or 'none'}")
    return dg.MaterializeResult(
        metadata={
            "bento": str(bento.tag),
            "models_served": ", ".join(models.served),
            "models": dg.MetadataValue.json(models.summary()),
            "skipped": dg.MetadataValue.json(models.skipped),
            "champion_version": info.champion.version if info else "none",
            "champion_family": info.champion.family if info else "none",
            "challenger_version": info.challenger.version if info and info.challenger else "none",
            "history_samples": len(samples),
            "history_cutoff": info.history_cutoff if info else str(samples["received_ts"].max()),
            "sop_citations": dg.MetadataValue.json(citations.metadata()),
            "build_seconds": round(time.perf_counter() - started, 2),
            "serve": dg.MetadataValue.md(f"`bentoml serve {bento.tag}`"),
        }
    )
