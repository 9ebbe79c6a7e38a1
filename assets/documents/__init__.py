"""Lab documents: chunks per document, the LanceDB index, submission forms, their jobs and sensors."""

import dagster as dg

from assets.documents.documents import document_chunks, document_index, submission_metadata
from assets.documents.jobs import index_documents_job, ingest_document_job
from assets.documents.sensors import documents_automation_sensor, documents_sensor

defs = dg.Definitions(
    assets=[document_chunks, document_index, submission_metadata],
    jobs=[ingest_document_job, index_documents_job],
    sensors=[documents_sensor, documents_automation_sensor],
)
