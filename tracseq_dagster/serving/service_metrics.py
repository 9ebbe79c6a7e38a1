"""Prometheus metrics of the prediction service, beside BentoML's own.

BentoML already exports request counts, in-progress requests and the latency histogram per
endpoint and status code on ``/metrics``; these add what only the service knows: predictions
by category, variant and model version, cache hits, and the micro-batch sizes.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

import bentoml


class ServiceMetrics:
    def __init__(self) -> None:
        self.predictions = bentoml.metrics.Counter(
            name="tracseq_predictions_total",
            documentation="Predictions answered, by quality category, A/B variant and model version",
            labelnames=["category", "variant", "model_version"],
        )
        self.cache_hits = bentoml.metrics.Counter(
            name="tracseq_prediction_cache_hits_total", documentation="Predictions answered from the cache"
        )
        self._children: dict[tuple[str, str, str], Any] = {}

    def observe(self, answers: list[Any]) -> None:
        tally = Tally((a.response["category"], a.response["model"]["variant"], a.response["model"]["version"]) for a in answers)
        for labels, count in tally.items():
            self._counter(*labels).inc(count)

    def _counter(self, category: str, variant: str, version: str) -> Any:
        """The labelled counter, looked up once: ``labels()`` takes a lock and builds a key every call."""
        key = (category, variant, version)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.predictions.labels(category=category, variant=variant, model_version=version)
        return child

    def observe_table(self, table: Any) -> None:
        """The same counts for a columnar answer (its category, variant and model_version columns)."""
        counts = table.group_by(["category", "variant", "model_version"]).aggregate([([], "count_all")])
        names = ("category", "variant", "model_version", "count_all")
        for category, variant, version, count in zip(*(counts.column(n).to_pylist() for n in names), strict=True):
            self._counter(category, variant, version).inc(count)

    def cache_hit(self) -> None:
        self.cache_hits.inc()
