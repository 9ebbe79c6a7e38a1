"""The weekly lab QC report as data: one ISO week, one project, every section computed from the lake.

The report is content first (:class:`QcReport`, a list of :class:`Section`), rendered afterwards
twice from the same object (:mod:`.report_html`, :mod:`.report_pdf`), so the HTML and the PDF can
never disagree on a number. Every number a reader sees goes through :func:`shown`, once; the
plain-language summary (:mod:`.report_summary`) is checked against :meth:`QcReport.facts`, the
same numbers as text.

Sections and where they come from:

* samples received: the validated samples of the project whose ``received_ts`` falls in the week;
* quarantined by rule: the lake's quarantine (``Lake.read_quarantine``), rows of the project received
  in the week, counted per broken rule (a row breaking two rules counts once for each);
* predicted at-risk samples: the latest ``sample_quality`` prediction of each of the week's samples
  in the prediction log, at risk when its category is not ``high``; recommendations come from an
  optional ``advisor`` (the prediction service answers them with the model's risk factors);
* sequencing success and turnaround forecasts: the latest ``sequencing_success`` and
  ``turnaround_hours`` predictions for the week's samples, beside the runs of the project that ended
  in the week (the realised pass rate);
* anomalies, storage utilisation, demand: the operations outputs (:mod:`.outputs`), each of which may
  not exist yet; a missing or unreadable one makes its section say so, never the report fail.

A week with no data is a valid report: each section says what it did not find.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.lake import Lake
from tracseq_dagster.operations import outputs
from tracseq_dagster.plots import new_figure, png_bytes

#: The model whose predictions make a sample "at risk", and the categories that count as at risk.
QUALITY_MODEL = "sample_quality"
AT_RISK_CATEGORIES = ("low", "medium")
SUCCESS_MODEL = "sequencing_success"
TURNAROUND_MODEL = "turnaround_hours"
#: The sample type, site and instrument of the lab-wide series in the demand outputs
#: (``demand_forecast.TOTAL`` and ``sequencing_capacity.ALL``, not imported: they pull in statsforecast).
ALL = "all"
#: Rows of a section's table shown at most (the counts above the table cover every row).
MAX_ROWS = 15

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")

#: Recommendations for at-risk samples: sample_id -> bench actions (the prediction service's answer).
Advisor = Callable[[pd.DataFrame], Mapping[str, Sequence[str]]]


class ReportInputError(ValueError):
    """A week or project the report cannot be made for; the message is one line for the operator."""


@dataclass(frozen=True)
class IsoWeek:
    """One ISO 8601 week (Monday 00:00 UTC to the next Monday), written ``2026-W49``."""

    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> IsoWeek:
        match = _WEEK.match(text.strip().upper())
        if not match:
            raise ReportInputError(f"week {text!r} is not an ISO week: write it like 2026-W49")
        year, week = int(match.group(1)), int(match.group(2))
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError:
            raise ReportInputError(f"week {text!r} does not exist: {year} has weeks W01 to W{_weeks_in(year):02d}") from None
        return cls(year, week)

    @classmethod
    def of(cls, day: date) -> IsoWeek:
        iso = day.isocalendar()
        return cls(iso.year, iso.week)

    @property
    def key(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(date.fromisocalendar(self.year, self.week, 1), tz="UTC")

    @property
    def end(self) -> pd.Timestamp:
        """Exclusive: the next Monday 00:00 UTC."""
        return self.start + pd.Timedelta(days=7)

    def days(self) -> list[date]:
        return [(self.start + pd.Timedelta(days=i)).date() for i in range(7)]

    def __str__(self) -> str:
        return self.key


def _weeks_in(year: int) -> int:
    return date(year, 12, 28).isocalendar().week


def shown(value: Any) -> str:
    """A value as every rendering shows it: integers whole, other numbers to 3 significant digits
    (whole from 100 on), missing as an en dash. The HTML, the PDF and the summary's facts all use this."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, (pd.Timestamp, datetime)):
        return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@dataclass
class Section:
    """One part of the report: headline numbers, an optional table and plot, and a note when it is
    empty or partial (why: no rows, the file does not exist yet, the log is not configured)."""

    key: str
    title: str
    figures: dict[str, Any] = field(default_factory=dict)  # label -> number
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    plot: bytes | None = None  # PNG
    plot_alt: str = ""

    @property
    def count(self) -> int:
        """Rows this section reports on (its first figure when it has one, else its table rows)."""
        first = next(iter(self.figures.values()), None)
        return int(first) if isinstance(first, (int, np.integer)) else len(self.rows)


@dataclass
class Summary:
    """The plain-language summary: ``status`` generated | rejected | unavailable | off, and why not."""

    status: str
    text: str | None = None
    reason: str | None = None


@dataclass
class QcReport:
    week: IsoWeek
    project: str
    generated_at: datetime
    sections: list[Section]
    summary: Summary = field(default_factory=lambda: Summary("off", reason="no summary was asked for"))

    @property
    def has_data(self) -> bool:
        """False when the project received no samples that week and no section found anything."""
        return any(s.count for s in self.sections if s.key in ("received", "quarantined", "anomalies"))

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    @property
    def title(self) -> str:
        return f"Lab QC report: {self.project}, week {self.week.key}"

    @property
    def period(self) -> str:
        return f"{self.week.start.date().isoformat()} to {(self.week.end - pd.Timedelta(days=1)).date().isoformat()}"

    def facts(self) -> str:
        """Every number of the report as text lines, as the renderings show them: the summary's prompt
        and the reference its numbers are checked against."""
        lines = [f"Report: project {self.project}, ISO week {self.week.key} ({self.period})."]
        for section in self.sections:
            lines.append(f"## {section.title}")
            lines += [f"- {label}: {shown(value)}" for label, value in section.figures.items()]
            if section.note:
                lines.append(f"- note: {section.note}")
            for row in section.rows:
                lines.append("- " + "; ".join(f"{c}: {shown(row.get(c))}" for c in section.columns))
        return "\n".join(lines)

    def section_counts(self) -> dict[str, int]:
        return {s.key: s.count for s in self.sections}


# -- building ------------------------------------------------------------------------------------


def known_projects(lake: Lake) -> list[str]:
    """Every project with an accepted sample, sorted."""
    frame = lake.read_validated(columns=["project_id"])
    return sorted(frame["project_id"].dropna().astype(str).unique()) if len(frame) else []


def build_report(
    lake: Lake,
    week: IsoWeek | str,
    project: str,
    *,
    predictions: pd.DataFrame | None = None,
    predictions_note: str | None = None,
    advisor: Advisor | None = None,
    now: datetime | None = None,
) -> QcReport:
    """The report of ``project`` for ``week`` from the lake.

    ``predictions``: the prediction log (every model's rows, as ``PredictionLog.read(model=None)``
    returns them), or None with ``predictions_note`` saying why there is none. Raises
    :class:`ReportInputError` for a malformed week or a project the lake has never accepted a sample of.
    """
    week = IsoWeek.parse(week) if isinstance(week, str) else week
    samples = lake.read_validated()
    if not len(samples) or project not in set(samples["project_id"].dropna().astype(str)):
        projects = known_projects(lake)
        listed = ", ".join(projects[:10]) + (" …" if len(projects) > 10 else "")
        raise ReportInputError(
            f"project {project!r} has no accepted sample in the lake ({lake.root})"
            + (f"; known projects: {listed}" if projects else "; the lake holds no accepted samples yet (tracseq ingest)")
        )
    ours = samples[samples["project_id"].astype(str) == project]
    received = ours[_in_week(ours["received_ts"], week)].copy()
    sections = [
        received_section(received, week),
        quarantine_section(lake.read_quarantine(), week, project),
        at_risk_section(received, predictions, predictions_note, advisor),
        forecast_section(received, ours, lake.read_validated_runs(), predictions, predictions_note, week),
        anomalies_section(lake, week, project),
        storage_section(lake, received),
        demand_section(lake),
    ]
    return QcReport(week, project, now or datetime.now(UTC), sections)


def _in_week(values: pd.Series, week: IsoWeek) -> pd.Series:
    ts = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return (ts >= week.start) & (ts < week.end)


def received_section(received: pd.DataFrame, week: IsoWeek) -> Section:
    section = Section("received", "Samples received", columns=["sample type", "samples", "urgent", "QC pass", "QC fail"])
    n = len(received)
    section.figures["samples received"] = n
    if not n:
        section.note = "No samples of this project were received this week."
        return section
    status = received.get("qc_status", pd.Series(index=received.index, dtype=object)).astype("string")
    section.figures |= {
        "QC pass": int((status == "pass").sum()),
        "QC borderline": int((status == "borderline").sum()),
        "QC fail": int((status == "fail").sum()),
        "not yet QC'd": int(status.isna().sum()),
        "urgent": int((received.get("priority", pd.Series(dtype=object)).astype("string") == "urgent").sum()),
        "sites": int(received["site"].nunique()) if "site" in received else 0,
    }
    for sample_type, group in received.groupby(received["sample_type"].astype(str)):
        s = status.loc[group.index]
        section.rows.append(
            {
                "sample type": sample_type,
                "samples": len(group),
                "urgent": int((group.get("priority", pd.Series(dtype=object)).astype("string") == "urgent").sum()),
                "QC pass": int((s == "pass").sum()),
                "QC fail": int((s == "fail").sum()),
            }
        )
    days = pd.to_datetime(received["received_ts"], utc=True, format="mixed").dt.date
    per_day = pd.crosstab(days, received["sample_type"].astype(str)).reindex(week.days(), fill_value=0)
    figure, axes = _stacked_per_day(per_day, height=3, ylabel="samples received")
    axes.legend(fontsize=7, ncols=4)
    section.plot, section.plot_alt = png_bytes(figure), "samples received per day and sample type"
    return section


def quarantine_section(quarantine: pd.DataFrame, week: IsoWeek, project: str) -> Section:
    from tracseq_dagster.validation import RULES_COLUMN

    section = Section("quarantined", "Quarantined by rule", columns=["rule", "rows"])
    if len(quarantine) and {"project_id", "received_ts", RULES_COLUMN} <= set(quarantine.columns):
        ours = quarantine[(quarantine["project_id"].astype("string") == project) & _in_week(quarantine["received_ts"], week)]
        unplaced = (
            quarantine["project_id"].isna()
            | pd.to_datetime(quarantine["received_ts"], errors="coerce", utc=True, format="mixed").isna()
        )
    else:
        ours, unplaced = quarantine.iloc[0:0], pd.Series([], dtype=bool)
    section.figures["rows quarantined"] = len(ours)
    if len(ours):
        rules = ours[RULES_COLUMN].astype("string").fillna("").str.split(";").explode().str.strip()
        counts = rules[rules != ""].value_counts()
        section.figures["rules broken"] = len(counts)
        section.rows = [{"rule": rule, "rows": int(n)} for rule, n in counts.items()]
        figure = new_figure(7, 0.4 * len(counts) + 1.2)
        axes = figure.add_subplot()
        axes.barh(counts.index[::-1], counts.to_numpy()[::-1], color="tab:red")
        axes.set_xlabel("rows quarantined")
        section.plot, section.plot_alt = png_bytes(figure), "quarantined rows per broken rule"
    else:
        section.note = "No rows of this project received this week were quarantined."
    if int(unplaced.sum()):
        extra = f"{int(unplaced.sum())} quarantined rows (any project, any week) have no readable project or receipt time and are not counted here."
        section.note = f"{section.note} {extra}" if section.note else extra
    return section


def _latest(predictions: pd.DataFrame | None, model: str, sample_ids: pd.Series) -> pd.DataFrame:
    """The latest prediction of ``model`` per sample of ``sample_ids`` (per entity key for run models)."""
    if predictions is None or not len(predictions) or not len(sample_ids):
        return pd.DataFrame(columns=["sample_id", "entity_key", "ts", "prediction", "category"])
    rows = predictions[(predictions["model"] == model) & predictions["sample_id"].isin(set(sample_ids.astype(str)))]
    key = rows["entity_key"].fillna(rows["sample_id"]) if "entity_key" in rows else rows["sample_id"]
    return rows.assign(_key=key).sort_values("ts").groupby("_key", sort=False).tail(1).drop(columns="_key")


def at_risk_section(
    received: pd.DataFrame, predictions: pd.DataFrame | None, note: str | None, advisor: Advisor | None
) -> Section:
    section = Section(
        "at_risk", "Predicted at-risk samples", columns=["sample", "sample type", "P(pass)", "category", "recommendations"]
    )
    latest = _latest(predictions, QUALITY_MODEL, received.get("sample_id", pd.Series(dtype=str)))
    at_risk = latest[latest["category"].isin(AT_RISK_CATEGORIES)].sort_values("prediction")
    section.figures = {
        "samples at risk": len(at_risk),
        "samples scored": len(latest),
        "low": int((at_risk["category"] == "low").sum()),
        "medium": int((at_risk["category"] == "medium").sum()),
    }
    if predictions is None:
        section.note = f"No prediction log: {note or 'not configured'}."
        return section
    if not len(latest):
        section.note = f"None of this week's {len(received)} samples has a {QUALITY_MODEL} prediction in the log."
        return section
    advice: Mapping[str, Sequence[str]] = {}
    if len(at_risk) and advisor is not None:
        try:
            advice = advisor(received[received["sample_id"].isin(at_risk["sample_id"])])
        except Exception as error:  # the service being down must not cost the report
            section.note = f"Recommendations unavailable: {' '.join(str(error).split())[:200]}."
    elif len(at_risk):
        section.note = "Recommendations unavailable: no prediction service configured (TRACSEQ_PREDICTIONS_URL)."
    types = received.set_index(received["sample_id"].astype(str))["sample_type"].astype(str)
    for _, row in at_risk.head(MAX_ROWS).iterrows():
        sample = str(row["sample_id"])
        section.rows.append(
            {
                "sample": sample,
                "sample type": types.get(sample),
                "P(pass)": float(row["prediction"]),
                "category": row["category"],
                "recommendations": " ".join(advice.get(sample, [])) or "–",
            }
        )
    if len(at_risk) > MAX_ROWS:
        section.note = (section.note or "") + f" The {MAX_ROWS} with the lowest P(pass) are listed."
    return section


def forecast_section(
    received: pd.DataFrame,
    project_samples: pd.DataFrame,
    runs: pd.DataFrame,
    predictions: pd.DataFrame | None,
    note: str | None,
    week: IsoWeek,
) -> Section:
    section = Section(
        "forecasts", "Sequencing success and turnaround forecasts", columns=["instrument", "runs ended", "pass", "fail"]
    )
    ids = received.get("sample_id", pd.Series(dtype=str))
    success = _latest(predictions, SUCCESS_MODEL, ids)
    turnaround = _latest(predictions, TURNAROUND_MODEL, ids)
    success_p = success["prediction"].astype(float)
    hours = turnaround["prediction"].astype(float)
    section.figures = {
        "runs forecast": len(success),
        "mean predicted P(run pass)": float(success_p.mean()) if len(success) else None,
        "runs predicted to fail": int((success_p < 0.5).sum()),
        "samples with a turnaround forecast": len(turnaround),
        "median predicted turnaround (h)": float(hours.median()) if len(hours) else None,
        "90th percentile predicted turnaround (h)": float(hours.quantile(0.9)) if len(hours) else None,
    }
    if len(runs) and {"sample_id", "run_end_ts", "run_status"} <= set(runs.columns):
        mine = runs[runs["sample_id"].isin(set(project_samples["sample_id"].astype(str))) & _in_week(runs["run_end_ts"], week)]
    else:
        mine = runs.iloc[0:0]
    status = mine["run_status"].astype("string") if len(mine) else pd.Series([], dtype="string")
    section.figures |= {
        "runs ended this week": len(mine),
        "runs passed": int((status == "pass").sum()),
        "realised pass rate": float((status == "pass").sum() / status.notna().sum()) if status.notna().sum() else None,
    }
    if len(mine):
        for instrument, group in mine.groupby(mine["instrument_id"].astype(str)):
            s = group["run_status"].astype("string")
            section.rows.append({"instrument": instrument, "runs ended": len(group), "pass": int((s == "pass").sum()),
                                 "fail": int((s == "fail").sum())})  # fmt: skip
    notes = []
    if predictions is None:
        notes.append(f"No prediction log: {note or 'not configured'}.")
    elif not len(success) and not len(turnaround):
        notes.append(f"No {SUCCESS_MODEL} or {TURNAROUND_MODEL} prediction for this week's samples in the log.")
    if not len(mine):
        notes.append("No sequencing run of this project ended this week.")
    section.note = " ".join(notes) or None
    if len(hours) or len(success):
        figure = new_figure(7, 2.8)
        left, right = figure.subplots(1, 2)
        if len(hours):
            left.hist(hours, bins=min(20, max(5, len(hours) // 2)), color="tab:blue")
        left.set_xlabel("predicted turnaround (h)")
        if len(success):
            right.hist(success_p, bins=10, range=(0, 1), color="tab:green")
        right.set_xlabel("predicted P(run pass)")
        section.plot, section.plot_alt = png_bytes(figure), "forecast turnaround and run success"
    return section


def _operations_table(lake: Lake, name: str, required: set[str]) -> tuple[pd.DataFrame | None, str | None]:
    """An operations output, or None and why (not written yet, unreadable, missing columns)."""
    path = lake.operations_path(name)
    if not path.exists():
        return None, f"{path.name} does not exist yet (its asset has not run)."
    try:
        frame = pd.read_parquet(path)
    except Exception as error:
        return None, f"{path.name} cannot be read: {' '.join(str(error).split())[:160]}."
    missing = sorted(required - set(frame.columns))
    if missing:
        return None, f"{path.name} lacks the columns {', '.join(missing)}."
    return frame, None


def anomalies_section(lake: Lake, week: IsoWeek, project: str) -> Section:
    section = Section("anomalies", "Anomalies", columns=["kind", "entity", "time", "score", "reasons"])
    frame, why = _operations_table(lake, outputs.ANOMALIES, {"kind", "entity", "ts", "score", "is_anomaly", "project_id"})
    if frame is None:
        section.note = why
        return section
    week_rows = frame[_in_week(frame["ts"], week)]
    # The project's samples, and freezer days (a freezer is shared: its days concern every project).
    mine = week_rows[(week_rows["project_id"].astype("string") == project) | (week_rows["kind"] == "freezer_day")]
    flagged = mine[mine["is_anomaly"].fillna(False).astype(bool)].sort_values("score", ascending=False)
    section.figures = {
        "anomalies": len(flagged),
        "sample anomalies": int((flagged["kind"] == "sample").sum()),
        "freezer-day anomalies": int((flagged["kind"] == "freezer_day").sum()),
        "scored this week": len(mine),
    }
    alerts, _ = _operations_table(lake, outputs.ALERTS, {"created_at", "delivered"})
    if alerts is not None:
        sent = alerts[_in_week(alerts["created_at"], week)]
        section.figures |= {
            "alerts this week": len(sent),
            "alerts undelivered": int((~sent["delivered"].fillna(False).astype(bool)).sum()),
        }
    for _, row in flagged.head(MAX_ROWS).iterrows():
        section.rows.append({"kind": row["kind"], "entity": row["entity"], "time": pd.Timestamp(row["ts"]), "score": float(row["score"]),
                             "reasons": row.get("reasons") or "–"})  # fmt: skip
    if not len(flagged):
        section.note = "No anomaly among this week's samples of the project and the freezer days."
        return section
    days = pd.to_datetime(flagged["ts"], utc=True, format="mixed").dt.date
    per_day = pd.crosstab(days, flagged["kind"].astype(str)).reindex(week.days(), fill_value=0)
    figure, axes = _stacked_per_day(per_day, height=2.5, ylabel="anomalies")
    axes.legend(fontsize=7)
    section.plot, section.plot_alt = png_bytes(figure), "anomalies per day and kind"
    return section


def storage_section(lake: Lake, received: pd.DataFrame) -> Section:
    section = Section("storage", "Storage utilisation", columns=["freezer", "positions", "occupied", "occupancy", "fills on"])
    frame, why = _operations_table(lake, outputs.STORAGE_UTILISATION, {"freezer_id", "positions", "occupied"})
    if frame is None:
        section.note = why
        return section
    # Freezer rows when the table has levels (a freezer row beside its racks): summing both would count twice.
    if "level" in frame and (frame["level"].astype(str) == "freezer").any():
        frame = frame[frame["level"].astype(str) == "freezer"]
    per = frame.groupby(frame["freezer_id"].astype(str)).agg(positions=("positions", "sum"), occupied=("occupied", "sum"))
    if "fills_on" in frame:
        per["fills_on"] = frame.groupby(frame["freezer_id"].astype(str))["fills_on"].min()
    per["occupancy"] = per["occupied"] / per["positions"].where(per["positions"] > 0)
    used = set()
    if "storage_location" in received:
        used = set(received["storage_location"].dropna().astype(str).str.split("/").str[0])
    section.figures = {
        "freezers": len(per),
        "lab occupancy": float(per["occupied"].sum() / per["positions"].sum()) if per["positions"].sum() else None,
        "freezers above 90% full": int((per["occupancy"] > 0.9).sum()),
        "freezers holding this week's samples": len(used & set(per.index)),
    }
    for freezer, row in per.sort_values("occupancy", ascending=False).iterrows():
        fills = row.get("fills_on")
        section.rows.append({"freezer": freezer, "positions": int(row["positions"]), "occupied": int(row["occupied"]),
                             "occupancy": float(row["occupancy"]) if pd.notna(row["occupancy"]) else None,
                             "fills on": pd.Timestamp(fills).date() if fills is not None and pd.notna(fills) else "not at this intake"})  # fmt: skip
    figure = new_figure(7, 2.8)
    axes = figure.add_subplot()
    axes.bar(per.index, per["occupancy"].fillna(0) * 100, color=["tab:orange" if f in used else "tab:gray" for f in per.index])
    axes.axhline(90, color="tab:red", linewidth=1, linestyle="--")
    axes.set_ylabel("occupancy (%)")
    axes.set_ylim(0, 100)
    axes.tick_params(axis="x", labelrotation=45, labelsize=7)
    section.plot, section.plot_alt = png_bytes(figure), "occupancy per freezer (orange: holds this week's samples)"
    return section


def demand_section(lake: Lake) -> Section:
    section = Section("demand", "Demand forecast (next 14 days, lab-wide)", columns=["sample type", "forecast", "low", "high"])
    frame, why = _operations_table(lake, outputs.DEMAND_FORECAST, {"sample_type", "ds", "forecast", "lo", "hi"})
    if frame is None:
        section.note = why
        return section
    # The forecast holds every (sample type, site) series and the lab total as type and site "all":
    # the total is the lab's own series (its interval is not the sum of the parts' intervals).
    is_total = (frame["sample_type"].astype(str) == ALL) & (frame["site"].astype(str) == ALL) if "site" in frame else False
    total, frame = (frame[is_total], frame[~is_total]) if isinstance(is_total, pd.Series) and is_total.any() else (None, frame)
    per_type = frame.groupby(frame["sample_type"].astype(str))[["forecast", "lo", "hi"]].sum()
    whole = total if total is not None else frame
    section.figures = {"samples forecast": int(round(whole["forecast"].sum())),
                       "days": int(pd.to_datetime(frame["ds"]).nunique())}  # fmt: skip
    if "level" in frame and len(frame):
        section.figures["interval level (%)"] = float(frame["level"].iloc[0])
    section.rows = [{"sample type": t, "forecast": int(round(r["forecast"])), "low": int(round(r["lo"])), "high": int(round(r["hi"]))}
                    for t, r in per_type.sort_values("forecast", ascending=False).iterrows()]  # fmt: skip
    capacity, _ = _operations_table(lake, outputs.DEMAND_CAPACITY, {"instrument_id", "runs_needed", "runs_per_week_capacity"})
    if capacity is not None:
        capacity = capacity[capacity["instrument_id"].astype(str) != ALL]
    if capacity is not None and len(capacity):
        over = capacity[capacity["runs_needed"] > capacity["runs_per_week_capacity"]]
        section.figures |= {"runs needed": int(round(capacity["runs_needed"].sum())),
                            "instrument-weeks over capacity": len(over)}  # fmt: skip
    daily = whole.assign(ds=pd.to_datetime(whole["ds"])).groupby("ds")[["forecast", "lo", "hi"]].sum()
    if len(daily):
        figure = new_figure(7, 2.8)
        axes = figure.add_subplot()
        axes.plot(daily.index, daily["forecast"], color="tab:blue", label="forecast")
        axes.fill_between(daily.index, daily["lo"], daily["hi"], color="tab:blue", alpha=0.2, label="interval")
        axes.set_ylabel("samples per day")
        axes.legend(fontsize=7)
        axes.tick_params(axis="x", labelrotation=30, labelsize=7)
        section.plot, section.plot_alt = png_bytes(figure), "forecast samples per day, all types, with interval"
    return section


__all__ = [
    "Advisor",
    "IsoWeek",
    "QcReport",
    "ReportInputError",
    "Section",
    "Summary",
    "build_report",
    "known_projects",
    "shown",
]


def _stacked_per_day(per_day: pd.DataFrame, *, height: float, ylabel: str) -> tuple[Any, Any]:
    """Counts per day of the week (rows) stacked by group (columns), whole numbers on the axis."""
    figure = new_figure(7, height)
    axes = figure.add_subplot()
    bottom = np.zeros(len(per_day))
    for column in per_day.columns:
        axes.bar([d.strftime("%a %d") for d in per_day.index], per_day[column], bottom=bottom, label=column)
        bottom += per_day[column].to_numpy()
    axes.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]  # MaxNLocator takes it; the stub types Locator
    axes.set_ylabel(ylabel)
    return figure, axes
