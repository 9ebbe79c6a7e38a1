"""One partition per lab document (PDF, DOCX, ...), keyed like exports by its content hash."""

import dagster as dg

document_partitions = dg.DynamicPartitionsDefinition(name="documents")
