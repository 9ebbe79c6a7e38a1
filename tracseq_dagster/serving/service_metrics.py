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

    def observe(self, answers: list[Any]) -> None:
        tally = Tally((a.response["category"], a.response["model"]["variant"], a.response["model"]["version"]) for a in answers)
        for (category, variant, version), count in tally.items():
            self.predictions.labels(category=category, variant=variant, model_version=version).inc(count)

    def cache_hit(self) -> None:
        self.cache_hits.inc()
