"""Jobs of the documents domain."""

import dagster as dg

from assets.documents.partitions import document_partitions

# One lab document: parse and chunk it (one partition per file, like exports).
ingest_document_job = dg.define_asset_job(
    "ingest_document",
    selection=dg.AssetSelection.assets("document_chunks"),
    partitions_def=document_partitions,
    description="Parse and chunk one lab document (one partition per file).",
)

# The index and the submission table, brought in line with the documents folder.
index_documents_job = dg.define_asset_job(
    "index_documents",
    selection=dg.AssetSelection.assets("document_index", "submission_metadata"),
    description="Embed new chunks into LanceDB, drop deleted documents, extract submission forms.",
)
