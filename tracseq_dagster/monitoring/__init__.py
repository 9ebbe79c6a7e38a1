"""Monitoring the served model: feature drift, the A/B comparison, and when to retrain.

Plain, typed modules (no Dagster): :mod:`.drift`, :mod:`.ab_report`, :mod:`.retraining`.
The assets in ``assets/monitoring.py`` and the retraining sensor call them.
"""
