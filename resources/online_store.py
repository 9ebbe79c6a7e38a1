"""The hand-written online feature store (Redis) as a Dagster resource.

Superseded by ``resources.feast.FeastResource`` (Feast's Redis online store); kept while the
``online_sample_features`` publisher is.
"""

import dagster as dg
from pydantic import Field

from tracseq_dagster.serving.online_store import RedisFeatureStore, features_prefix


class OnlineStoreResource(dg.ConfigurableResource):
    """Where the serving layer reads the latest features of known samples.

    Without ``redis_url`` the prediction service reads the lake's offline table instead, and
    publishing is skipped (the asset says so). Set it with ``dg.EnvVar("TRACSEQ_REDIS_URL")``.
    """

    redis_url: str | None = Field(default=None, description="redis://host:port/db; none = offline store only")
    key_prefix: str = Field(default_factory=features_prefix, description="Prefix of every feature key")

    def store(self) -> RedisFeatureStore | None:
        return RedisFeatureStore(self.redis_url, self.key_prefix) if self.redis_url else None
