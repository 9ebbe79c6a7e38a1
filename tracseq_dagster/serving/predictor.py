"""Raw sample records in, answers out: the one prediction path of every entry point.

The Bento service, the bare-Starlette baseline of the benchmark and the tests all call
:meth:`SampleQualityPredictor.predict` with validated records. It computes features with
:func:`tracseq_dagster.features.compute_features` against the bundle's history snapshot (the
same function the ``sample_features`` asset runs), splits the records between champion and
challenger, scores each group with its model and words the answer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import (
    FEATURE_NAMES,
    FEATURE_SPECS,
    SAMPLE_ID,
    FeatureColumns,
    HistorySnapshot,
    Samples,
    feature_columns,
)
from tracseq_dagster.serving.advice import (
    HIGH_THRESHOLD,
    MEDIUM_THRESHOLD,
    answered,
    category,
    named_risk_factors,
    recommendations,
    risk_factors,
    top_risk_factors,
)
from tracseq_dagster.serving.bundle import ModelCard, load_variants
from tracseq_dagster.serving.columnar import TableAnswers, ValidTable
from tracseq_dagster.serving.ensemble_scoring import EnsembleScorer, ensemble_of, scorer_description
from tracseq_dagster.serving.online_history import OnlineHistory
from tracseq_dagster.serving.request_schema import records_columns
from tracseq_dagster.serving.scoring import DEFAULT_TREE_ATTRIBUTION, PASS, ContributionMethod, QualityScorer
from tracseq_dagster.serving.traffic_split import CHALLENGER, CHAMPION, TrafficSplit
from tracseq_dagster.serving.warm_up import warm_up


@dataclass(frozen=True)
class Variant:
    card: ModelCard
    scorer: QualityScorer | EnsembleScorer


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
        #: Set by the service when the history aggregates are refreshed from Feast (:mod:`.online_history`).
        self.online: OnlineHistory | None = None
        self.history_digest = ""  # of the refreshed aggregates; empty while the packed ones serve
        reference = json.loads((folder / "reference.json").read_text())
        self.variants: dict[str, Variant] = {
            name: Variant(card, _quality_scorer(model, reference, tree_attribution))
            for name, (card, model) in load_variants(folder).items()
        }
        self.warm_up_s = warm_up([v.scorer for v in self.variants.values()], folder)
        self.split = split or TrafficSplit()
        if self.split.challenger_share > 0 and CHALLENGER not in self.variants:
            # Asked for an A/B test without a challenger in the bundle: everything goes to the champion.
            self.split = TrafficSplit(0.0, self.split.salt)

    def install_history(self, snapshot: HistorySnapshot) -> None:
        """Serve a refreshed history snapshot; cached answers of the previous one are no longer used."""
        hashed = pd.util.hash_pandas_object(snapshot.groups, index=True).to_numpy()
        self.history = snapshot
        self.history_digest = hashlib.blake2b(hashed.tobytes(), digest_size=6).hexdigest()

    @property
    def cache_tag(self) -> str:
        """What cached answers are keyed by: the bundle, and the history aggregates when they are refreshed."""
        return f"{self.tag}-h{self.history_digest}" if self.history_digest else self.tag

    def model_info(self) -> dict[str, Any]:
        """What ``GET /model`` answers."""
        return {
            "bundle": self.tag,
            "variants": {name: v.card.__dict__ | scorer_description(v.scorer) for name, v in self.variants.items()},
            "traffic_split": {"challenger_share": self.split.challenger_share, "salt": self.split.salt},
            "history_cutoff": self.info["history_cutoff"],
            "history_samples": self.info["history_samples"],
            "features": {spec.name: {"unit": spec.unit, "description": spec.description} for spec in FEATURE_SPECS},
            "categories": {
                "high": f"P(pass) >= {HIGH_THRESHOLD}",
                "medium": f"{MEDIUM_THRESHOLD} <= P(pass) < {HIGH_THRESHOLD}",
                "low": f"P(pass) < {MEDIUM_THRESHOLD}",
            },  # fmt: skip
        }

    def predict(
        self, records: list[dict[str, Any]], request_ids: list[str] | None = None, *, as_of: pd.Timestamp | None = None
    ) -> list[Answer]:
        """Answers for validated records (``SampleRecord.model_dump()``), in input order.

        Records are computed as of ``as_of`` (default now; or the latest ``received_ts`` among
        them, if a clock runs ahead), always after the history snapshot's cutoff. A sample id
        repeated in one call is answered once per occurrence (identical records are scored once;
        different records under one id, which micro-batching can bring together, in rounds).
        """
        if not records:
            return []
        ids = request_ids or [uuid.uuid4().hex for _ in records]
        # Identical records get identical answers: each distinct record is scored once.
        first_of: dict[str, int] = {}
        distinct = [first_of.setdefault(json.dumps(r, sort_keys=True, default=str), i) for i, r in enumerate(records)]
        unique = sorted(set(distinct))
        answers: dict[int, Answer] = {}
        for positions in _rounds_without_repeats([records[i]["sample_id"] for i in unique], unique):
            batch = [records[i] for i in positions]
            answers.update(zip(positions, self._predict_unique(batch, [ids[i] for i in positions], as_of), strict=True))
        return [_with_request_id(answers[d], ids[i]) if d != i else answers[i] for i, d in enumerate(distinct)]

    def predict_table(self, valid: ValidTable, *, as_of: pd.Timestamp | None = None, texts: bool = False) -> TableAnswers:
        """Answers for a validated columnar request (:mod:`.columnar`): one vectorised pass, no per-row objects.

        The same features, split, scores and risk factors as :meth:`predict`; recommendations
        (worded per row in Python) only when ``texts`` is set.
        """
        features = self._features(valid.frame, as_of)
        n = len(features)
        classes = tuple(dict.fromkeys(c for v in self.variants.values() for c in v.scorer.classes))
        probabilities = np.full((n, len(classes)), np.nan)
        contributions = np.zeros((n, len(FEATURE_NAMES)))
        variant_code = np.zeros(n, dtype=np.int8)
        names = tuple(self.variants)
        for name, rows in self._split(valid.frame):
            scores = self.variants[name].scorer.score(features if len(rows) == n else features.take(rows))
            columns = np.asarray([classes.index(c) for c in scores.classes], dtype=np.intp)
            probabilities[np.ix_(rows, columns)] = scores.probabilities
            contributions[rows] = scores.contributions
            variant_code[rows] = names.index(name)
        advice, worded_from = None, None
        if texts:  # per-row Python wording: about as costly as everything else together, hence on request
            records = _plain_records(valid.frame)
            vectors = _feature_vectors(features)
            advice = [recommendations(risk_factors(contributions[i], vectors[i]), records[i], vectors[i]) for i in range(n)]
            worded_from = (records, vectors)
        return TableAnswers(valid=valid, features=features, classes=classes, probabilities=probabilities,
                            contributions=contributions, variant_code=variant_code, variants=names,
                            versions=tuple(v.card.version for v in self.variants.values()),
                            methods=tuple(v.scorer.method for v in self.variants.values()),
                            model_name=self.variants[CHAMPION].card.name, bundle=self.tag, recommendations=advice,
                            worded_from=worded_from)  # fmt: skip

    def _features(self, samples: Samples, as_of: pd.Timestamp | None) -> FeatureColumns:
        """Features of the samples (a typed frame or plain columns), in their order, as of now
        (never before the snapshot's cutoff, nor before any sample was received)."""
        moment = pd.Timestamp.now(tz="UTC") if as_of is None else as_of
        received = samples["received_ts"]
        latest = pd.Timestamp(received.max(), tz="UTC") if isinstance(received, np.ndarray) else received.max()
        history = self.history  # one snapshot for the whole call: a refresh may swap it meanwhile
        if self.online is not None:
            self.online.note_samples(samples)
        as_of = max(moment, latest, history.cutoff + pd.Timedelta(microseconds=1))
        features = feature_columns(samples, history, as_of=as_of)
        if len(features) != len(received):  # validation requires received_ts, so every sample exists by as_of
            raise ValueError("every sample needs a received_ts to be scored")
        return features

    def _split(self, samples: Samples) -> list[tuple[str, np.ndarray]]:
        """The rows each variant answers (sticky per sample id), variants without rows left out."""
        chosen = self.split.challengers(np.asarray(samples[SAMPLE_ID], dtype=object))
        groups = [(CHAMPION, np.flatnonzero(~chosen)), (CHALLENGER, np.flatnonzero(chosen))]
        return [(name, rows) for name, rows in groups if len(rows)]

    def _predict_unique(self, records: list[dict[str, Any]], request_ids: list[str], as_of: pd.Timestamp | None) -> list[Answer]:
        columns = records_columns(records)
        features = self._features(columns, as_of)
        out: list[Answer | None] = [None] * len(records)
        for name, rows in self._split(columns):
            part = features if len(rows) == len(records) else features.take(rows)  # one variant: no copy
            for i, answer in zip(rows, self._answers(part, [records[i] for i in rows],
                                                     [request_ids[i] for i in rows], name, self.variants[name]), strict=True):  # fmt: skip
                out[i] = answer
        return [a for a in out if a is not None]

    def _answers(self, part: FeatureColumns, records: list[dict[str, Any]], request_ids: list[str], name: str,
                 variant: Variant) -> list[Answer]:  # fmt: skip
        """One variant's answers: the model runs once, then only the wording is per row."""
        scores = variant.scorer.score(part)
        p_pass = answered(scores.quality_probability).tolist()  # the category and the log read the answered value
        status = scores.predicted_status.tolist()
        probabilities = answered(scores.probabilities).tolist()
        vectors = _feature_vectors(part)
        model = {"name": variant.card.name, "version": variant.card.version, "variant": name}
        top, top_values = top_risk_factors(scores.contributions)  # one sort for the batch, not one per row
        answers = []
        for k, record in enumerate(records):
            factors = named_risk_factors(top[k], top_values[k], vectors[k])
            response = {
                "request_id": request_ids[k],
                "sample_id": record["sample_id"],
                "quality_probability": p_pass[k],
                "category": category(p_pass[k]),
                "predicted_status": status[k],
                "class_probabilities": dict(zip(scores.classes, probabilities[k], strict=True)),
                "risk_factors": [f.as_dict() for f in factors],
                "recommendations": recommendations(factors, record, vectors[k]),
                "attribution": scores.method,
                "model": model,
            }
            log_row = {
                "request_id": request_ids[k],
                "sample_id": record["sample_id"],
                "variant": name,
                "model_version": variant.card.version,
                "quality_probability": p_pass[k],
                "category": response["category"],
                "predicted_status": status[k],
                **vectors[k],
            }
            answers.append(Answer(response, log_row))
        return answers


def _quality_scorer(
    model: Any, reference: dict[str, Any], tree_attribution: ContributionMethod
) -> QualityScorer | EnsembleScorer:
    """``sample_quality``'s scorer: an ensemble's through its members (:mod:`.ensemble_scoring`)."""
    if ensemble_of(model) is not None:
        return EnsembleScorer(model, FEATURE_NAMES, reference, PASS, tree_attribution)
    return QualityScorer(model, reference, tree_attribution)


def _with_request_id(answer: Answer, request_id: str) -> Answer:
    """A repeated record's answer under its own request id."""
    return Answer({**answer.response, "request_id": request_id}, {**answer.log_row, "request_id": request_id})


def _rounds_without_repeats(sample_ids: list[str], positions: list[int]) -> list[list[int]]:
    """``positions`` grouped so that no group repeats a sample id (compute_features needs unique ids)."""
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for position, sample_id in zip(positions, sample_ids, strict=True):
        occurrence = seen.get(sample_id, 0)
        seen[sample_id] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append(position)
    return rounds


def _plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A typed frame's rows as plain dicts (None for missing), as the wording of advice reads them."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _feature_vectors(part: FeatureColumns) -> list[dict[str, Any]]:
    """Each row's features as a plain dict (NaN for unknown numbers, None for unknown categories)."""
    columns = {name: (part.numeric[name] if name in part.numeric else part.labels(name)).tolist() for name in FEATURE_NAMES}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
