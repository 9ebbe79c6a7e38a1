"""Jobs: what a sensor run or the CLI materializes together."""

import dagster as dg

from tracseq_dagster.partitions import AUTOML_PARTITIONS, MODEL_PARTITIONS, document_partitions, lab_export_partitions

# One export file (per export kind): parse, validate, quarantine and the blocking check; and
# the audit job with Data Docs of the raw rows. Built per kind by export_jobs.
from tracseq_dagster.export_jobs import (  # noqa: E402, F401 - re-exported, the sample kind's names
    audit_raw_export_job,
    audit_raw_run_export_job,
    ingest_lab_export_job,
    ingest_run_export_job,
)

# The offline feature store, rebuilt from every accepted sample.
sample_features_job = dg.define_asset_job(
    "build_sample_features",
    selection=dg.AssetSelection.assets("sample_features"),
    description="Recompute point-in-time features of every accepted sample.",
)

# One model family's sweep of one catalog model per run: a backfill over a model's row of the
# (model, family) partitions fans the families out.
automl_sweep_job = dg.define_asset_job(
    "automl_sweep",
    selection=dg.AssetSelection.assets("automl_trials"),
    partitions_def=AUTOML_PARTITIONS,
    description="Sweep one model family for one catalog model (one partition per model and family; "
    "backfill a model's families to run them in parallel).",
)

# After a model's sweeps: rank them, register the winner as challenger, and let the gate decide.
register_and_promote_job = dg.define_asset_job(
    "register_and_promote",
    selection=dg.AssetSelection.assets("automl_leaderboard", "registered_model", "promotion_gate"),
    partitions_def=MODEL_PARTITIONS,
    description="For one catalog model: rank the family sweeps, refit and register the winner as challenger, "
    "run the promotion gate.",
)

# After a promotion: export the champion (and challenger) with the history and build the Bento.
package_bento_job = dg.define_asset_job(
    "package_bento",
    selection=dg.AssetSelection.assets("sample_quality_bento"),
    description="Package the registry's champion (and challenger) as the sample_quality Bento.",
)

# The monitoring reports over the prediction log (the drift check runs with its asset).
monitoring_reports_job = dg.define_asset_job(
    "monitoring_reports",
    selection=dg.AssetSelection.assets("feature_drift_report", "ab_test_report"),
    description="Feature drift (with its check) and the A/B report over the recent prediction log.",
)

# Hourly by default: the drift check's failure is what the retraining sensor acts on.
monitoring_schedule = dg.ScheduleDefinition(
    name="monitoring_reports_hourly",
    job=monitoring_reports_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Feature drift and the A/B report over the prediction log, every hour.",
)

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
