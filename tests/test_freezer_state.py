"""Freezer state from accepted samples: location parsing, point-in-time occupancy, conflicts, set points."""

from __future__ import annotations

import pandas as pd
import pytest

from tracseq_dagster.operations.freezer_state import (
    BOX_CAPACITY,
    POSITIONS,
    Location,
    LocationError,
    freezer_state,
    parse_location,
    parse_locations,
)


def _sample(sample_id: str, location: str, received: str, *, extracted: str | None = None, sample_type: str = "RNA",
            project: str = "PRJ-0001", temp: float = -80.0, excursions: int = 0, occupancy: int = 10) -> dict:  # fmt: skip
    return {
        "sample_id": sample_id,
        "project_id": project,
        "sample_type": sample_type,
        "received_ts": pd.Timestamp(received, tz="UTC"),
        "extraction_ts": pd.Timestamp(extracted, tz="UTC") if extracted else pd.NaT,
        "storage_location": location,
        "storage_temp_c": temp,
        "temp_excursions": excursions,
        "max_temp_deviation_c": 0.0,
        "box_occupancy": occupancy,
    }


def test_parse_location_reads_every_part() -> None:
    assert parse_location("FRZ-03/R2/B14/A7") == Location("FRZ-03", 2, 14, "A7")
    assert parse_location(" FRZ-03/R2/B14/J10 ").text == "FRZ-03/R2/B14/J10"
    assert parse_location("FRZ-03/R2/B14/A07").position == "A7"  # leading zero normalised


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("FRZ-03/R2/B14", "does not match FREEZER/RACK/BOX/POSITION"),
        ("frz-03/R2/B14/A7", "does not match"),
        ("FRZ-03/R2/B14/K7", "row 'K' is outside the box"),
        ("FRZ-03/R2/B14/A11", "column 11 is outside the box"),
        ("FRZ-03/R0/B14/A1", "numbered from 1"),
        (None, "is not text"),
    ],
)
def test_parse_location_names_the_bad_value(text: object, said: str) -> None:
    with pytest.raises(LocationError) as error:
        parse_location(text)
    assert said in str(error.value)
    assert repr(text) in str(error.value)


def test_parse_locations_keeps_the_rows_and_reports_problems() -> None:
    parsed = parse_locations(
        pd.Series(["FRZ-01/R1/B1/A1", "bad", "", "FRZ-01/R1/B1/Z1", "FRZ-01/R1/B1/A1"], index=[5, 6, 7, 8, 9])
    )
    assert parsed.index.tolist() == [5, 6, 7, 8, 9]
    assert parsed["problem"].isna().tolist() == [True, False, False, False, True]
    assert parsed.loc[7, "problem"] == "empty storage location"
    assert "row 'Z'" in parsed.loc[8, "problem"]
    assert parsed.loc[9, ["freezer_id", "rack", "box", "position"]].tolist() == ["FRZ-01", 1, 1, "A1"]


def test_state_is_point_in_time_and_frees_extracted_positions() -> None:
    samples = pd.DataFrame(
        [
            _sample("S1", "FRZ-01/R1/B1/A1", "2026-01-01", extracted="2026-01-10"),
            _sample("S2", "FRZ-01/R1/B1/A2", "2026-01-05"),
            _sample("S3", "FRZ-01/R1/B1/A1", "2026-01-12"),  # reuses A1 after S1 left: normal
        ]
    )
    early = freezer_state(samples, as_of="2026-01-06")
    assert sorted(early.occupied["sample_id"]) == ["S1", "S2"]
    middle = freezer_state(samples, as_of="2026-01-11")
    assert middle.occupied["sample_id"].tolist() == ["S2"]
    late = freezer_state(samples)
    assert sorted(late.occupied["sample_id"]) == ["S2", "S3"]
    assert late.counts["double_booked_positions"] == 0
    box = late.boxes.iloc[0]
    assert (box["occupied"], box["free"], box["capacity"]) == (2, BOX_CAPACITY - 2, BOX_CAPACITY)
    free = late.free_positions()
    assert len(free) == BOX_CAPACITY - 2
    assert not {"A1", "A2"} & set(free["position"])
    assert free["position"].iloc[0] == "A3"  # filling order


def test_two_samples_stored_in_one_position_are_counted_and_the_latest_wins() -> None:
    samples = pd.DataFrame(
        [
            _sample("S1", "FRZ-01/R1/B1/C3", "2026-01-01"),
            _sample("S2", "FRZ-01/R1/B1/C3", "2026-01-02"),
            _sample("S3", "FRZ-01/R1/B1/C3", "2026-01-03"),
        ]
    )
    state = freezer_state(samples)
    assert state.occupied["sample_id"].tolist() == ["S3"]
    conflict = state.double_booked.iloc[0]
    assert conflict["claims"] == 3 and conflict["occupant"] == "S3" and conflict["sample_ids"] == "S1, S2, S3"
    assert state.counts["superseded_claims"] == 2
    assert state.boxes.iloc[0]["occupied"] == 1


def test_unparsable_rows_are_reported_not_fatal() -> None:
    samples = pd.DataFrame([_sample("S1", "FRZ-01/R1/B1/A1", "2026-01-01"), _sample("S2", "FRZ-01/B1/A1", "2026-01-01")])
    state = freezer_state(samples)
    assert state.occupied["sample_id"].tolist() == ["S1"]
    assert state.unparsable[["sample_id", "storage_location"]].values.tolist() == [["S2", "FRZ-01/B1/A1"]]
    assert "does not match" in state.unparsable.iloc[0]["problem"]


def test_a_box_reported_full_or_filled_takes_no_sample() -> None:
    full_positions = [_sample(f"F{i}", f"FRZ-01/R1/B2/{p}", "2026-01-01") for i, p in enumerate(POSITIONS)]
    samples = pd.DataFrame(
        [
            *full_positions,
            _sample("R1", "FRZ-01/R1/B3/A1", "2026-01-01", occupancy=100),  # the LIMS says B3 is full
            _sample("O1", "FRZ-01/R1/B4/A1", "2026-01-01"),
        ]
    )
    state = freezer_state(samples)
    boxes = state.boxes.set_index("box")
    assert boxes.loc[2, "full"] and boxes.loc[3, "full"] and not boxes.loc[4, "full"]
    assert boxes.loc[3, "free"] == 0
    assert set(state.free_positions()["box"]) == {4}


def test_set_point_ignores_an_excursion_and_snaps_to_the_contract_target() -> None:
    samples = pd.DataFrame(
        [
            _sample("S1", "FRZ-07/R1/B1/A1", "2026-01-01", sample_type="DNA", temp=-19.6),
            _sample("S2", "FRZ-07/R1/B1/A2", "2026-01-01", sample_type="DNA", temp=-20.3),
            _sample("S3", "FRZ-07/R1/B1/A3", "2026-01-01", sample_type="DNA", temp=2.0),  # door left open
            _sample("S4", "CAB-01/R1/B1/A1", "2026-01-01", sample_type="FFPE", temp=21.1),
        ]
    )
    set_points = freezer_state(samples).freezers.set_index("freezer_id")["set_point_c"]
    assert set_points.to_dict() == {"CAB-01": 20.0, "FRZ-07": -20.0}


def test_excursions_count_only_records_closed_in_the_window() -> None:
    samples = pd.DataFrame(
        [
            _sample("S1", "FRZ-01/R1/B1/A1", "2026-01-01", extracted="2026-01-20", excursions=2),
            _sample("S2", "FRZ-01/R1/B1/A2", "2026-01-01", excursions=5),  # still stored: record not closed
            _sample("S3", "FRZ-01/R1/B1/A3", "2025-10-01", extracted="2025-10-05", excursions=7),  # closed long ago
        ]
    )
    row = freezer_state(samples, as_of="2026-01-25").freezers.iloc[0]
    assert (row["records_30d"], row["excursions_30d"]) == (1, 2)
    before = freezer_state(samples, as_of="2026-01-15").freezers.iloc[0]
    assert (before["records_30d"], before["excursions_30d"]) == (0, 0)


def test_no_samples_gives_an_empty_state() -> None:
    samples = pd.DataFrame([_sample("S1", "FRZ-01/R1/B1/A1", "2026-01-01")]).iloc[:0]
    state = freezer_state(samples, as_of="2026-01-01")
    assert state.counts["boxes"] == 0 and state.free_positions().empty
