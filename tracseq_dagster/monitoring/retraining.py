"""When to retrain a catalog model: the decision the retraining sensor takes, without Dagster.

Two reasons start a retraining:

Each model is judged on its own (:class:`RetrainState` per model in the sensor's
:class:`RetrainCursor`):

* **Drift**: the model's ``feature_drift_report`` partition's check failed (its latest
  evaluation). Acted on once per failed evaluation, and
  at most once per ``drift_cooldown_hours``: the drift reference is the training data, which a
  retraining on the same data does not change, so without a cool-down a lasting shift would
  retrain on every evaluation.
* **New labels**: at least ``min_new_labels`` more labelled rows of the model than
  the champion was trained on (its version's ``training_rows`` tag, set by ``register_winner``),
  or than at the last retraining this sensor started if that was later (the gate may have kept
  the old champion, and retraining again on the same labels would change nothing).

No champion yet means nothing to compare with: the first training is an operator's decision.
A retraining is a *batch*: one ``automl_sweep`` run per family of each model that has a
reason, then each model's ``register_and_promote`` once every sweep of that model in the batch
has finished and at least one succeeded. A weekly schedule starts batches too, whatever the
drift and the labels say.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from tracseq_dagster.lake import Lake
from tracseq_dagster.models import ModelSpec
from tracseq_dagster.registry import CHAMPION, ModelRegistry

#: Run tag that ties the runs of one retraining batch together.
RETRAIN_BATCH_TAG = "tracseq/retrain_batch"
RETRAIN_REASON_TAG = "tracseq/retrain_reason"
RETRAIN_MODEL_TAG = "tracseq/model"
DRIFT_REASON = "the feature drift check failed"
#: Batches the retraining sensor remembers as registered; older ones fall out of its look-back anyway.
SETTLED_KEPT = 50


@dataclass(frozen=True)
class RetrainPolicy:
    """How much change justifies a retraining, and what a retraining sweeps."""

    min_new_labels: int = 1000
    drift_cooldown_hours: float = 24.0


#: A cursor written before the sensor watched every model was this model's state (the only one
#: it watched then): it is read as that model's, the others start fresh.
SINGLE_MODEL_CURSOR_MODEL = "sample_quality"
_MODEL_FIELDS = ("drift_evaluation_seen", "labels_at_last_retrain", "last_retrain_at")


@dataclass
class RetrainState:
    """What the sensor remembers about one model between ticks."""

    drift_evaluation_seen: int | None = None  # id of the last failed drift check of this model acted on
    labels_at_last_retrain: int = 0
    last_retrain_at: str | None = None  # ISO 8601, UTC


@dataclass
class RetrainCursor:
    """The sensor's cursor: each model's state, its own open batch and the batches already chained."""

    models: dict[str, RetrainState] = field(default_factory=dict)
    batch: str | None = None  # the retraining whose sweeps are running (one or more models)
    batch_started_at: str | None = None  # ISO 8601, UTC
    settled_batches: list[str] = field(default_factory=list)  # "batch:model" registered (or given up), newest last

    def model(self, name: str) -> RetrainState:
        """The state of ``name`` (fresh for a model the sensor has not acted on yet)."""
        return self.models.setdefault(name, RetrainState())

    def settle(self, batch: str) -> None:
        """Remember that ``batch`` needs nothing more (only the last SETTLED_KEPT are kept)."""
        self.settled_batches = [*self.settled_batches, batch][-SETTLED_KEPT:]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, cursor: str | None) -> RetrainCursor:
        """The cursor, or a fresh one; a single-model cursor of an earlier release is upgraded."""
        if not cursor:
            return cls()
        raw = json.loads(cursor)
        if "models" not in raw:  # the single-model cursor: its model fields were SINGLE_MODEL_CURSOR_MODEL's
            state = RetrainState(**{k: raw[k] for k in _MODEL_FIELDS if k in raw})
            return cls(
                {SINGLE_MODEL_CURSOR_MODEL: state}, raw.get("batch"), raw.get("last_retrain_at"), raw.get("settled_batches", [])
            )
        models = {name: RetrainState(**state) for name, state in raw.pop("models").items()}
        return cls(models, **raw)


@dataclass(frozen=True)
class RetrainDecision:
    """Why to retrain now; no reasons: do not."""

    reasons: tuple[str, ...] = ()
    drift: bool = False  # the failed drift evaluation is one of the reasons (mark it seen)

    def __bool__(self) -> bool:
        return bool(self.reasons)


def retrain_decision(
    policy: RetrainPolicy,
    state: RetrainState,
    *,
    failed_drift_evaluation: int | None,
    labelled_now: int,
    champion_training_rows: int | None,
    now: datetime | None = None,
) -> RetrainDecision:
    """``failed_drift_evaluation`` is the id of the latest drift check evaluation if it failed, else None."""
    if champion_training_rows is None:
        return RetrainDecision()
    now = now or datetime.now(UTC)
    reasons = []
    if failed_drift_evaluation is not None and failed_drift_evaluation != state.drift_evaluation_seen:
        cooled = state.last_retrain_at is None or now - datetime.fromisoformat(state.last_retrain_at) >= timedelta(
            hours=policy.drift_cooldown_hours
        )
        if cooled:
            reasons.append(DRIFT_REASON)
    baseline = max(champion_training_rows, state.labels_at_last_retrain)
    if labelled_now - baseline >= policy.min_new_labels:
        reasons.append(f"{labelled_now - baseline} newly labelled rows (the champion learned from {champion_training_rows})")
    drift = bool(reasons) and reasons[0] == DRIFT_REASON
    return RetrainDecision(tuple(reasons), drift)


def champion_training_rows(registry: ModelRegistry) -> int | None:
    """Labelled rows the champion was trained on (None: no champion, or a version without the tag)."""
    champion = registry.version(CHAMPION)
    if champion is None or "training_rows" not in champion.tags:
        return None
    return int(champion.tags["training_rows"])


#: (lake root, model) → (the lake's tables_version, labelled rows) of the last count.
_COUNTS: dict[tuple[str, str], tuple[tuple[tuple[str, int, int], ...], int]] = {}


def labelled_row_count(lake: Lake, spec: ModelSpec) -> int:
    """Labelled rows of ``spec``: the rows its next training set would have (0 before its sources exist).

    Counting builds the model's labelled rows (every feature of the run models), so the count
    is kept per lake and model and recomputed only when an accepted table or the feature table
    changed (:meth:`Lake.tables_version`): the retraining sensor asks every tick, and most
    ticks nothing has landed.
    """
    version = lake.tables_version()
    key = (str(lake.root), spec.name)
    kept = _COUNTS.get(key)
    if kept is not None and kept[0] == version:
        return kept[1]
    try:
        count = len(spec.labelled_rows(lake))
    except FileNotFoundError:
        count = 0
    _COUNTS[key] = (version, count)
    return count
