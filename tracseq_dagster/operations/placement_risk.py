"""P(excursion in the next 30 days) per freezer, for the placement recommender and the freezer alerts:
the ``freezer_excursion_risk`` champion where there is one, else history.

1. **The champion of ``freezer_excursion_risk``** (registered and passed its gate: the
   ``champion`` alias). Two ways to reach it, with the same features:

   * served by the prediction Bento (:func:`model_risk`, the ``/storage/recommend`` route): its
     request is a sample record, so each freezer is asked with a copy of the last sample packed in
     it, moved to the moment asked about (``received_ts`` = ``as_of``, not yet extracted), and
     scored by the **champion** variant only (an A/B challenger that has not passed the gate does
     not place samples);
   * loaded from the registry by the ``freezer_state`` asset (:func:`freezer_risk`), scored on
     the freezers' day rows as of the state's time; the alerts and ``tracseq storage recommend``
     read what it wrote.

   The risk is P(``excursion``) (``1 - P(none)``); the reasons say
   "predicted by freezer_excursion_risk vN".
2. **Else the freezer's history** (:func:`~tracseq_dagster.operations.freezer_history.freezer_days`):
   its excursion rate ``λ`` (excursions per day: recorded excursions per sample-day of exposure,
   the mean of the 30-day, 90-day and all-history rates, those known) read as a Poisson
   process: ``P = 1 - exp(-30 λ)``. Said as "risk from history, no model".
3. A freezer with neither gets no probability; the recommender assumes the median of the
   others and says so.

Nothing here raises for a missing or failing model or an empty history: the recommender then
answers from what is left (a dependency down never turns an answer into an error), and the
notes say what happened.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tracseq_dagster.operations.freezer_history import freezer_days, freezer_days_as_of
from tracseq_dagster.operations.freezer_state import parse_locations
from tracseq_dagster.operations.storage_placement import FreezerRisk

MODEL = "freezer_excursion_risk"
HORIZON_DAYS = 30
HISTORY_SOURCE = "risk from history, no model"
EXCURSION_CLASS = "excursion"
CHAMPION_ALIAS = "champion"
RATE_COLUMNS = ("excursion_rate_30d", "excursion_rate_90d", "excursion_rate_all")


class Answering(Protocol):
    """What the Bento's :class:`~tracseq_dagster.serving.catalog_predictor.ModelPredictor` offers
    (its ``variants`` and ``features`` are used when present: the champion scores alone)."""

    name: str
    samples: pd.DataFrame

    def predict(self, records: list[dict[str, Any]]) -> list[Any]: ...


def model_source(model: str, version: object) -> str:
    """How a reason names a model's prediction: ``predicted by freezer_excursion_risk v3``."""
    return f"predicted by {model} v{version}"


@dataclass(frozen=True)
class Champion:
    """A registered champion loaded from the registry: the fitted model and its version."""

    model: Any
    version: str


@dataclass
class RiskReport:
    """Risk per freezer and what was used (``source``: "model", "history" or "none"), with notes for the answer."""

    risk: dict[str, FreezerRisk]
    source: str
    notes: list[str] = field(default_factory=list)


def overall_source(risk: dict[str, FreezerRisk]) -> str:
    """ "model", "history", "mixed" or "none": where the freezers' risks came from."""
    sources = {"model" if r.source.startswith(("predicted", "model")) else "history" for r in risk.values()}
    return "model" if sources == {"model"} else "history" if sources == {"history"} else "mixed" if sources else "none"


def history_risk(history: pd.DataFrame, freezer_ids: Sequence[str], as_of: pd.Timestamp) -> dict[str, FreezerRisk]:
    """``1 - exp(-30 λ)`` per freezer from its day rows (``freezer_days``) as of ``as_of``; freezers without a rate left out."""
    if history.empty or not len(freezer_ids):
        return {}
    rows = freezer_days_as_of(history, pd.Series(list(freezer_ids)), pd.DatetimeIndex([as_of] * len(freezer_ids)))
    # The mean of the 30-day, 90-day and all-history rates: recent enough to see a fault episode,
    # steady enough that a quiet month does not read as no risk at all.
    rate = rows[list(RATE_COLUMNS)].astype(float).mean(axis=1, skipna=True)
    out = {}
    for freezer, value in zip(freezer_ids, rate):
        if np.isfinite(value):
            out[str(freezer)] = FreezerRisk(1.0 - math.exp(-HORIZON_DAYS * max(float(value), 0.0)), HISTORY_SOURCE)
    return out


def _request_rows(
    model_name: str, samples: pd.DataFrame, freezer_ids: Sequence[str], as_of: pd.Timestamp
) -> tuple[list[str], list[dict[str, Any]]]:
    """One sample record per freezer: its last packed sample, moved to ``as_of`` (not extracted, not sequenced)."""
    from tracseq_dagster.serving.catalog_schema import request_model  # the Bento's validation, only when a model is served

    located = samples.assign(_freezer=parse_locations(samples["storage_location"])["freezer_id"])
    located = located[located["_freezer"].isin(set(freezer_ids))]
    last = located.sort_values("received_ts", kind="stable").groupby("_freezer").tail(1)
    model = request_model(model_name)
    fields = set(model.model_fields)
    # Through JSON, as a LIMS would send them: numpy scalars and pandas timestamps become plain values.
    records = json.loads(last[[c for c in last.columns if c in fields]].to_json(orient="records", date_format="iso"))
    received = pd.Timestamp(as_of)
    names, rows = [], []
    for freezer, record in zip(last["_freezer"].astype(str), records):
        collected = pd.Timestamp(record.get("collection_ts") or received)
        collected = collected.tz_localize("UTC") if collected.tzinfo is None else collected
        record |= {"received_ts": received.isoformat(), "collection_ts": min(collected, received).isoformat(),
                   "extraction_ts": None, "sequencing_ts": None}  # fmt: skip
        rows.append(model.model_validate(record).model_dump())
        names.append(freezer)
    return names, rows


def model_risk(predictor: Answering, freezer_ids: Sequence[str], as_of: pd.Timestamp) -> dict[str, FreezerRisk]:
    """P(excursion in 30 days) per freezer from the served model's champion (freezers it has no packed sample of are left out).

    A served predictor with ``variants`` is scored by its champion variant only (no A/B split,
    no prediction log: these are the lab's own questions, not a sample's prediction); an object
    that only answers ``predict`` is taken at its word and its answers' versions are named.
    """
    names, rows = _request_rows(predictor.name, predictor.samples, freezer_ids, as_of)
    if not rows:
        return {}
    champion = getattr(predictor, "variants", {}).get(CHAMPION_ALIAS)
    if champion is not None:
        scores = champion.scorer.score(predictor.features(rows))  # type: ignore[attr-defined]
        classes = list(scores.classes)
        if EXCURSION_CLASS in classes:
            risk = scores.probabilities[:, classes.index(EXCURSION_CLASS)]
        else:
            risk = 1.0 - scores.values
        source = model_source(predictor.name, champion.card.version)
        return {n: FreezerRisk(min(max(float(r), 0.0), 1.0), source) for n, r in zip(names, risk, strict=True)}
    answers = predictor.predict(rows)
    out = {}
    for name, answer in zip(names, answers):
        body = answer.response if hasattr(answer, "response") else answer
        p = float(body["probability"])
        risk_p = p if body.get("target_class") == EXCURSION_CLASS else 1.0 - p
        model = body.get("model", {})
        out[name] = FreezerRisk(min(max(risk_p, 0.0), 1.0), model_source(predictor.name, model.get("version", "?")))
    return out


def freezer_risk(
    history: pd.DataFrame | None, freezer_ids: Sequence[str], as_of: pd.Timestamp, champion: Champion | None
) -> RiskReport:
    """The risk of every freezer as the ``freezer_state`` asset records it: the registered champion's
    prediction where there is one, the history rule for the rest (and for all without a champion),
    each with its source; never raises for a champion that cannot score."""
    from tracseq_dagster.operations.storage_utilisation import champion_risk  # the model's features, as served

    notes: list[str] = []
    risk: dict[str, FreezerRisk] = {}
    days = history if history is not None else pd.DataFrame()
    if champion is None:
        notes.append(f"no {MODEL} champion registered: risk from history, no model")
    elif not days.empty and len(freezer_ids):
        try:
            predicted = champion_risk(champion.model, days, [str(f) for f in freezer_ids], as_of)
            source = model_source(MODEL, champion.version)
            risk = {f: FreezerRisk(float(p), source) for f, p in predicted.items() if np.isfinite(p)}
        except Exception as error:  # noqa: BLE001 - a champion that cannot score leaves history to answer
            notes.append(f"{MODEL} v{champion.version} could not score ({type(error).__name__}: {error}); risk from history")
    missing = [f for f in freezer_ids if f not in risk]
    if missing and not days.empty:
        risk |= history_risk(days, missing, as_of)
    return RiskReport(risk, overall_source(risk), notes)


def excursion_risk(
    samples: pd.DataFrame,
    freezer_ids: Sequence[str],
    as_of: pd.Timestamp,
    *,
    predictor: Answering | None = None,
    history: pd.DataFrame | None = None,
) -> RiskReport:
    """The risk of every freezer: the model's where it answers, history's for the rest; never raises for either missing.

    ``history``: ``freezer_days(samples)`` when the caller keeps it (the Bento builds it once); built here otherwise.
    """
    notes: list[str] = []
    risk: dict[str, FreezerRisk] = {}
    if predictor is not None:
        try:
            risk = model_risk(predictor, freezer_ids, as_of)
        except Exception as error:  # any failure of the model falls back to history, said in the notes
            notes.append(f"the {MODEL} model could not answer ({type(error).__name__}: {error}); risk from history instead")
    else:
        notes.append(f"no {MODEL} model is served: risk from history, no model")
    missing = [f for f in freezer_ids if f not in risk]
    if missing:
        try:
            days = history if history is not None else freezer_days(samples)
            risk |= history_risk(days, missing, as_of)
        except Exception as error:  # a history the day builder cannot read: no risk rather than no answer
            notes.append(f"the excursion history could not be read ({type(error).__name__}: {error})")
    unknown = [f for f in freezer_ids if f not in risk]
    if unknown:
        notes.append(f"no model answer and no excursion history for {', '.join(unknown)}: the median of the others assumed")
    return RiskReport(risk, overall_source(risk), notes)
