"""Answers of any catalog model: request rows in, value, category or interval, risk factors and
recommendations out. Generic over the catalog; what is particular to a model comes from its
declaration (:class:`~tracseq_dagster.models.ServingSpec`).

For each batch of validated rows (:mod:`.catalog_schema`) the predictor

1. types them as the export contracts do and fixes each row's prediction time (the declared
   request column, e.g. ``library_prep_ts``; or now, never before the sample's receipt);
2. computes the model's features with the model's own serving function (the same point-in-time
   code as training) against the history packed into the Bento (:mod:`.catalog_bundle`);
3. splits the rows between champion and challenger (sticky per sample, salted per model);
4. scores them (:mod:`.model_scoring`: exact attributions where the family allows) and words the answer: a classifier's P(target class) and
   its category, a regressor's value with ``value ± half_width`` (split-conformal, measured at
   registration on the holdout) and its coverage; risk factors are the features pushing away
   from the target class (upward, for a regressor), worded in the lab's words where the model
   has words for them; features with no contribution are never listed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import FEATURE_SPEC_BY_NAME, SAMPLE_ID, HistorySnapshot, feature_columns
from tracseq_dagster.models import ModelSpec, catalog, get_model
from tracseq_dagster.models.catalog import EXTRA_MODULES_VARIABLE
from tracseq_dagster.models.spec import ServingRows
from tracseq_dagster.serving.advice import ANSWER_DECIMALS, TOP_RISK_FACTORS, _plain
from tracseq_dagster.serving.bundle import ModelCard, load_variants
from tracseq_dagster.serving.catalog_bundle import CATALOG_FILE, CATALOG_FOLDER, RUNS_FILE, SAMPLES_FILE, ModelBundleInfo
from tracseq_dagster.serving.catalog_schema import request_columns, request_frame
from tracseq_dagster.serving.ensemble_scoring import scorer_description
from tracseq_dagster.serving.model_scoring import CatalogScorer, model_scorer
from tracseq_dagster.serving.prediction_log import entity_key
from tracseq_dagster.serving.predictor import Answer, _with_request_id
from tracseq_dagster.serving.scoring import DEFAULT_TREE_ATTRIBUTION, ContributionMethod
from tracseq_dagster.serving.traffic_split import CHALLENGER, CHAMPION, TrafficSplit
from tracseq_dagster.serving.warm_up import warm_up


@dataclass(frozen=True)
class Variant:
    card: ModelCard
    scorer: CatalogScorer


class ModelPredictor:
    """One catalog model's bundle (``models/<name>/``), answering batches of validated rows."""

    def __init__(
        self,
        folder: str | Path,
        split: TrafficSplit | None = None,
        tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION,
    ) -> None:
        folder = Path(folder)
        self.info = ModelBundleInfo.load(folder / "bundle.json")
        self.spec: ModelSpec = get_model(self.info.model)
        self.name = self.spec.name
        self.samples = pd.read_parquet(folder / "history" / SAMPLES_FILE)
        runs = folder / "history" / RUNS_FILE
        self.runs = pd.read_parquet(runs) if runs.exists() else None
        build_history = self.spec.serving.history_snapshot  # once per process, not per request
        if build_history is None and self.spec.serving.features is None:
            build_history = _sample_history  # the sample features: aggregates as they stand after the packed history
        self.history = build_history(self.samples, self.runs) if build_history is not None else None
        reference = json.loads((folder / "reference.json").read_text())
        self.variants: dict[str, Variant] = {
            alias: Variant(
                card, model_scorer(model, self.spec.features, reference, self.spec.serving.target_class, tree_attribution)
            )
            for alias, (card, model) in load_variants(folder).items()
        }
        self.warm_up_s = warm_up([v.scorer for v in self.variants.values()], folder)
        split = split or TrafficSplit()
        # Sticky per sample and salted per model: one sample may meet each model's challenger independently.
        share = split.challenger_share if CHALLENGER in self.variants else 0.0
        self.split = TrafficSplit(share, f"{split.salt}:{self.name}")
        self.regression = self.variants[CHAMPION].scorer.regression
        self._units = {s.name: s.unit for s in self.spec.serving.feature_specs} or {
            n: FEATURE_SPEC_BY_NAME[n].unit for n in self.spec.features if n in FEATURE_SPEC_BY_NAME}  # fmt: skip

    # -- what GET /models and GET /models/{name} answer ------------------------------------------

    def listing(self) -> dict[str, Any]:
        """The registry listing of this model as packed: versions, aliases, metrics, feature set."""
        return {
            "name": self.name,
            "description": self.spec.description,
            "task": "regression" if self.regression else "classification",
            "bundle": self.info.tag,
            "versions": [
                {
                    "version": v.card.version,
                    "alias": alias,
                    "family": v.card.family,
                    "metrics": v.card.metrics,
                    **({"interval": v.card.interval} if v.card.interval else {}),
                }
                for alias, v in self.variants.items()
            ],  # fmt: skip
            "features": list(self.spec.features),
            "routes": [f"/models/{self.name}/{r}" for r in ("predict", "batch_predict", "fast/batch_predict")],
        }

    def details(self) -> dict[str, Any]:
        """The listing plus the declaration, the request columns, lineage, split and feature glossary."""
        glossary = {s.name: {"unit": s.unit, "description": s.description} for s in self.spec.serving.feature_specs}
        return {
            **self.listing(),
            "declaration": self.spec.summary(),
            "serving": self.spec.serving.summary(),
            "request_columns": list(request_columns(self.spec)),
            "variants": {alias: v.card.__dict__ | scorer_description(v.scorer) for alias, v in self.variants.items()},
            "traffic_split": {"challenger_share": self.split.challenger_share, "salt": self.split.salt},
            "history": {"samples": self.info.history_samples, "runs": self.info.history_runs},
            "feature_glossary": glossary or {n: {"unit": u} for n, u in self._units.items()},
        }

    # -- answers -----------------------------------------------------------------------------

    def predict(self, records: list[dict[str, Any]], request_ids: list[str] | None = None, *,
                now: pd.Timestamp | None = None) -> list[Answer]:  # fmt: skip
        """Answers for validated rows (the request model's ``model_dump()``), in input order.

        Identical rows are computed once (the feature code wants one row per entity).
        """
        if not records:
            return []
        ids = request_ids or [uuid.uuid4().hex for _ in records]
        first: dict[str, int] = {}
        distinct = [first.setdefault(json.dumps(r, sort_keys=True, default=str), i) for i, r in enumerate(records)]
        unique = sorted(set(distinct))
        rows = [records[i] for i in unique]
        features = self.features(rows, now=now)
        answers = dict(zip(unique, self._answers(rows, features, [ids[i] for i in unique]), strict=True))
        return [answers[d] if d == i else _with_request_id(answers[d], ids[i]) for i, d in enumerate(distinct)]

    def features(self, records: list[dict[str, Any]], *, now: pd.Timestamp | None = None) -> pd.DataFrame:
        """The model's features of the rows, in order, as of each row's prediction time."""
        frame = request_frame(self.spec, records)
        serving = self.spec.serving
        if serving.prediction_time is not None:
            as_of = pd.DatetimeIndex(frame[serving.prediction_time])
        else:  # now, but never before the sample arrived (a clock behind the LIMS)
            moment = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
            moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
            received = pd.DatetimeIndex(frame["received_ts"])
            as_of = received.where(received > moment, moment)
        rows = ServingRows(frame, self.samples, self.runs, as_of, self.history)
        if serving.features is not None:
            features = serving.features(rows)
        else:
            # The snapshot (which serving/online_history.py may refresh from Feast) answers rows computed
            # after its cutoff, the same features as the packed frame; earlier rows need the frame.
            history = self.history
            after = isinstance(history, HistorySnapshot) and len(as_of) and as_of.min() > history.cutoff
            computed = feature_columns(frame, history if after else self.samples, as_of=as_of.to_numpy())
            features = computed.frame(sort=False).reset_index(drop=True)
        if len(features) != len(frame) or features.index.tolist() != list(range(len(frame))):
            raise ValueError(f"{self.name}: the serving features must have one row per request row, in order")
        return features[list(self.spec.features)]

    def _answers(self, records: list[dict[str, Any]], features: pd.DataFrame, ids: list[str]) -> list[Answer]:
        chosen = self.split.challengers([str(r.get(SAMPLE_ID)) for r in records])
        out: list[Answer | None] = [None] * len(records)
        for alias, positions in ((CHAMPION, np.flatnonzero(~chosen)), (CHALLENGER, np.flatnonzero(chosen))):
            if not len(positions):
                continue
            variant = self.variants[alias]
            part = features.iloc[positions].reset_index(drop=True)
            scores = variant.scorer.score(part)
            vectors = part.astype(object).where(part.notna(), None).to_dict("records")
            for k, i in enumerate(positions.tolist()):
                out[i] = self._answer(records[i], vectors[k], scores.values[k], scores.contributions[k], ids[i], alias,
                                      variant, None if scores.probabilities is None else scores.probabilities[k],
                                      scores.classes, scores.method)  # fmt: skip
        return [a for a in out if a is not None]

    def _answer(self, record: dict[str, Any], vector: dict[str, Any], value: float, contributions: np.ndarray, request_id: str,
                alias: str, variant: Variant, probabilities: np.ndarray | None, classes: tuple[str, ...],
                method: str) -> Answer:  # fmt: skip
        serving = self.spec.serving
        value = round(float(value), ANSWER_DECIMALS)
        factors = self.risk_factors(contributions, record, vector)
        recommendations = serving.recommend([f["feature"] for f in factors], record, vector) if serving.recommend else []
        answer: dict[str, Any] = {"request_id": request_id, **{c: record.get(c) for c in self.spec.entity if c in record}}
        log: dict[str, Any] = {"request_id": request_id, "model": self.name, "sample_id": record.get(SAMPLE_ID), "variant": alias,
                               "model_version": variant.card.version, "prediction": value,
                               "entity_key": entity_key(self.spec.entity, record, request_id)}  # fmt: skip
        if self.regression:
            answer["prediction"] = value
            interval = variant.card.interval
            if interval:
                half = float(interval["half_width"])
                low = value - half if serving.minimum is None else max(value - half, serving.minimum)
                answer["interval"] = {"low": round(low, ANSWER_DECIMALS), "high": round(value + half, ANSWER_DECIMALS),
                                      "half_width": half, "coverage": interval["coverage"]}  # fmt: skip
        else:
            assert probabilities is not None, "a classifier's answer has its class probabilities"
            category = serving.category(value)
            predicted = classes[int(np.argmax(probabilities))]
            answer |= {"probability": value, "target_class": serving.target_class, "category": category,
                       "predicted_class": predicted,
                       "class_probabilities": dict(zip(classes, np.round(probabilities, ANSWER_DECIMALS).tolist(), strict=True))}  # fmt: skip
            log |= {"quality_probability": value, "category": category, "predicted_status": predicted}
        answer |= {"risk_factors": factors, "recommendations": recommendations, "attribution": method,
                   "model": {"name": self.name, "version": variant.card.version, "variant": alias}}  # fmt: skip
        log |= vector  # every feature of the model: the log has a column for each catalog model's
        return Answer(answer, log)

    def risk_factors(self, contributions: np.ndarray, record: dict[str, Any], vector: dict[str, Any]) -> list[dict[str, Any]]:
        """The features pushing away from the target class (upward for a regressor), worst first; never a zero."""
        toward_risk = contributions if self.regression else -contributions
        order = np.argsort(-toward_risk, kind="stable")[:TOP_RISK_FACTORS]
        wording = self.spec.serving.factor_wording
        factors: list[dict[str, Any]] = []
        for j in order.tolist():
            if not toward_risk[j] > 0:
                break
            name = self.spec.features[j]
            value = _plain(vector.get(name))
            unit = self._units.get(name, "")
            text = (wording(name, record, vector) if wording else None) or _generic_wording(name, value, unit)
            if any(f["text"] == text for f in factors):
                continue  # two features of one fact (a failure rate and its counts): said once, by the stronger
            factors.append({"feature": name, "value": value, "unit": unit,
                            "contribution": round(float(contributions[j]), ANSWER_DECIMALS), "text": text})  # fmt: skip
        return factors


def _generic_wording(name: str, value: Any, unit: str) -> str:
    """ "freeze thaw cycles: 3 (count)" for a feature the model has no words for."""
    if value is None:
        shown = "not recorded"
    elif isinstance(value, float):
        shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    else:
        shown = str(value)
    return f"{name.replace('_', ' ')}: {shown}" + (f" ({unit})" if unit and value is not None and unit != "category" else "")


class ServedCatalog:
    """Every model bundle of a Bento (``<bundle>/models``), by name; empty when there is none."""

    def __init__(self, bundle_dir: str | Path, split: TrafficSplit | None = None,
                 tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION) -> None:  # fmt: skip
        folder = Path(bundle_dir) / CATALOG_FOLDER
        summary = json.loads((folder / CATALOG_FILE).read_text()) if (folder / CATALOG_FILE).exists() else {}
        self.skipped: dict[str, str] = dict(summary.get("skipped", {}))
        self.models: dict[str, ModelPredictor] = {}
        known = catalog()
        for name in summary.get("served", {}):
            if name in known:
                self.models[name] = ModelPredictor(folder / name, split, tree_attribution)
            else:  # packed by a process whose catalog had it: its module is not importable here
                self.skipped[name] = f"packed, but not in this process's model catalog (see {EXTRA_MODULES_VARIABLE})"

    def listing(self) -> dict[str, Any]:
        return {"models": [m.listing() for m in self.models.values()], "not_served": self.skipped}


def _sample_history(samples: pd.DataFrame, runs: pd.DataFrame | None) -> HistorySnapshot:
    return HistorySnapshot.build(samples)
