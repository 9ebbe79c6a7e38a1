"""Package a serving bundle as a Bento: the bundle goes into the BentoML model store, the
service in ``bentos/sample_quality`` is built around it, and both carry the bundle's tag
(the registered versions and a content hash), so ``bentoml list`` says what a Bento serves.
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

from tracseq_dagster.serving.bundle import BundleInfo  # noqa: E402

BENTO_NAME = "sample_quality"
BENTOFILE = Path("bentos") / "sample_quality" / "bentofile.yaml"


def project_root() -> Path:
    """The source tree the Bento is built from (the folder holding ``bentos/``)."""
    return Path(__file__).resolve().parents[2]


def save_bundle_model(bundle_dir: Path, info: BundleInfo) -> str:
    """Copy the bundle into the BentoML model store (once per tag); returns ``name:tag``."""
    tag = f"{BENTO_NAME}:{info.tag}"
    try:
        return str(bentoml.models.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    labels = {"champion_version": info.champion.version, "family": info.champion.family}
    if info.challenger is not None:
        labels["challenger_version"] = info.challenger.version
    with bentoml.models.create(tag, labels=labels, metadata={"bundle": json.dumps(asdict(info))}) as model:
        shutil.copytree(bundle_dir, model.path, dirs_exist_ok=True)
    return tag


def build_bento(bundle_dir: Path, info: BundleInfo, root: Path | None = None) -> bentoml.Bento:
    """The Bento of the service around this bundle, version = the bundle's tag (rebuilt if present)."""
    root = root or project_root()
    model_tag = save_bundle_model(bundle_dir, info)
    try:
        bentoml.bentos.delete(f"{BENTO_NAME}:{info.tag}")
    except bentoml.exceptions.NotFound:
        pass
    return bentoml.bentos.build_bentofile(
        str(root / BENTOFILE), build_ctx=str(root), version=info.tag, args={"model_tag": model_tag}
    )
