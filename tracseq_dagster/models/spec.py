"""What a catalog model is: one declaration that the whole machinery reads.

A :class:`ModelSpec` says what a model predicts, for which entity and at which instant, when
its label becomes known (so no feature computed before that instant may see it), the feature
set, the task and metric, the families to sweep and the promotion gate's policy. Everything
downstream (training set, ``automl_trials[model|family]``, leaderboard, registered model,
gate, the CLI) takes a spec and never a model's name written in code.

The spec holds no Dagster and no MLflow: it is data plus one function, ``labelled_rows``,
that builds the model's labelled rows from the lake with the project's point-in-time code,
and its serving part (:class:`ServingSpec`): what a request carries, how request rows become
the model's features, how answers are categorised and worded. Every serving field has a
default, so a model whose features are the sample features is served without serving code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tracseq_dagster.promotion import GatePolicy

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from tracseq_dagster.lake import Lake

#: Column of ``labelled_rows`` whose value the stable holdout hashes instead of the row's index
#: (optional): rows of one group (a sample sequenced twice) are held out together.
HOLDOUT_GROUP = "_holdout_group"

Task = Literal["auto", "binary", "multiclass", "regression"]


@dataclass(frozen=True)
class ServingRows:
    """What a model's serving features are computed from (:attr:`ServingSpec.features`).

    ``requests`` are the validated request rows as a typed frame (the export contracts' dtypes:
    strings ``"string"``, timestamps ``datetime64[ns, UTC]``, numbers ``float64``), in request
    order; ``samples`` and ``runs`` the history packed into the Bento at build time (every
    accepted sample; every accepted run, or None when the model does not need them); ``as_of``
    the prediction time of each row (UTC), from :attr:`ServingSpec.prediction_time`;
    ``history`` what :attr:`ServingSpec.history_snapshot` built from them once per process
    (None without one).
    """

    requests: pd.DataFrame
    samples: pd.DataFrame
    runs: pd.DataFrame | None
    as_of: pd.DatetimeIndex
    history: Any = None


#: A risk factor in the lab's words: (feature, request record, the row's features) -> a sentence,
#: or None to fall back to "feature = value unit".
FactorWording = Callable[[str, Mapping[str, Any], Mapping[str, Any]], "str | None"]
#: Recommendations: (risk factor features worst first, request record, the row's features) -> actions.
Recommend = Callable[[list[str], Mapping[str, Any], Mapping[str, Any]], list[str]]


def distinct_actions(actions: Iterable[str | None]) -> list[str]:
    """A model's recommendations from one action (or None) per risk factor: in the factors' order, each once."""
    return list(dict.fromkeys(a for a in actions if a is not None))


@dataclass(frozen=True)
class ServingSpec:
    """How the Bento serves a catalog model (``/models/{name}/…``); every field has a default.

    * Request: the sample record of the export contract, plus the run-contract columns named
      in ``run_context`` (required) and ``optional_run_context`` (e.g. ``run_id``); a request
      for such a model is one library of a run about to be sequenced.
    * Features: ``features(rows)`` returns the model's features (columns ``ModelSpec.features``)
      of ``rows.requests``, one row per request row in order, computed with the same functions
      as training against the packed history, as of ``rows.as_of``. None: the sample features
      of :mod:`tracseq_dagster.features`. ``needs_runs`` packs the accepted runs too.
      ``history_snapshot(samples, runs)``, when set, is built once when the model is loaded
      and handed to every request as ``rows.history`` (e.g. a ``RunHistorySnapshot``).
    * Prediction time: ``prediction_time`` names the request column each row is predicted as
      of (``library_prep_ts``, ``received_ts``), as in training; None means now (never before
      the sample was received).
    * Answers: a classifier answers P(``target_class``) and its category (the first of
      ``categories`` whose threshold it reaches); a regressor answers its value and the
      split-conformal interval measured at registration (``interval_coverage``).
    * Explanations: features pushing away from the target class (or up, for a regressor) are
      risk factors, each worded by ``factor_wording`` when it has words for it; ``recommend``
      turns them into actions. ``feature_specs`` give units and meanings (GET /models/{name}).
    """

    run_context: tuple[str, ...] = ()
    optional_run_context: tuple[str, ...] = ()
    features: Callable[[ServingRows], pd.DataFrame] | None = field(default=None, repr=False)
    needs_runs: bool = False
    history_snapshot: Callable[[pd.DataFrame, pd.DataFrame | None], Any] | None = field(default=None, repr=False)
    prediction_time: str | None = None
    target_class: str = "pass"
    categories: tuple[tuple[str, float], ...] = (("high", 0.70), ("medium", 0.40), ("low", 0.0))
    interval_coverage: float = 0.9
    minimum: float | None = None  # a regressor's smallest possible value (its interval is cut there)
    factor_wording: FactorWording | None = field(default=None, repr=False)
    recommend: Recommend | None = field(default=None, repr=False)
    feature_specs: tuple[Any, ...] = field(default=(), repr=False)  # FeatureSpec of the model's features

    def category(self, probability: float) -> str:
        """The category of a probability of the target class (thresholds in declared order)."""
        for name, threshold in self.categories:
            if probability >= threshold:
                return name
        return self.categories[-1][0]

    def summary(self) -> dict[str, object]:
        return {
            "request": {
                "sample_record": True,
                "run_context": list(self.run_context),
                "optional": list(self.optional_run_context),
            },
            "target_class": self.target_class,
            "categories": {name: f">= {threshold}" for name, threshold in self.categories},
            "interval_coverage": self.interval_coverage,
        }


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
    #: How the Bento serves it (request, serving features, categories, wording); defaults fit sample-level models.
    serving: ServingSpec = field(default_factory=ServingSpec)

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
