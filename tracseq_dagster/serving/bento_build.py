"""Package a serving bundle as a Bento: the bundle goes into the BentoML model store, the
service in ``bentos/predictions`` is built around it, and both carry the bundle's tag
(the registered versions and a content hash), so ``bentoml list`` says what a Bento serves.

The Bento serves every catalog model: its bundle folder holds the ``sample_quality`` bundle
at its root (when that model has a champion) and the catalog's under ``models/``
(:mod:`.catalog_bundle`); its tag is the ``sample_quality`` tag plus ``-m`` and a hash of the
catalog's model tags (``catalog-<hash>`` without a ``sample_quality`` champion).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from tracseq_dagster import settings

# Like every embedded default, the BentoML store lives under the data folder unless
# BENTOML_HOME says otherwise; BentoML reads the variable when it is first imported.
os.environ.setdefault("BENTOML_HOME", str(settings.data_dir() / "bentoml"))

import bentoml  # noqa: E402

from tracseq_dagster.artifact_digest import FILES_METADATA_KEY, files_metadata  # noqa: E402
from tracseq_dagster.serving.bundle import BundleInfo  # noqa: E402
from tracseq_dagster.serving.catalog_bundle import CatalogBundle  # noqa: E402
from tracseq_dagster.serving.recommendation_citations import PackedCitations  # noqa: E402
from tracseq_dagster.serving.rollout import announce  # noqa: E402

BENTO_NAME = "tracseq_predictions"
BENTOFILE = Path("bentos") / "predictions" / "bentofile.yaml"


def project_root() -> Path:
    """The source tree the Bento is built from (the folder holding ``bentos/``)."""
    return Path(__file__).resolve().parents[2]


def _labels(info: BundleInfo) -> dict[str, str]:
    labels = {"champion_version": info.champion.version, "family": info.champion.family}
    if info.challenger is not None:
        labels["challenger_version"] = info.challenger.version
    return labels


def save_bundle_model(bundle_dir: Path, info: BundleInfo) -> str:
    """Copy a ``sample_quality`` bundle into the BentoML model store (once per tag); returns ``name:tag``."""
    return _save_folder(bundle_dir, info.tag, _labels(info), {"bundle": json.dumps(asdict(info))})


def _save_folder(bundle_dir: Path, version: str, labels: dict[str, str], metadata: dict[str, str]) -> str:
    tag = f"{BENTO_NAME}:{version}"
    try:
        return str(bentoml.models.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    # The SHA-256 of every file, checked by the service before it loads any (artifact_digest).
    metadata = {**metadata, FILES_METADATA_KEY: files_metadata(bundle_dir)}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        shutil.copytree(bundle_dir, model.path, dirs_exist_ok=True)
    return tag


def build_bento(bundle_dir: Path, info: BundleInfo, root: Path | None = None) -> bentoml.Bento:
    """The Bento of the service around a ``sample_quality`` bundle, version = the bundle's tag (rebuilt if present)."""
    return _build(bundle_dir, info.tag, _labels(info), {"bundle": json.dumps(asdict(info))}, root)


def catalog_tag(info: BundleInfo | None, models: CatalogBundle) -> str:
    """The Bento's version: the sample_quality bundle's tag (``v3-c4-…``) and a hash of every packed model's tag."""
    return f"{info.tag}-m{models.tag}" if info is not None else f"catalog-{models.tag}"


def build_catalog_bento(
    bundle_dir: Path,
    info: BundleInfo | None,
    models: CatalogBundle,
    root: Path | None = None,
    *,
    document_index_version: int | None = None,
) -> bentoml.Bento:
    """The Bento serving every packed catalog model (and sample_quality's original routes when ``info``).

    ``document_index_version`` is the document index version the build read for its SOP
    citations (None: no index), announced with the model so the rollout sensor rebuilds when
    the SOPs change.
    """
    labels = {**(_labels(info) if info is not None else {}), "models": "_".join(models.served)[:60] or "none"}
    metadata = {"bundle": json.dumps(asdict(info)) if info is not None else "", "catalog": json.dumps(models.summary())}
    version = catalog_tag(info, models)
    citations = PackedCitations.load(bundle_dir)  # the SOP citations packed beside the models, if any
    if citations is not None:  # other citations, another Bento (the store keeps one folder per version)
        version, labels["sop_citations"] = f"{version}-s{citations.digest}", f"index_v{citations.index_version}"
    return _build(bundle_dir, version, labels, metadata, root, document_index_version)


def _build(bundle_dir: Path, version: str, labels: dict[str, str], metadata: dict[str, str], root: Path | None,
           document_index_version: int | None = None) -> bentoml.Bento:  # fmt: skip
    root = root or project_root()
    model_tag = _save_folder(bundle_dir, version, labels, metadata)
    try:
        bentoml.bentos.delete(f"{BENTO_NAME}:{version}")
    except bentoml.exceptions.NotFound:
        pass
    bento = bentoml.bentos.build_bentofile(
        str(root / BENTOFILE), build_ctx=str(root), version=version, args={"model_tag": model_tag}
    )
    # running services switch to it by themselves (rollout)
    announce(model_tag, _packed_champions(metadata), document_index_version=document_index_version)
    return bento


def _packed_champions(metadata: dict[str, str]) -> dict[str, str]:
    """Champion version per model packed in a build, from its metadata (catalog, else the sample_quality bundle)."""
    if metadata.get("catalog"):
        served = json.loads(metadata["catalog"]).get("served", {})
        return {name: str(entry["champion"]) for name, entry in served.items()}
    if metadata.get("bundle"):
        return {"sample_quality": str(json.loads(metadata["bundle"])["champion"]["version"])}
    return {}
