"""Jobs of the training domain: sweeps per (model, family), then register and gate per model."""

import dagster as dg

from assets.models.partitions import AUTOML_PARTITIONS, MODEL_PARTITIONS

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
