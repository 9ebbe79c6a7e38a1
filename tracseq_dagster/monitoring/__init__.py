"""Monitoring every catalog model: feature drift, the A/B comparison, and when to retrain, per model.

Plain, typed modules (no Dagster): :mod:`.drift`, :mod:`.ab_report`, :mod:`.retraining`,
:mod:`.watched` (which models have predictions to judge). Each takes a model's declaration
(:class:`~tracseq_dagster.models.ModelSpec`) and its rows of the prediction log; none names a
model. The assets in ``assets/monitoring/`` and the retraining sensor call them.
"""
