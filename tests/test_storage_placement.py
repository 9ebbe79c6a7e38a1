"""The placement recommender on small hand-made labs whose best answer is known."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from tracseq_dagster.operations.freezer_state import POSITIONS, FreezerState, freezer_state
from tracseq_dagster.operations.storage_placement import (
    NO_FREEZER,
    NO_SPACE,
    PLACED,
    FreezerRisk,
    IncomingSample,
    PlacementError,
    PlacementWeights,
    first_free,
    placements_table,
    recommend,
)

TODAY = date(2026, 2, 1)
TEMPS = {"FRZ-01": -80.0, "FRZ-02": -80.0, "FRZ-07": -20.0, "FRG-01": 4.0}
TYPE_AT = {-80.0: "RNA", -20.0: "DNA", 4.0: "blood", 20.0: "FFPE"}


def _stored(box: str, positions: list[str] | tuple[str, ...], project: str = "PRJ-0001", occupancy: int = 10) -> list[dict]:
    freezer = box.split("/")[0]
    return [
        {
            "sample_id": f"{box}/{p}",
            "project_id": project,
            "sample_type": TYPE_AT[TEMPS[freezer]],
            "received_ts": pd.Timestamp("2026-01-01", tz="UTC"),
            "extraction_ts": pd.NaT,
            "storage_location": f"{box}/{p}",
            "storage_temp_c": TEMPS[freezer],
            "temp_excursions": 0,
            "max_temp_deviation_c": 0.0,
            "box_occupancy": occupancy,
        }
        for p in positions
    ]


def _lab(*rows: list[dict]) -> FreezerState:
    return freezer_state(pd.DataFrame([r for part in rows for r in part]), as_of="2026-02-01")


def _risk(**p: float) -> dict[str, FreezerRisk]:
    return {f.replace("_", "-"): FreezerRisk(v, "test") for f, v in p.items()}


def _locations(placements) -> list[str | None]:
    return [None if p.chosen is None else p.chosen.location.text for p in placements]


def test_rna_goes_to_the_freezer_with_the_lower_excursion_risk() -> None:
    lab = _lab(_stored("FRZ-01/R1/B1", ["A1"]), _stored("FRZ-02/R1/B1", ["A1"]))
    [placed] = recommend([IncomingSample("RNA", "PRJ-0009")], lab, _risk(FRZ_01=0.30, FRZ_02=0.02), today=TODAY)
    assert placed.status == PLACED and placed.chosen.location.text == "FRZ-02/R1/B1/A2"
    assert any("2.0% (test)" in r for r in placed.chosen.reasons)
    assert placed.alternatives[0].location.freezer_id == "FRZ-01"  # the only other box, worse


def test_risk_outweighs_co_location_and_co_location_breaks_a_tie() -> None:
    lab = _lab(_stored("FRZ-01/R1/B1", ["A1"], project="PRJ-0005"), _stored("FRZ-02/R1/B1", ["A1"], project="PRJ-0006"))
    tie = recommend([IncomingSample("RNA", "PRJ-0005")], lab, _risk(FRZ_01=0.05, FRZ_02=0.05), today=TODAY)
    assert tie[0].chosen.location.box_label == "FRZ-01/R1/B1"
    assert "already holds 1 sample(s) of PRJ-0005" in " ".join(tie[0].chosen.reasons)
    riskier = recommend([IncomingSample("RNA", "PRJ-0005")], lab, _risk(FRZ_01=0.20, FRZ_02=0.05), today=TODAY)
    assert riskier[0].chosen.location.box_label == "FRZ-02/R1/B1"


def test_a_started_box_is_filled_before_an_empty_one_is_opened() -> None:
    # Box B2 of FRZ-01 is known (a sample left it) but empty; B1 holds 60 samples of another project.
    left = _stored("FRZ-01/R1/B2", ["A1"], project="PRJ-0002")
    left[0]["extraction_ts"] = pd.Timestamp("2026-01-10", tz="UTC")
    lab = _lab(_stored("FRZ-01/R1/B1", POSITIONS[:60], project="PRJ-0002"), left)
    [placed] = recommend([IncomingSample("RNA", "PRJ-0003")], lab, _risk(FRZ_01=0.05), today=TODAY)
    assert placed.chosen.location.text == "FRZ-01/R1/B1/G1"  # the first free slot of the started box
    assert "fills a started box: 60/100" in " ".join(placed.chosen.reasons)
    assert "opens an empty box" in " ".join(placed.alternatives[0].reasons)


def test_joint_placement_gives_the_one_accessible_position_to_the_sample_retrieved_soon() -> None:
    # Rack 1 has one free position, rack 4 many. Placed one by one in input order, the first sample
    # (retrieved in two months) would take rack 1; jointly it goes to rack 4 and the sample needed
    # tomorrow gets rack 1.
    lab = _lab(_stored("FRZ-01/R1/B1", POSITIONS[:99]), _stored("FRZ-01/R4/B1", POSITIONS[:99]),
               _stored("FRZ-01/R4/B2", POSITIONS[:50]))  # fmt: skip
    later = IncomingSample("RNA", "PRJ-0001", TODAY + timedelta(days=60), "LATER")
    soon = IncomingSample("RNA", "PRJ-0001", TODAY + timedelta(days=1), "SOON")
    placed = recommend([later, soon], lab, _risk(FRZ_01=0.05), today=TODAY)
    assert _locations(placed) == ["FRZ-01/R4/B1/J10", "FRZ-01/R1/B1/J10"]
    assert "retrieval expected 2026-02-02 (in 1 days): the most accessible rack" in placed[1].chosen.reasons
    assert first_free([later, soon], lab)[0].text == "FRZ-01/R1/B1/J10"  # the baseline gives it away


def test_a_batch_never_double_books_never_fills_a_full_box_and_respects_temperature() -> None:
    rng = np.random.default_rng(7)
    rows = [
        _stored("FRZ-01/R1/B1", POSITIONS),  # full by its positions
        _stored("FRZ-01/R1/B2", ["A1"], occupancy=100),  # full by the LIMS's word
        _stored("FRZ-01/R2/B3", list(rng.choice(POSITIONS, 70, replace=False)), project="PRJ-0002"),
        _stored("FRZ-02/R1/B1", list(rng.choice(POSITIONS, 95, replace=False)), project="PRJ-0003"),
        _stored("FRZ-07/R1/B1", list(rng.choice(POSITIONS, 40, replace=False))),
        _stored("FRG-01/R1/B1", list(rng.choice(POSITIONS, 90, replace=False))),
    ]
    lab = _lab(*rows)
    types = ["RNA", "cfDNA", "tissue", "DNA", "saliva", "blood"]
    incoming = [IncomingSample(types[i % 6], f"PRJ-000{1 + i % 4}", TODAY + timedelta(days=int(rng.integers(0, 90))), f"N{i}")
                for i in range(60)]  # fmt: skip
    placed = recommend(incoming, lab, _risk(FRZ_01=0.05, FRZ_02=0.01, FRZ_07=0.1, FRG_01=0.1), today=TODAY)
    chosen = [p.chosen.location for p in placed if p.chosen]
    assert len(chosen) == len(set(chosen))
    occupied = set(lab.occupied["sample_id"])  # sample ids are their locations here
    assert not {c.text for c in chosen} & occupied
    assert not {c.box_label for c in chosen} & {"FRZ-01/R1/B1", "FRZ-01/R1/B2"}
    set_points = lab.freezers.set_index("freezer_id")["set_point_c"]
    for p in placed:
        assert p.status == PLACED
        target = {"RNA": -80.0, "cfDNA": -80.0, "tissue": -80.0, "DNA": -20.0, "saliva": -20.0, "blood": 4.0}[
            p.sample.sample_type
        ]
        assert set_points[p.chosen.location.freezer_id] == target
        for alternative in p.alternatives:
            assert alternative.location not in chosen and alternative.location.box_label != p.chosen.location.box_label
            assert set_points[alternative.location.freezer_id] == target
    # blood: 10 samples for the fridge's 10 free positions, all placed.
    assert sum(p.sample.sample_type == "blood" for p in placed) == 10


def test_a_full_lab_places_what_fits_and_says_why_for_the_rest() -> None:
    lab = _lab(_stored("FRZ-01/R1/B1", POSITIONS[:98]), _stored("FRZ-02/R1/B1", POSITIONS))
    incoming = [IncomingSample("RNA", "PRJ-0001", sample_id=f"N{i}") for i in range(3)]
    placed = recommend(incoming, lab, _risk(FRZ_01=0.05, FRZ_02=0.01), today=TODAY)
    assert [p.status for p in placed].count(PLACED) == 2
    assert sorted(filter(None, _locations(placed))) == ["FRZ-01/R1/B1/J10", "FRZ-01/R1/B1/J9"]
    [left] = [p for p in placed if p.status == NO_SPACE]
    assert "2 free for 3 incoming -80 °C samples" in left.message
    nothing = recommend(incoming[:1], _lab(_stored("FRZ-01/R1/B1", POSITIONS)), {}, today=TODAY)
    assert nothing[0].status == NO_SPACE and "no free position left at -80 °C (FRZ-01 are full)" in nothing[0].message


def test_a_sample_type_with_no_freezer_at_its_temperature_is_answered_not_raised() -> None:
    lab = _lab(_stored("FRZ-01/R1/B1", ["A1"]))
    placed = recommend([IncomingSample("FFPE", "PRJ-0001"), IncomingSample("RNA", "PRJ-0001")], lab, {}, today=TODAY)
    assert placed[0].status == NO_FREEZER
    assert "no freezer at 20 °C, the temperature FFPE needs (the lab's freezers: FRZ-01 -80 °C)" in placed[0].message
    assert placed[1].status == PLACED


def test_an_unknown_sample_type_names_the_sample_and_the_field() -> None:
    lab = _lab(_stored("FRZ-01/R1/B1", ["A1"]))
    with pytest.raises(PlacementError) as error:
        recommend([IncomingSample("RNA", "P"), IncomingSample("plasma", "P", sample_id="X-1")], lab, {})
    assert (error.value.index, error.value.field) == (1, "sample_type")
    assert "sample 1 (X-1): sample_type 'plasma' is not one of DNA, RNA" in str(error.value)


def test_missing_risk_is_assumed_median_and_said() -> None:
    lab = _lab(_stored("FRZ-01/R1/B1", ["A1"]), _stored("FRZ-02/R1/B1", ["A1"]))
    [placed] = recommend([IncomingSample("RNA", "PRJ-0009")], lab, _risk(FRZ_02=0.5), top=2, today=TODAY)
    sources = {c.location.freezer_id: c.reasons[1] for c in (placed.chosen, *placed.alternatives)}
    assert "risk unknown (no model, no history)" in sources["FRZ-01"] and "50.0%" in sources["FRZ-01"]


def test_the_table_has_one_row_per_answer_rank() -> None:
    lab = _lab(_stored("FRZ-01/R1/B1", ["A1"]), _stored("FRZ-02/R1/B1", ["A1"]), _stored("FRZ-02/R2/B1", ["A1"]))
    placed = recommend([IncomingSample("RNA", "P1", sample_id="N1"), IncomingSample("FFPE", "P1", sample_id="N2")], lab,
                       _risk(FRZ_01=0.1, FRZ_02=0.01), top=3, today=TODAY)  # fmt: skip
    table = placements_table(placed)
    assert table["rank"].tolist()[:3] == [1, 2, 3] and table["sample_id"].tolist() == ["N1"] * 3 + ["N2"]
    assert table.iloc[3]["status"] == NO_FREEZER and "20 °C" in table.iloc[3]["reasons"]


def test_door_load_spreads_a_large_batch_over_equally_good_freezers() -> None:
    lab = _lab(*[_stored(f"FRZ-0{f}/R1/B{b}", ["A1"]) for f in (1, 2) for b in range(1, 5)])
    batch = [IncomingSample("RNA", "PRJ-0001", sample_id=f"N{i}") for i in range(200)]
    risk = _risk(FRZ_01=0.05, FRZ_02=0.06)
    ignored = recommend(batch, lab, risk, top=1, weights=PlacementWeights(load=0), today=TODAY)
    assert {p.chosen.location.freezer_id for p in ignored} == {"FRZ-01"}
    spread = recommend(batch, lab, risk, top=1, today=TODAY)
    per_freezer = pd.Series([p.chosen.location.freezer_id for p in spread]).value_counts()
    assert set(per_freezer.index) == {"FRZ-01", "FRZ-02"} and per_freezer.min() >= 60
    assert any(r.startswith("door load: ") for r in spread[0].chosen.reasons)
    assert len({p.chosen.location for p in spread}) == 200


def test_history_risk_ranks_the_bad_units_of_the_hidden_process_above_the_good_ones() -> None:
    from tracseq_dagster.generator import generate_samples
    from tracseq_dagster.operations.placement_risk import HISTORY_SOURCE, excursion_risk

    samples = generate_samples(3000, seed=3)
    state = freezer_state(samples)
    report = excursion_risk(samples, state.freezers["freezer_id"].tolist(), state.as_of)
    assert report.source == "history" and any("no freezer_excursion_risk model is served" in n for n in report.notes)
    p = {f: r.probability for f, r in report.risk.items()}
    assert all(0.0 <= v <= 1.0 for v in p.values()) and {r.source for r in report.risk.values()} == {HISTORY_SOURCE}
    # freezer_process: FRZ-03 and FRZ-08 are the bad units (0.07-0.08/day), FRZ-01 and FRZ-06 the good ones (0.006/day).
    assert min(p["FRZ-03"], p["FRZ-08"]) > max(p["FRZ-01"], p["FRZ-06"])


def test_no_history_gives_no_risk_and_says_so() -> None:
    from tracseq_dagster.operations.placement_risk import excursion_risk

    empty = pd.DataFrame(_stored("FRZ-01/R1/B1", ["A1"])).iloc[:0]
    report = excursion_risk(empty, ["FRZ-01"], pd.Timestamp("2026-02-01", tz="UTC"))
    assert report.risk == {} and report.source == "none"
    assert any("no model answer and no excursion history for FRZ-01" in n for n in report.notes)
