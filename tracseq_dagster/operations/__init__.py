"""Running the lab, as plain modules (no Dagster): freezer state and storage placement, anomaly
detection and notifications, demand forecasts, the weekly QC report. The assets in
``assets/operations/`` and the ``tracseq storage`` / ``tracseq report`` commands call them."""
