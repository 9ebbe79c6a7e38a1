"""One partition per export file, per export kind, keyed by the SHA-256 (shortened) of its bytes."""

import dagster as dg

lab_export_partitions = dg.DynamicPartitionsDefinition(name="lab_exports")
run_export_partitions = dg.DynamicPartitionsDefinition(name="run_exports")
