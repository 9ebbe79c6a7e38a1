"""What a catalog model is: one declaration that the whole machinery reads.

A :class:`ModelSpec` says what a model predicts, for which entity and at which instant, when
its label becomes known (so no feature computed before that instant may see it), the feature
set, the task and metric, the families to sweep and the promotion gate's policy. Everything
downstream (training set, ``automl_trials[model|family]``, leaderboard, registered model,
gate, the CLI) takes a spec and never a model's name written in code.

The spec holds no Dagster and no MLflow: it is data plus one function, ``labelled_rows``,
that builds the model's labelled rows from the lake with the project's point-in-time code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tracseq_dagster.promotion import GatePolicy

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from tracseq_dagster.lake import Lake

#: Column of ``labelled_rows`` whose value the stable holdout hashes instead of the row's index
#: (optional): rows of one group (a sample sequenced twice) are held out together.
HOLDOUT_GROUP = "_holdout_group"

Task = Literal["auto", "binary", "multiclass", "regression"]


@dataclass(frozen=True)
class ModelSpec:
    """One predictive model of the lab, declared.

    ``labelled_rows(lake)`` returns one row per labelled entity, indexed by the entity key
    (unique strings), with the columns ``features`` then ``label``, and optionally
    :data:`HOLDOUT_GROUP`. Every feature must be computed as of ``predicted_at`` and may
    use only labels known strictly before it (``label_known_at`` says when that is); the
    model's leak test checks exactly that.
    """

    name: str
    description: str
    label: str
    label_known_at: str
    entity: tuple[str, ...]
    predicted_at: str
    features: tuple[str, ...]
    labelled_rows: Callable[[Lake], pd.DataFrame] = field(repr=False)
    #: Dagster assets the labelled rows are read from (the training chain depends on them).
    sources: tuple[str, ...] = ()
    task: Task = "auto"
    metric: str | None = None  # None: the engine's default for the task
    families: tuple[str, ...] | None = None  # None: every family of the AutoML engine
    gate: GatePolicy = field(default_factory=GatePolicy)
    slice_column: str | None = None  # the gate's "no slice left behind" groups
    #: Extra version string of the feature code the rows come from (lineage in MLflow).
    feature_code_version: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"a model name is a Python identifier (it names routes, runs and files): {self.name!r}")
        if self.label in self.features:
            raise ValueError(f"{self.name}: the label {self.label} is also listed as a feature")
        if self.slice_column is not None and self.slice_column not in self.features:
            raise ValueError(f"{self.name}: the slice column {self.slice_column} is not a feature")

    def swept_families(self) -> tuple[str, ...]:
        """The families this model sweeps (checked against the engine's, imported only here:
        the catalog is read by serving too, which must not load the training engine)."""
        from tracseq_dagster.automl.families import ALL_FAMILIES

        chosen = ALL_FAMILIES if self.families is None else self.families
        unknown = sorted(set(chosen) - set(ALL_FAMILIES))
        if unknown or not chosen:
            raise ValueError(f"{self.name}: families must be among {', '.join(ALL_FAMILIES)}; got {', '.join(unknown) or 'none'}")
        return tuple(chosen)

    def summary(self) -> dict[str, object]:
        """The declaration as plain values (the CLI, the registry tags, an API listing)."""
        return {
            "name": self.name,
            "description": self.description,
            "label": self.label,
            "label_known_at": self.label_known_at,
            "entity": list(self.entity),
            "predicted_at": self.predicted_at,
            "features": list(self.features),
            "task": self.task,
            "metric": self.metric,
            "families": list(self.families) if self.families is not None else "all",
            "slice_column": self.slice_column,
        }
