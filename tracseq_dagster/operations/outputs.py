"""Where the lab operations outputs live in the lake, and what they hold: the contract between
the assets that write them and the ones that read them (alerts, the weekly QC report).

Each is one Parquet file under ``<lake>/operations/`` (``Lake.operations_path``), rewritten whole
by its asset. A reader must accept that a file does not exist yet (its asset never ran) and say
so rather than fail.
"""

from __future__ import annotations

#: Point-in-time state of every freezer: freezer_id, set_point_c, boxes, positions, occupied, free,
#: excursions_30d, excursion_risk_30d (P(excursion in the next 30 days) from the served
#: freezer_excursion_risk champion, empty when none), as_of.
FREEZER_STATE = "freezer_state.parquet"
#: Point-in-time state of every box: freezer_id, rack, box, capacity, occupied, free, as_of.
BOX_STATE = "box_state.parquet"
#: Occupancy per freezer and rack and the forecast date each freezer fills: freezer_id, rack,
#: positions, occupied, occupancy, intake_per_day, fills_on, as_of.
STORAGE_UTILISATION = "storage_utilisation.parquet"
#: Scored samples and freezer days of the judged window: kind ("sample" | "freezer_day"), entity
#: (sample_id | freezer_id), ts (received_ts | day, UTC), score (1 = threshold), threshold,
#: is_anomaly, reasons (text, "; "-separated: the features that make it unusual, rarest first; empty
#: when not an anomaly), project_id, site (samples only). Rewritten whole by the anomalies asset.
ANOMALIES = "anomalies.parquet"
#: Every alert delivery tried, appended run after run (the dedupe and rate-limit history): key
#: (stable per alert), kind ("anomaly" | "check_failed" | "drift" | "freezer_risk"), severity,
#: subject, message, created_at (UTC), delivered (bool), channel ("webhook" | "slack" | "none" when
#: no channel is configured), attempts, error (empty when delivered).
ALERTS = "alerts.parquet"
#: Daily demand forecast (:mod:`tracseq_dagster.operations.demand_forecast`): sample_type, site, ds
#: (day), forecast, lo, hi (the interval), level (its nominal coverage, %), model (the series' model or
#: fallback). One series per (sample_type, site), plus the lab total as sample_type == site == "all"
#: (forecast as a series of its own: its interval is not the sum of the pairs' intervals).
#: The implied sequencing in DEMAND_CAPACITY (:mod:`tracseq_dagster.operations.sequencing_capacity`):
#: week (first day of the forecast week), instrument_id ("all": the week's total), samples (libraries
#: expected), samples_hi, runs_needed, runs_needed_hi (from the interval's upper bound),
#: runs_per_week_capacity, utilisation (runs_needed / capacity), status ("ok", "at risk (upper bound
#: over capacity)", "over capacity").
DEMAND_FORECAST = "demand_forecast.parquet"
DEMAND_CAPACITY = "demand_capacity.parquet"
