"""Prometheus metrics of the prediction service, beside BentoML's own.

BentoML already exports request counts, in-progress requests and the latency histogram per
endpoint and status code on ``/metrics``; these add what only the service knows: predictions
by category, variant and model version, cache hits, and the micro-batch sizes; and how the
service went on without a dependency (see :mod:`.dependencies`): failed calls per dependency,
calls answered without it per dependency and use, and prediction log rows dropped.
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
        self.dependencies = DependencyMetrics()
        self.log_dropped = bentoml.metrics.Counter(
            name="tracseq_prediction_log_dropped_rows_total",
            documentation="Prediction log rows dropped because the bounded queue was full (the log was down or slow)",
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

    def dependency_event(self, event: str, dependency: str, use: str) -> None:
        self.dependencies.event(event, dependency, use)

    def rows_dropped(self, count: int) -> None:
        self.log_dropped.inc(count)


class DependencyMetrics:
    """How a service went on without its dependencies (any service: sample_quality, document_qa)."""

    def __init__(self) -> None:
        self.failures = bentoml.metrics.Counter(
            name="tracseq_dependency_failures_total",
            documentation="Failed calls to a dependency (redis, prediction_log, ollama), probes included",
            labelnames=["dependency"],
        )
        self.bypassed = bentoml.metrics.Counter(
            name="tracseq_dependency_bypassed_total",
            documentation="Calls that went on without a dependency that was down (e.g. a cache lookup skipped)",
            labelnames=["dependency", "use"],
        )
        self.recoveries = bentoml.metrics.Counter(
            name="tracseq_dependency_recoveries_total",
            documentation="Times a dependency came back and was used again",
            labelnames=["dependency"],
        )

    def event(self, event: str, dependency: str, use: str) -> None:
        """A :class:`~.dependencies.CircuitBreaker` listener."""
        if event == "failure":
            self.failures.labels(dependency=dependency).inc()
        elif event == "bypass":
            self.bypassed.labels(dependency=dependency, use=use or "other").inc()
        elif event == "recovery":
            self.recoveries.labels(dependency=dependency).inc()
