"""Running the lab: freezer state, storage placement and utilisation, anomaly alerts, demand
forecasts and the weekly QC report. Each concern is one module of definitions, merged here; the
domain logic lives in :mod:`tracseq_dagster.operations`."""

import dagster as dg

from assets.operations import anomalies, demand, qc_report, storage

defs = dg.Definitions.merge(storage.defs, anomalies.defs, demand.defs, qc_report.defs)
