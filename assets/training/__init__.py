"""Training every catalog model: sweeps, leaderboard, registered model, promotion gate, their jobs,
and retraining (the sensor on drift or new labels, the weekly schedule)."""

import dagster as dg

from assets.training.automl import automl_leaderboard, automl_trials, promotion_gate, registered_model
from assets.training.jobs import automl_sweep_job, register_and_promote_job
from assets.training.retraining import retraining_schedule, retraining_sensor

defs = dg.Definitions(
    assets=[automl_trials, automl_leaderboard, registered_model, promotion_gate],
    jobs=[automl_sweep_job, register_and_promote_job],
    schedules=[retraining_schedule],
    sensors=[retraining_sensor],
)
