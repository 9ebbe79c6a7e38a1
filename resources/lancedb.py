"""The LanceDB database of document chunks as a Dagster resource."""

import dagster as dg
from pydantic import Field

from tracseq_dagster.documents.embedding import Embedder
from tracseq_dagster.documents.index import DocumentIndex
from tracseq_dagster.documents.qa import open_index


class LanceDBResource(dg.ConfigurableResource):
    """An embedded LanceDB database: a local folder by default, object storage (s3://…) at scale.

    Each embedding model has its own chunk table in it (see tracseq_dagster.documents.index).
    """

    uri: str = Field(description="Folder or URI of the LanceDB database")

    def index(self, embedder: Embedder) -> DocumentIndex:
        return open_index(self.uri, embedder)
