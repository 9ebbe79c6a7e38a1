"""Partitions shared by assets, checks, jobs and sensors."""

import dagster as dg

# One partition per LIMS export file, keyed by the SHA-256 (shortened) of its bytes.
lab_export_partitions = dg.DynamicPartitionsDefinition(name="lab_exports")

# Run tag through which the sensor tells a run which file a partition came from.
SOURCE_PATH_TAG = "tracseq/source_path"

# One partition per lab document (PDF, DOCX, ...), keyed like exports by its content hash.
document_partitions = dg.DynamicPartitionsDefinition(name="documents")
