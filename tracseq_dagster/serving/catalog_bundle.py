"""One serving bundle per catalog model, packed beside the ``sample_quality`` bundle of the Bento.

The Bento's model folder holds the ``sample_quality`` bundle at its root (:mod:`.bundle`, what
``/predict`` and the other original routes serve) and, under ``models/<name>/``, one bundle per
catalog model that has a champion::

    models/catalog.json              which models are served and which were skipped (and why)
    models/<name>/champion/…         model.pkl and card.json (with the interval of a regressor)
    models/<name>/challenger/…       the same, when a challenger exists besides the champion
    models/<name>/history/samples.parquet   every accepted sample (the point-in-time history)
    models/<name>/history/runs.parquet      every accepted run, when the model needs runs
    models/<name>/reference.json     typical training values per feature (occlusion baseline)
    models/<name>/warm_up.parquet    training feature rows scored at load (:mod:`.warm_up`)
    models/<name>/bundle.json        versions, tag, history size

Nothing here names a model: the catalog says which exist, their declarations what they need.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tracseq_dagster.lake import Lake
from tracseq_dagster.models import ModelSpec, catalog
from tracseq_dagster.serving.bundle import ModelCard, export_variants
from tracseq_dagster.serving.scoring import reference_values
from tracseq_dagster.serving.traffic_split import CHALLENGER, CHAMPION
from tracseq_dagster.serving.warm_up import write_warm_up_rows

if TYPE_CHECKING:  # the registry (MLflow) only when exporting, never in the prediction service's environment
    from tracseq_dagster.registry import ModelRegistry

CATALOG_FOLDER = "models"
CATALOG_FILE = "catalog.json"
SAMPLES_FILE = "samples.parquet"
RUNS_FILE = "runs.parquet"


@dataclass(frozen=True)
class ModelBundleInfo:
    """What ``models/<name>/bundle.json`` records."""

    model: str
    tag: str
    champion: ModelCard
    challenger: ModelCard | None
    history_samples: int
    history_runs: int | None
    created_at: str

    @classmethod
    def load(cls, path: Path) -> ModelBundleInfo:
        raw = json.loads(path.read_text())
        cards = {k: ModelCard(**raw[k]) if raw[k] else None for k in (CHAMPION, CHALLENGER)}
        return cls(**{**raw, **cards})


@dataclass(frozen=True)
class CatalogBundle:
    """The models packed (by name) and the ones skipped, with the reason."""

    served: dict[str, ModelBundleInfo] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """A content tag over every packed model's tag (changes when any of them does)."""
        joined = "|".join(f"{name}:{info.tag}" for name, info in sorted(self.served.items()))
        return hashlib.sha256(joined.encode()).hexdigest()[:8]

    def summary(self) -> dict[str, Any]:
        return {
            "served": {name: {"champion": i.champion.version, "challenger": i.challenger.version if i.challenger else None,
                              "family": i.champion.family} for name, i in self.served.items()},
            "skipped": self.skipped,
        }  # fmt: skip


def export_model_bundle(spec: ModelSpec, registry: ModelRegistry, lake: Lake, samples: pd.DataFrame,
                        runs: pd.DataFrame | None, folder: Path) -> ModelBundleInfo | None:  # fmt: skip
    """``spec``'s champion (and challenger) with the history it needs into ``folder``; None without a champion."""
    champion = registry.version(CHAMPION)
    if champion is None:
        return None
    cards = export_variants(registry, champion, registry.version(CHALLENGER), folder, spec.feature_code_version)
    return pack_model_bundle(spec, cards, samples, runs, spec.labelled_rows(lake), folder)


def pack_model_bundle(spec: ModelSpec, cards: dict[str, ModelCard], samples: pd.DataFrame, runs: pd.DataFrame | None,
                      labelled_rows: pd.DataFrame, folder: Path) -> ModelBundleInfo:  # fmt: skip
    """Beside the exported variants (``cards``): the history, the reference values of the training rows and ``bundle.json``."""
    (folder / "history").mkdir(parents=True, exist_ok=True)
    samples.to_parquet(folder / "history" / SAMPLES_FILE, index=False)
    n_runs = None
    if spec.serving.needs_runs and runs is not None:
        runs.to_parquet(folder / "history" / RUNS_FILE, index=False)
        n_runs = len(runs)
    (folder / "reference.json").write_text(json.dumps(reference_values(labelled_rows, spec.features), indent=2))
    write_warm_up_rows(labelled_rows, spec.features, folder)
    versions = f"v{cards[CHAMPION].version}" + (f"-c{cards[CHALLENGER].version}" if CHALLENGER in cards else "")
    cutoff = str(samples["received_ts"].max()) if len(samples) else ""
    content = hashlib.sha256(f"{spec.name}|{versions}|{cutoff}|{len(samples)}|{n_runs}|{spec.feature_code_version}".encode())
    info = ModelBundleInfo(
        model=spec.name,
        tag=f"{versions}-{content.hexdigest()[:8]}",
        champion=cards[CHAMPION],
        challenger=cards.get(CHALLENGER),
        history_samples=len(samples),
        history_runs=n_runs,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    (folder / "bundle.json").write_text(json.dumps(asdict(info), indent=2))
    return info


def write_catalog(bundle: CatalogBundle, bundle_dir: Path) -> None:
    """``models/catalog.json``: what the service loads (served) and lists as not served (skipped)."""
    (bundle_dir / CATALOG_FOLDER).mkdir(parents=True, exist_ok=True)
    (bundle_dir / CATALOG_FOLDER / CATALOG_FILE).write_text(json.dumps(bundle.summary(), indent=2))


def export_catalog(
    registry_of: Callable[[str], ModelRegistry], lake: Lake, samples: pd.DataFrame, bundle_dir: Path
) -> CatalogBundle:
    """Every catalog model with a champion into ``bundle_dir/models/<name>``; the others are listed as skipped."""
    runs = lake.read_validated_runs() if any(s.serving.needs_runs for s in catalog().values()) else None
    out = CatalogBundle()
    for name, spec in catalog().items():
        registry = registry_of(name)
        if registry.version(CHAMPION) is None:
            out.skipped[name] = f"no champion yet (tracseq train --model {name})"
        elif spec.serving.needs_runs and (runs is None or runs.empty):
            out.skipped[name] = "no accepted sequencing runs to serve it from"
        else:
            info = export_model_bundle(spec, registry, lake, samples, runs, bundle_dir / CATALOG_FOLDER / name)
            out.served[name] = info  # type: ignore[assignment]  # a champion exists: never None here
    write_catalog(out, bundle_dir)
    return out
