"""Serving a catalog model's champion: the request contract, scoring, advice, the A/B split,
the cache, the online feature store and the prediction log. Plain modules, imported by the
BentoML service in ``bentos/sample_quality``, the Dagster assets and the benchmarks alike."""

#: The catalog model the prediction service (``bentos/sample_quality``) serves and the
#: monitoring reports watch, until the service serves every catalog model: its routes, its
#: prediction log, its drift and A/B reports and the drift-triggered retraining are this model's.
SERVED_MODEL = "sample_quality"
