"""The Feast feature repository of TracSeq: entities, feature views over the lake, one feature
service per catalog model.

Feast is the store and the registry (feature services, point-in-time joins, the Redis online
store); the features themselves are computed by the project's own point-in-time code
(:mod:`tracseq_dagster.features`, :mod:`tracseq_dagster.entity_history`) and written to the
lake as Parquet, which Feast reads. The layout is Feast's: ``feature_store.yaml`` and
``repo.py`` beside the definition modules (``entities``, ``views``, ``services``, ...), so
``feast -c <this folder> plan`` works; the platform itself builds the same objects for a given
lake with :func:`~tracseq_dagster.feature_repo.definitions.repo_objects` and its config with
:func:`~tracseq_dagster.feature_repo.config.feast_config` from its settings (a test keeps the
YAML equal to it).
"""

import warnings

# Feast's modules call ``warnings.simplefilter("once", DeprecationWarning)`` when imported,
# for the whole process: every library's deprecation warnings then reached the CLI's output
# (a one-line error became three lines). Feast is imported here first, and the filters are
# put back as they were.
with warnings.catch_warnings():
    import feast  # noqa: F401
