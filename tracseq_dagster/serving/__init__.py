"""Serving the catalog models' champions: the request contracts, scoring, advice, the A/B split,
the cache, the online feature store and the prediction log. Plain modules, imported by the
BentoML service in ``bentos/predictions``, the Dagster assets and the benchmarks alike."""

#: The catalog model of the service's original routes (``/predict``, ``/batch_predict``,
#: ``/fast/*``, ``/model``) and the one the monitoring reports watch: the prediction log's
#: ``read`` returns its rows by default, and rows logged before the log kept the model are its.
#: Every catalog model is served under ``/models/{name}/…`` (:mod:`.catalog_routes`).
SERVED_MODEL = "sample_quality"
