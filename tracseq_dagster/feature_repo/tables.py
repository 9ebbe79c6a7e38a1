"""The lake tables the feature views read: where they live and how they are (re)written.

``sample_features`` is the offline feature table the ``sample_features`` asset writes
(``<lake>/features/sample_features.parquet``). The entity histories
(:mod:`tracseq_dagster.entity_history`) and the per-model tables
(:mod:`tracseq_dagster.feature_repo.model_tables`) are written here, under ``<lake>/feast/``,
from the accepted samples and runs, each as a whole new file (atomic rename), so a
materialisation never reads half a table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tracseq_dagster.entity_history import freezer_history, instrument_history, operator_history, site_history
from tracseq_dagster.feature_repo.model_tables import MODEL_TABLES, model_table_path
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.lake import Lake

#: Feature view name -> builder of its table from (accepted samples, accepted runs).
ENTITY_TABLES: dict[str, Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]] = {
    "operator_history": lambda samples, runs: operator_history(samples),
    "site_history": lambda samples, runs: site_history(samples),
    "freezer_history": lambda samples, runs: freezer_history(samples),
    "instrument_history": lambda samples, runs: instrument_history(runs),
}


def entity_table_path(lake_dir: str | Path, view: str) -> Path:
    return Path(lake_dir) / "feast" / f"{view}.parquet"


def sample_features_path(lake_dir: str | Path) -> Path:
    return Lake(lake_dir).features_path


def write_feature_tables(lake: Lake, models: list[str] | None = None) -> dict[str, int]:
    """Recompute every entity history and the tables of ``models`` (those of the catalog with a
    table by default) from the lake's accepted rows; rows written per table."""
    from tracseq_dagster.models import catalog

    samples = accepted_samples(lake)
    runs = lake.read_validated_runs()
    written: dict[str, int] = {}
    for view, build in ENTITY_TABLES.items():
        table: pd.DataFrame = build(samples, runs)
        lake.write_table(entity_table_path(lake.root, view), table)
        written[view] = len(table)
    for model in models if models is not None else [m for m in catalog() if m in MODEL_TABLES]:
        if samples.empty or (runs.empty and MODEL_TABLES[model].needs_runs):
            continue  # the view's table stays as it was (or absent) until its exports exist
        table = MODEL_TABLES[model].build(samples, runs)
        lake.write_table(model_table_path(lake.root, model), table)
        written[f"{model}_features"] = len(table)
    return written
