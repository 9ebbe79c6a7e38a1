"""Raw sample records in, answers out: the one prediction path of every entry point.

The Bento service, the bare-Starlette baseline of the benchmark and the tests all call
:meth:`SampleQualityPredictor.predict` with validated records. It computes features with
:func:`tracseq_dagster.features.compute_features` against the bundle's history snapshot (the
same function the ``sample_features`` asset runs), splits the records between champion and
challenger, scores each group with its model and words the answer.
"""

from __future__ import annotations

import json
import pickle
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import FEATURE_NAMES, SAMPLE_ID, HistorySnapshot, compute_features
from tracseq_dagster.serving.advice import category, recommendations, risk_factors
from tracseq_dagster.serving.bundle import ModelCard
from tracseq_dagster.serving.request_schema import records_frame
from tracseq_dagster.serving.scoring import DEFAULT_TREE_ATTRIBUTION, ContributionMethod, QualityScorer
from tracseq_dagster.serving.traffic_split import CHALLENGER, CHAMPION, TrafficSplit


@dataclass(frozen=True)
class Variant:
    card: ModelCard
    scorer: QualityScorer


@dataclass(frozen=True)
class Answer:
    """One record's answer (``response``) and the row the prediction log keeps of it."""

    response: dict[str, Any]
    log_row: dict[str, Any]


class SampleQualityPredictor:
    """Loads a serving bundle (see :mod:`.bundle`) and answers batches of records."""

    def __init__(
        self,
        bundle_dir: str | Path,
        split: TrafficSplit | None = None,
        tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION,
    ) -> None:
        folder = Path(bundle_dir)
        self.info: dict[str, Any] = json.loads((folder / "bundle.json").read_text())
        self.tag: str = self.info["tag"]
        self.history = HistorySnapshot.load(folder / "history")
        reference = json.loads((folder / "reference.json").read_text())
        self.variants: dict[str, Variant] = {}
        for name in (CHAMPION, CHALLENGER):
            if (folder / name / "model.pkl").exists():
                with (folder / name / "model.pkl").open("rb") as handle:
                    model = pickle.load(handle)  # noqa: S301 (our own registry's artifact)
                self.variants[name] = Variant(ModelCard.load(folder / name / "card.json"), QualityScorer(model, reference, tree_attribution))
        self.split = split or TrafficSplit()
        if self.split.challenger_share > 0 and CHALLENGER not in self.variants:
            # Asked for an A/B test without a challenger in the bundle: everything goes to the champion.
            self.split = TrafficSplit(0.0, self.split.salt)

    def model_info(self) -> dict[str, Any]:
        """What ``GET /model`` answers."""
        return {
            "bundle": self.tag,
            "variants": {name: v.card.__dict__ | {"attribution": v.scorer.method} for name, v in self.variants.items()},
            "traffic_split": {"challenger_share": self.split.challenger_share, "salt": self.split.salt},
            "history_cutoff": self.info["history_cutoff"],
            "history_samples": self.info["history_samples"],
        }

    def predict(
        self, records: list[dict[str, Any]], request_ids: list[str] | None = None, *, as_of: pd.Timestamp | None = None
    ) -> list[Answer]:
        """Answers for validated records (``SampleRecord.model_dump()``), in input order.

        Records are computed as of ``as_of`` (default now; or the latest ``received_ts`` among
        them, if a clock runs ahead), always after the history snapshot's cutoff. A sample id
        repeated in one call is answered once per occurrence.
        """
        if not records:
            return []
        ids = request_ids or [uuid.uuid4().hex for _ in records]
        answers: list[Answer | None] = [None] * len(records)
        for positions in _rounds_without_repeats([r["sample_id"] for r in records]):
            batch = [records[i] for i in positions]
            for i, answer in zip(positions, self._predict_unique(batch, [ids[i] for i in positions], as_of), strict=True):
                answers[i] = answer
        return [a for a in answers if a is not None]

    def _predict_unique(self, records: list[dict[str, Any]], request_ids: list[str], as_of: pd.Timestamp | None) -> list[Answer]:
        frame = records_frame(records)
        moment = pd.Timestamp.now(tz="UTC") if as_of is None else as_of
        as_of = max(moment, frame["received_ts"].max(), self.history.cutoff + pd.Timedelta(microseconds=1))
        features = compute_features(frame, self.history, as_of=as_of).reindex(frame[SAMPLE_ID].astype(object))
        variant_of = np.array([self.split.variant(str(s)) for s in frame[SAMPLE_ID]], dtype=object)
        out: list[Answer | None] = [None] * len(records)
        for name, variant in self.variants.items():
            rows = np.flatnonzero(variant_of == name)
            if not len(rows):
                continue
            part = features.iloc[rows]
            scores = variant.scorer.score(part)
            vectors = part[list(FEATURE_NAMES)].to_dict("records")
            for k, i in enumerate(rows):
                out[i] = self._answer(records[i], request_ids[i], name, variant, vectors[k], scores, k)
        return [a for a in out if a is not None]

    def _answer(self, record: dict[str, Any], request_id: str, name: str, variant: Variant,
                vector: dict[str, Any], scores: Any, k: int) -> Answer:  # fmt: skip
        p_pass = float(scores.quality_probability[k])
        factors = risk_factors(scores.contributions[k], vector)
        response = {
            "request_id": request_id,
            "sample_id": record["sample_id"],
            "quality_probability": round(p_pass, 6),
            "category": category(p_pass),
            "predicted_status": str(scores.predicted_status[k]),
            "class_probabilities": {c: round(float(p), 6) for c, p in zip(scores.classes, scores.probabilities[k], strict=True)},
            "risk_factors": [f.as_dict() for f in factors],
            "recommendations": recommendations(factors, record, vector),
            "attribution": scores.method,
            "model": {"name": variant.card.name, "version": variant.card.version, "variant": name},
        }
        log_row = {
            "request_id": request_id,
            "sample_id": record["sample_id"],
            "variant": name,
            "model_version": variant.card.version,
            "quality_probability": p_pass,
            "category": response["category"],
            "predicted_status": response["predicted_status"],
            **{f: (None if pd.isna(v) else (str(v) if isinstance(v, str) or not np.isscalar(v) else v)) for f, v in vector.items()},
        }
        return Answer(response, log_row)


def _rounds_without_repeats(sample_ids: list[str]) -> list[list[int]]:
    """Positions grouped so that no group repeats an id (compute_features needs unique ids)."""
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for position, sample_id in enumerate(sample_ids):
        occurrence = seen.get(sample_id, 0)
        seen[sample_id] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append(position)
    return rounds
