"""Jobs: what a sensor run or the CLI materializes together."""

import dagster as dg

from tracseq_dagster.partitions import lab_export_partitions

# One export file: parse, validate, quarantine (and their checks).
ingest_lab_export_job = dg.define_asset_job(
    "ingest_lab_export",
    selection=dg.AssetSelection.assets("raw_lab_exports", "validated_samples", "quarantined_samples"),
    partitions_def=lab_export_partitions,
    description="Parse, validate and quarantine one LIMS export (one partition per file).",
)

# The offline feature store, rebuilt from every accepted sample.
sample_features_job = dg.define_asset_job(
    "build_sample_features",
    selection=dg.AssetSelection.assets("sample_features"),
    description="Recompute point-in-time features of every accepted sample.",
)
