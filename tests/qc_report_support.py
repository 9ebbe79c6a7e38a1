"""A small hand-made lake for the weekly QC report's tests: a few samples of project P012 in
2026-W49 (Monday 2026-11-30 to Sunday 2026-12-06) and around it, quarantined rows, runs, a
prediction log and every operations output, each row placed so that a section's count is known."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tracseq_dagster.lake import RUNS, Lake
from tracseq_dagster.operations import outputs
from tracseq_dagster.serving.prediction_log import open_prediction_log

PROJECT = "P012"
WEEK = "2026-W49"
EMPTY_WEEK = "2026-W40"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def samples() -> pd.DataFrame:
    rows = [
        # id, project, type, received, qc, priority, site, location
        ("TS-2026-000001", PROJECT, "DNA", "2026-11-30 09:00", "pass", "routine", "SITE-A", "FRZ-01/R1/B1/A1"),
        ("TS-2026-000002", PROJECT, "RNA", "2026-12-02 10:00", "fail", "routine", "SITE-A", "FRZ-02/R1/B1/A1"),
        ("TS-2026-000003", PROJECT, "DNA", "2026-12-06 23:30", None, "urgent", "SITE-B", "FRZ-01/R1/B1/A2"),
        ("TS-2026-000004", PROJECT, "DNA", "2026-11-29 23:59", "pass", "routine", "SITE-A", "FRZ-01/R1/B1/A3"),  # W48
        ("TS-2026-000005", "P099", "RNA", "2026-12-01 08:00", "fail", "routine", "SITE-C", "FRZ-03/R1/B1/A1"),  # other project
    ]
    frame = pd.DataFrame(
        rows,
        columns=["sample_id", "project_id", "sample_type", "received_ts", "qc_status", "priority", "site", "storage_location"],
    )
    frame["received_ts"] = pd.to_datetime(frame["received_ts"], utc=True)
    return frame.astype({"project_id": "string", "qc_status": "string"})


def quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": ["TS-2026-000010", "TS-2026-000011", "TS-2026-000012", "TS-2026-000013"],
            "project_id": [PROJECT, PROJECT, "P099", None],
            "received_ts": ["2026-12-01T10:00:00Z", "2026-12-03T10:00:00Z", "2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z"],
            "_rules": ["rin_range;volume_positive", "volume_positive", "volume_positive", "project_id_required"],
            "_reasons": ["rin out of range; volume must be > 0", "volume must be > 0", "volume must be > 0", "project missing"],
        }
    )


def runs() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "run_id": ["RUN-2026-00001", "RUN-2026-00001", "RUN-2026-00002", "RUN-2026-00003"],
            "sample_id": ["TS-2026-000001", "TS-2026-000004", "TS-2026-000002", "TS-2026-000001"],
            "instrument_id": ["SEQ-01", "SEQ-01", "SEQ-02", "SEQ-01"],
            "run_end_ts": ["2026-12-03 12:00", "2026-12-03 12:00", "2026-12-04 12:00", "2026-12-08 12:00"],  # last: W50
            "run_status": ["pass", "fail", "pass", "pass"],
        }
    )
    frame["run_end_ts"] = pd.to_datetime(frame["run_end_ts"], utc=True)
    return frame


def predictions() -> list[dict]:
    def row(model: str, sample: str, when: str, value: float, category: str | None = None, key: str | None = None) -> dict:
        return {"request_id": f"{model}-{sample}-{when}", "ts": ts(when), "sample_id": sample, "model": model,
                "prediction": value, "quality_probability": value if category else None, "category": category,
                "entity_key": key or sample, "variant": "champion", "model_version": "1"}  # fmt: skip

    return [
        row("sample_quality", "TS-2026-000001", "2026-11-30 10:00", 0.2, "low"),  # superseded by the next
        row("sample_quality", "TS-2026-000001", "2026-12-01 10:00", 0.9, "high"),
        row("sample_quality", "TS-2026-000002", "2026-12-02 11:00", 0.31, "low"),
        row("sample_quality", "TS-2026-000003", "2026-12-06 23:40", 0.55, "medium"),
        row("sample_quality", "TS-2026-000005", "2026-12-01 09:00", 0.1, "low"),  # other project
        row("sequencing_success", "TS-2026-000001", "2026-12-02 09:00", 0.8, "high", "RUN-2026-00001/TS-2026-000001"),
        row("sequencing_success", "TS-2026-000002", "2026-12-03 09:00", 0.4, "medium", "RUN-2026-00002/TS-2026-000002"),
        row("turnaround_hours", "TS-2026-000001", "2026-11-30 09:05", 40.0),
        row("turnaround_hours", "TS-2026-000002", "2026-12-02 10:05", 60.0),
        row("turnaround_hours", "TS-2026-000003", "2026-12-06 23:35", 80.0),
    ]


def write_operations(lake: Lake) -> None:
    lake.write_table(
        lake.operations_path(outputs.ANOMALIES),
        pd.DataFrame(
            {
                "kind": ["sample", "sample", "freezer_day", "sample", "sample"],
                "entity": ["TS-2026-000002", "TS-2026-000005", "FRZ-02", "TS-2026-000001", "TS-2026-000003"],
                "ts": [
                    ts("2026-12-02 10:00"),
                    ts("2026-12-01 08:00"),
                    ts("2026-12-03"),
                    ts("2026-11-30 09:00"),
                    ts("2026-12-09"),
                ],
                "score": [0.91, 0.95, 0.87, 0.2, 0.99],
                "is_anomaly": [True, True, True, False, True],  # the last is in W50
                "reasons": ["a260_280 unusually low", "rin", "temperature 9.5 °C above set point", "", "late"],
                "project_id": [PROJECT, "P099", None, PROJECT, PROJECT],
                "site": ["SITE-A", "SITE-C", None, "SITE-A", "SITE-B"],
            }
        ),
    )
    lake.write_table(
        lake.operations_path(outputs.ALERTS),
        pd.DataFrame(
            {
                "key": ["a", "b", "c"],
                "kind": ["anomaly"] * 3,
                "created_at": [ts("2026-12-02 10:05"), ts("2026-12-03 01:00"), ts("2026-11-20")],
                "delivered": [True, False, True],
            }
        ),
    )
    lake.write_table(
        lake.operations_path(outputs.STORAGE_UTILISATION),
        pd.DataFrame(
            {
                # A freezer row beside its racks (level), as storage_utilisation writes them.
                "freezer_id": ["FRZ-01", "FRZ-01", "FRZ-01", "FRZ-02", "FRZ-02", "FRZ-03", "FRZ-03"],
                "level": ["freezer", "rack", "rack", "freezer", "rack", "freezer", "rack"],
                "rack": [None, 1, 2, None, 1, None, 1],
                "positions": [200, 100, 100, 200, 200, 400, 400],
                "occupied": [186, 95, 91, 50, 50, 100, 100],
                "fills_on": [ts("2027-01-15"), ts("2027-01-15"), ts("2027-02-01"), pd.NaT, pd.NaT, pd.NaT, pd.NaT],
            }
        ),
    )
    lake.write_table(
        lake.operations_path(outputs.DEMAND_FORECAST),
        pd.DataFrame(
            {
                # Two series and the lab total ("all"/"all", its own model: not the sum of the parts).
                "sample_type": ["DNA", "DNA", "RNA", "RNA", "all", "all"],
                "site": ["SITE-A"] * 4 + ["all", "all"],
                "ds": pd.to_datetime(["2026-12-07", "2026-12-08"] * 3),
                "forecast": [10.0, 12.0, 4.0, 6.0, 15.0, 18.0],
                "lo": [7.0, 8.0, 2.0, 3.0, 11.0, 13.0],
                "hi": [13.0, 16.0, 6.0, 9.0, 19.0, 23.0],
                "level": [80] * 6,
            }
        ),
    )
    lake.write_table(
        lake.operations_path(outputs.DEMAND_CAPACITY),
        pd.DataFrame(
            {
                "week": ["2026-W50"] * 3,
                "instrument_id": ["SEQ-01", "SEQ-02", "all"],  # "all": the lab, not a third instrument
                "samples": [20, 12, 32],
                "runs_needed": [3, 1, 4],
                "runs_per_week_capacity": [2, 4, 6],
            }
        ),
    )


def hand_made_lake(root: Path, *, operations: bool = True) -> Lake:
    lake = Lake(root)
    lake.write_record("s" * 16, "samples.csv", 5)
    lake.write_table(lake.validated_path("s" * 16), samples())
    lake.write_table(lake.quarantine_path("s" * 16), quarantine())
    lake.write_record("r" * 16, "runs.csv", 4, kind=RUNS)
    lake.write_table(lake.validated_path("r" * 16), runs())
    if operations:
        write_operations(lake)
    return lake


def prediction_log_folder(root: Path) -> Path:
    """A Parquet prediction log holding :func:`predictions`."""
    open_prediction_log(str(root)).append(predictions())
    return root
