"""What becomes an alert: flagged anomalies, failed blocking checks, drift failures, freezers at risk.

Each function turns one source into :class:`~tracseq_dagster.operations.notifications.Alert` s
whose ``about`` is stable, so the same fact collected again on a later run is not sent again:
an anomaly by its kind, entity and time; a check failure by its check, partition and run; a
freezer's risk by freezer and ISO week (a freezer still at risk is recalled once a week).
"""

from __future__ import annotations

import pandas as pd

from tracseq_dagster.operations.notifications import Alert

#: excursion_risk_30d at or above this sends a freezer alert.
DEFAULT_RISK_BOUND = 0.5
#: A FREEZER_STATE written before it said its risk source held only the model's risk.
LEGACY_SOURCE = "freezer_excursion_risk"
#: At most this many anomaly alerts per run, highest scores first (the rest stay in ANOMALIES).
MAX_ANOMALY_ALERTS = 50


def anomaly_alerts(anomalies: pd.DataFrame, limit: int = MAX_ANOMALY_ALERTS) -> list[Alert]:
    """One alert per flagged row of ANOMALIES (kind, entity, ts, score, is_anomaly, reasons)."""
    if anomalies.empty:
        return []
    flagged = anomalies[anomalies["is_anomaly"].fillna(False).astype(bool)].sort_values("score", ascending=False).head(limit)
    alerts = []
    for row in flagged.itertuples(index=False):
        ts = pd.Timestamp(row.ts)
        what = "sample" if row.kind == "sample" else "freezer day"
        when = ts.strftime("%Y-%m-%d") if row.kind != "sample" else ts.isoformat()
        alerts.append(
            Alert(
                kind="anomaly",
                about=f"{row.kind}:{row.entity}:{ts.isoformat()}",
                subject=f"Unusual {what} {row.entity} ({when})",
                message=f"Anomaly score {float(row.score):.2f} (threshold 1.00). {row.reasons or ''}".strip(),
                details={"kind": row.kind, "entity": str(row.entity), "ts": ts.isoformat(), "score": float(row.score)},
            )
        )
    return alerts


def freezer_risk_alerts(freezer_state: pd.DataFrame, bound: float = DEFAULT_RISK_BOUND) -> list[Alert]:
    """One alert per freezer whose excursion_risk_30d is at or above ``bound`` (FREEZER_STATE rows).

    The message says where the risk comes from (``excursion_risk_source``): "predicted by
    freezer_excursion_risk vN" when the registered champion scored it, else the history rule
    ("risk from history, no model"), so the lab knows how much to trust it. The source is kept
    in the details; the dedupe key stays freezer and ISO week (a new champion does not re-send).
    """
    if freezer_state.empty or "excursion_risk_30d" not in freezer_state.columns:
        return []
    risk = pd.to_numeric(freezer_state["excursion_risk_30d"], errors="coerce")
    at_risk = freezer_state[risk >= bound]
    sources = (
        at_risk["excursion_risk_source"] if "excursion_risk_source" in at_risk.columns else pd.Series(None, index=at_risk.index)
    )
    alerts = []
    for row, value, said in zip(at_risk.itertuples(index=False), risk[risk >= bound], sources, strict=True):
        as_of = pd.Timestamp(getattr(row, "as_of", None) or pd.Timestamp.now(tz="UTC"))
        year, week, _ = as_of.isocalendar()
        source = str(said) if isinstance(said, str) and said else LEGACY_SOURCE
        if source.startswith("predicted"):
            how = f"The excursion risk {source}"
        elif source == LEGACY_SOURCE:
            how = f"The {LEGACY_SOURCE} model puts the excursion risk"
        else:
            how = f"No {LEGACY_SOURCE} champion is registered; from its recorded excursion rate ({source}), the risk"
        alerts.append(
            Alert(
                kind="freezer_risk",
                about=f"{row.freezer_id}:{year}-W{week:02d}",
                subject=f"Freezer {row.freezer_id}: excursion risk {value:.0%} in the next 30 days",
                message=f"{how} of a temperature excursion in {row.freezer_id} within 30 days is {value:.0%} "
                f"(alert bound {bound:.0%}). Check the unit and consider moving sensitive samples.",
                severity="critical" if value >= 0.8 else "warning",
                details={
                    "freezer_id": str(row.freezer_id),
                    "excursion_risk_30d": float(value),
                    "as_of": as_of.isoformat(),
                    "risk_source": source,
                },  # fmt: skip
            )
        )
    return alerts


def check_failure_alert(
    *, asset: str, check: str, partition: str | None, run_id: str, description: str | None, drift: bool
) -> Alert:
    """A failed asset check: a blocking contract check (data held back) or a model's drift check."""
    where = f"{asset}[{partition}]" if partition else asset
    if drift:
        subject = f"Feature drift: {partition or asset}"
        message = description or f"The drift check {check} of {where} failed; the retraining sensor acts on it."
    else:
        subject = f"Blocking check failed: {where}"
        message = description or f"The blocking check {check} of {where} failed: downstream assets are held back."
    return Alert(
        kind="drift" if drift else "check_failed",
        about=f"{asset}.{check}:{partition or ''}:{run_id}",
        subject=subject,
        message=message,
        severity="warning" if drift else "critical",
        details={"asset": asset, "check": check, "partition": partition, "run_id": run_id},
    )
