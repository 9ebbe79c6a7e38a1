"""The repository's objects as module attributes, for the feast CLI (``feast -c <this folder> plan``).

Feast collects the entities, feature views and services it finds in the modules of a repository
folder; the platform builds the same objects with :func:`definitions.repo_objects` for the lake
of its settings (``TRACSEQ_LAKE_DIR``, else ``$TRACSEQ_DATA_DIR/lake``).
"""

from tracseq_dagster import settings
from tracseq_dagster.feature_repo.definitions import repo_objects

_objects = repo_objects(settings.lake_dir())
globals().update({f"_{type(o).__name__.lower()}_{o.name}": o for o in _objects.all()})
