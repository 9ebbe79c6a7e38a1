"""The serving bundle: everything the prediction service loads, exported from the registry.

A bundle is a folder::

    champion/model.pkl      the registered model (MLflow's cloudpickle of the sklearn flavour)
    champion/card.json      name, version, alias, family, training metrics, lineage
    challenger/…            the same for the challenger, when one exists besides the champion
    history/                the HistorySnapshot of every accepted sample (point-in-time aggregates)
    reference.json          typical training values per feature (occlusion baseline)
    warm_up.parquet         training feature rows scored at load (:mod:`.warm_up`)
    bundle.json             which variants are in it, when it was made, its tag

The ``prediction_bento`` asset saves a bundle into the BentoML model store and builds the
Bento around it, so a Bento is self-contained: no registry or lake access at serve time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tracseq_dagster.artifact_digest import ARTIFACT_DIGEST_TAG, verify_folder
from tracseq_dagster.conformal import INTERVAL_COVERAGE_TAG, INTERVAL_HALF_WIDTH_TAG
from tracseq_dagster.features import FEATURE_CODE_VERSION, FEATURE_NAMES, HistorySnapshot
from tracseq_dagster.serving.scoring import reference_values
from tracseq_dagster.serving.traffic_split import CHALLENGER, CHAMPION
from tracseq_dagster.serving.warm_up import write_warm_up_rows

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from tracseq_dagster.registry import ModelRegistry

# MLflow, the registry and the tracking helpers (which pull in Optuna through the AutoML engine) are
# imported inside the export functions only: the prediction service loads bundles with this module, and
# its environment (requirements/serving.txt) has no MLflow.


@dataclass(frozen=True)
class ModelCard:
    """What ``GET /model`` reports about one served model version."""

    name: str
    version: str
    alias: str
    family: str
    run_id: str
    metrics: dict[str, float]
    feature_code_version: str
    training_fingerprint: str
    training_rows: int
    export_hashes: list[str] = field(default_factory=list)
    #: A regressor's split-conformal interval from its version tags: half_width, coverage.
    interval: dict[str, float] | None = None

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class BundleInfo:
    tag: str  # "v<champion>" or "v<champion>-c<challenger>", plus a content hash
    champion: ModelCard
    challenger: ModelCard | None
    history_cutoff: str
    history_samples: int
    created_at: str


def export_bundle(registry: ModelRegistry, samples: pd.DataFrame, features: pd.DataFrame, folder: Path) -> BundleInfo:
    """Write the champion (and challenger, if different) into ``folder`` with the history of
    ``samples`` (every accepted sample) and the typical values of ``features`` (the offline table)."""
    from tracseq_dagster.registry import RegistryError

    champion = registry.version(CHAMPION)
    if champion is None:
        raise RegistryError(f"model {registry.name!r} has no champion yet: train and promote one first (tracseq train)")
    challenger = registry.version(CHALLENGER)
    folder.mkdir(parents=True, exist_ok=True)
    cards = export_variants(registry, champion, challenger, folder, FEATURE_CODE_VERSION)

    snapshot = HistorySnapshot.build(samples)
    snapshot.save(folder / "history")
    (folder / "reference.json").write_text(json.dumps(reference_values(features), indent=2))
    write_warm_up_rows(features, FEATURE_NAMES, folder)

    versions = f"v{cards[CHAMPION].version}" + (f"-c{cards[CHALLENGER].version}" if CHALLENGER in cards else "")
    content = hashlib.sha256(f"{versions}|{snapshot.cutoff}|{len(samples)}|{FEATURE_CODE_VERSION}".encode())
    info = BundleInfo(
        tag=f"{versions}-{content.hexdigest()[:8]}",
        champion=cards[CHAMPION],
        challenger=cards.get(CHALLENGER),
        history_cutoff=snapshot.cutoff.isoformat(),
        history_samples=len(samples),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    (folder / "bundle.json").write_text(json.dumps(asdict(info), indent=2))
    return info


def load_variants(folder: Path) -> dict[str, tuple[ModelCard, Any]]:
    """The champion (and challenger) a bundle folder holds: alias -> (card, fitted model)."""
    variants = {}
    for alias in (CHAMPION, CHALLENGER):
        if (folder / alias / "model.pkl").exists():
            with (folder / alias / "model.pkl").open("rb") as handle:
                model = pickle.load(handle)  # noqa: S301 (our own registry's artifact)
            variants[alias] = (ModelCard.load(folder / alias / "card.json"), model)
    return variants


def export_variants(registry: ModelRegistry, champion: Any, challenger: Any | None, folder: Path,
                    feature_code_version: str) -> dict[str, ModelCard]:  # fmt: skip
    """The champion (and the challenger, when it is another version) into ``folder/<alias>``."""
    cards = {CHAMPION: export_version(registry, champion, CHAMPION, folder / CHAMPION, feature_code_version)}
    if challenger is not None and str(challenger.version) != str(champion.version):
        cards[CHALLENGER] = export_version(registry, challenger, CHALLENGER, folder / CHALLENGER, feature_code_version)
    return cards


def export_version(registry: ModelRegistry, version: Any, alias: str, folder: Path, feature_code_version: str) -> ModelCard:
    """One registered version: ``model.pkl`` and ``card.json``, refused when its feature code is not this build's."""
    import mlflow

    from tracseq_dagster.registry import RegistryError
    from tracseq_dagster.tracking import fluent_api

    client = registry.client
    tags = version.tags or {}
    with fluent_api(client), tempfile.TemporaryDirectory(prefix="tracseq-export-") as download:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=registry.model_uri(str(version.version)), dst_path=download)
        )
        recorded = tags.get(ARTIFACT_DIGEST_TAG)
        if recorded:  # refused before it is unpickled: a pickle is code
            verify_folder(local, recorded, f"{registry.name} v{version.version}")
        else:
            log.warning("%s v%s was registered without an artifact digest: packaged unverified", registry.name, version.version)
        model = mlflow.sklearn.load_model(str(local))
    run = client.get_run(version.run_id)
    card = ModelCard(
        name=registry.name,
        version=str(version.version),
        alias=alias,
        family=tags.get("family", "unknown"),
        run_id=version.run_id,
        metrics={k: float(v) for k, v in run.data.metrics.items() if k.startswith(("holdout_", "cv_"))},
        feature_code_version=tags.get("feature_code_version", ""),
        training_fingerprint=tags.get("training_fingerprint", ""),
        training_rows=int(tags.get("training_rows", "0") or 0),
        export_hashes=[h for h in tags.get("export_hashes", "").split(",") if h],
        interval=(
            {"half_width": float(tags[INTERVAL_HALF_WIDTH_TAG]), "coverage": float(tags.get(INTERVAL_COVERAGE_TAG, "nan"))}
            if INTERVAL_HALF_WIDTH_TAG in tags
            else None
        ),  # fmt: skip
    )
    if card.feature_code_version and card.feature_code_version != feature_code_version:
        # Serving would compute features with other code than the model was trained on.
        raise RegistryError(
            f"{registry.name} v{card.version} was trained with feature code {card.feature_code_version}, "
            f"this build has {feature_code_version}: retrain before packaging"
        )
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "model.pkl").open("wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    (folder / "card.json").write_text(json.dumps(asdict(card), indent=2))
    return card
