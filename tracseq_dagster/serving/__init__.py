"""Serving the ``sample_quality`` champion: the request contract, scoring, advice, the A/B split,
the cache, the online feature store and the prediction log. Plain modules, imported by the
BentoML service in ``bentos/sample_quality``, the Dagster assets and the benchmarks alike."""
