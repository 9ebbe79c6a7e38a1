"""Issue 17 on a real Dagster instance: one bad cell or a lab's spelling never holds back a file.

The domain tests (test_parsing, test_validation, test_contract_properties) pin each rule;
these run the ingest job itself (raw_lab_exports, then validate_lab_export and its blocking
check accepted_rows_meet_contract) the way `tracseq ingest` does, and read what the instance
recorded.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_helpers import latest_materialization

from tracseq_dagster.contract import CONTRACT_COLUMNS
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.ingest import ingest_folder
from tracseq_dagster.lake import Lake

pytestmark = pytest.mark.slow

CHECK = dg.AssetCheckKey(dg.AssetKey("validated_samples"), "accepted_rows_meet_contract")


def sample(i: int, **changes: object) -> dict:
    row = dict(
        sample_id=f"TS-2025-{700000 + i:06d}",
        project_id="PRJ-01",
        sample_type="DNA",
        collection_ts="2025-03-01T08:00:00Z",
        received_ts="2025-03-02T09:00:00Z",
        extraction_ts="",
        sequencing_ts="",
        storage_temp_c="-20",
        temp_excursions="0",
        max_temp_deviation_c="0.5",
        freeze_thaw_cycles="1",
        concentration_ng_ul="40.5",
        volume_ul="30",
        a260_280="1.8",
        a260_230="2.0",
        rin="",
        din="7.1",
        storage_location="FRZ-01/R1/B2/C3",
        box_occupancy="12",
        operator_id="OP-01",
        site="site-A",
        priority="routine",
        qc_status="pass",
    )
    row.update({k: str(v) for k, v in changes.items()})
    return row


def write_csv(path: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows)[list(CONTRACT_COLUMNS)].to_csv(path, index=False)


def check_passed(instance: dg.DagsterInstance, run_id: str) -> bool:
    evaluations = [
        e.dagster_event.event_specific_data for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    return any(e.asset_check_key == CHECK and e.passed for e in evaluations)


def test_an_empty_required_integer_cell_quarantines_one_row_and_the_check_passes(tmp_path, sqlite_instance):
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    rows = [sample(i) for i in range(6)]
    rows[3]["box_occupancy"] = ""  # line 5
    rows[4]["freeze_thaw_cycles"] = ""  # line 6
    write_csv(landing / "gaps.csv", rows)
    defs = build_definitions(lake_dir=str(lake_dir), landing_url=str(landing))

    (outcome,) = ingest_folder(landing, defs=defs, instance=sqlite_instance)

    assert outcome.status == "ingested", outcome
    assert (outcome.rows_accepted, outcome.rows_quarantined) == (4, 2)
    assert check_passed(sqlite_instance, outcome.run_id)
    quarantined = Lake(lake_dir).read_quarantine()
    assert quarantined["_row_number"].tolist() == [5, 6]
    assert quarantined["_rules"].tolist() == ["required:box_occupancy", "required:freeze_thaw_cycles"]
    assert quarantined["_source_file"].str.endswith("gaps.csv").all()
    accepted = pd.read_parquet(Lake(lake_dir).validated_path(outcome.file_hash))
    assert accepted["box_occupancy"].dtype == "Int64"


def test_enum_spellings_are_accepted_and_the_count_is_in_the_materialization(tmp_path, sqlite_instance):
    landing = tmp_path / "landing"
    landing.mkdir()
    spellings = [("dna", "URGENT", "PASS"), ("FFPE", "Routine", "fail"), ("Blood", "routine", "Borderline")]
    rows = [sample(i, sample_type=t, priority=p, qc_status=q) for i, (t, p, q) in enumerate(spellings)]
    write_csv(landing / "cases.csv", rows)
    defs = build_definitions(lake_dir=str(tmp_path / "lake"), landing_url=str(landing))

    (outcome,) = ingest_folder(landing, defs=defs, instance=sqlite_instance)

    assert (outcome.rows_accepted, outcome.rows_quarantined) == (3, 0)
    accepted = pd.read_parquet(Lake(tmp_path / "lake").validated_path(outcome.file_hash))
    assert accepted["sample_type"].tolist() == ["DNA", "FFPE", "blood"]
    assert accepted["priority"].tolist() == ["urgent", "routine", "routine"]
    warnings = latest_materialization(sqlite_instance, "raw_lab_exports", outcome.file_hash).metadata["warnings"].value
    assert "- sample_type: 2 values in another case were read as the contract's spelling" in warnings
    assert "- priority: 2 values in another case were read as the contract's spelling" in warnings
    assert "- qc_status: 2 values in another case were read as the contract's spelling" in warnings
