"""Recommendations that cite the SOP: packed at Bento build time from a real index, served from the bundle.

The index is built for real (unstructured, MiniLM, LanceDB) from the example lab documents plus
a second SOP written here on the catalog models' topics (freezers, sequencers, kit lots,
re-runs, delays), so that every model's recommendations have an SOP that answers them. The
models are fitted on generated data and served by the same predictors the Bento uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from catalog_support import generated_lab, pack_catalog, records_of
from serving_support import recent_samples

from tests.documents_helpers import example_folder
from tracseq_dagster.documents.citation_pack import pack_sop_citations
from tracseq_dagster.documents.pdf import PageLayout, write_pdf
from tracseq_dagster.documents.pipeline import index_folder
from tracseq_dagster.models import get_model
from tracseq_dagster.models.sample_quality import recommend as sample_quality_recommend
from tracseq_dagster.serving import columnar
from tracseq_dagster.serving.advice import RiskFactor, recommendations
from tracseq_dagster.serving.catalog_predictor import ServedCatalog
from tracseq_dagster.serving.catalog_schema import request_columns
from tracseq_dagster.serving.predictor import SampleQualityPredictor
from tracseq_dagster.serving.recommendation_citations import CITATIONS_FILE, FIELD, PackedCitations, cite_catalog, citing
from tracseq_dagster.serving.table_citations import METADATA_KEY, cite_table

SOP_014 = "SOP-014-nucleic-acid-extraction.pdf"
SOP_022 = "SOP-022-freezers-and-sequencing-runs.pdf"

# Recommendation kind -> the SOP page that tells the technician what to do (read from the documents).
EXPECTED: dict[str, str] = {
    "freeze_thaw_cycles": f"{SOP_014}, p. 2",
    "storage_temp_deviation_c": f"{SOP_014}, p. 2",
    "max_temp_deviation_c": f"{SOP_014}, p. 2",
    "integrity_score": f"{SOP_014}, p. 3",
    "log_concentration": f"{SOP_014}, p. 3",
    "total_yield_ng": f"{SOP_014}, p. 3",
    "temp_excursion_rate_per_day": f"{SOP_022}, p. 1",
    "excursion_rate_30d": f"{SOP_022}, p. 1",
    "days_since_excursion": f"{SOP_022}, p. 1",
    "intake_7d": f"{SOP_022}, p. 1",
    "instrument_failure_rate": f"{SOP_022}, p. 2",
    "kit_failure_rate": f"{SOP_022}, p. 2",
    "previous_run_failures": f"{SOP_022}, p. 2",
    "sequencing_queue_days": f"{SOP_022}, p. 3",
}
# Kinds no indexed SOP answers: cited by nothing rather than by the nearest passage.
UNANSWERED = ("purity_score", "transit_time_hours", "processing_delay_hours")


def freezer_and_sequencing_sop(folder: Path) -> Path:
    """Three pages: freezers (p1), sequencers, kit lots and re-runs (p2), priority and delays (p3)."""
    layout = PageLayout()
    layout.title("SOP-022 Freezer Monitoring and Sequencing Runs")
    layout.heading("Temperature excursions")
    layout.paragraph(
        "When a freezer's temperature goes out of range, its alarm calls the duty scientist, who moves the "
        "samples to the backup freezer FRZ-09 within 30 minutes and records the excursion. A freezer with two "
        "or more excursions in 30 days is taken out of use and serviced: facilities check the compressor and "
        "the door seal before it holds samples again."
    )
    layout.heading("Freezer intake")
    layout.paragraph(
        "No freezer receives more than 200 new samples per week. New samples are spread over the freezers at "
        "the same set point, which limits door openings."
    )
    layout.new_page()
    layout.heading("Sequencer maintenance")
    layout.paragraph(
        "A sequencer whose runs fail three times within 20 runs is taken out of use and serviced by the vendor "
        "engineer before it sequences further libraries."
    )
    layout.heading("Library kit lots")
    layout.paragraph(
        "When libraries of one library kit lot fail, the lot is quarantined and a control library is prepared "
        "from a new lot before the kit is used again."
    )
    layout.heading("Sequencing a failed sample again")
    layout.paragraph(
        "Before a sample whose run failed is sequenced again, the duty scientist reviews the input amount and "
        "the library QC trace of the failed run."
    )
    layout.new_page()
    layout.heading("Priority and delays")
    layout.paragraph(
        "A sample is marked urgent only at a clinician's request. When the sequencing queue is longer than five "
        "days, the requester is told of the expected delay by e-mail."
    )
    return write_pdf(folder / SOP_022, layout.pages, title="SOP-022")


@pytest.fixture(scope="module")
def lancedb_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("sops")
    folder = example_folder(root)
    freezer_and_sequencing_sop(folder)
    index_folder(folder, lake_root=root / "lake", lancedb_uri=root / "db", in_process=True)
    return str(root / "db")


@pytest.fixture(scope="module")
def citations(lancedb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> PackedCitations:
    bundle = tmp_path_factory.mktemp("bundle")
    outcome = pack_sop_citations(bundle, lancedb_uri)
    assert outcome.packed, outcome.status
    packed = PackedCitations.load(bundle)
    assert packed is not None
    return packed


def test_each_kind_is_packed_with_the_sop_page_that_answers_it(citations: PackedCitations) -> None:
    for kind, page in EXPECTED.items():
        assert kind in citations.kinds, f"{kind}: no citation"
        assert citations.kinds[kind][0]["citation"] == page, (kind, citations.kinds[kind][0])
    for kind in UNANSWERED:
        assert kind not in citations.kinds
    first = citations.kinds["freeze_thaw_cycles"][0]
    assert "at most three freeze-thaw cycles" in first["text"]  # the passage as written, for the technician
    assert set(first) == {"citation", "file_name", "page_start", "page_end", "text"}
    assert all(c["file_name"].startswith("SOP-") for found in citations.kinds.values() for c in found)
    assert citations.index_version is not None and len(citations.digest) == 8


def _worded(model: str, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """An answer with one risk factor ``kind``, worded by the model's own ``recommend``."""
    recommend = get_model(model).serving.recommend
    assert recommend is not None
    return {"risk_factors": [{"feature": kind}], "recommendations": recommend([kind], record, {})}


RECORD = {"freeze_thaw_cycles": 5, "storage_location": "FRZ-03/R2/B14/A7", "instrument_id": "SEQ-02",
          "library_kit": "KIT-A", "priority": "routine", "site": "north", "sample_type": "DNA"}  # fmt: skip
MODEL_OF = {
    "excursion_rate_30d": "freezer_excursion_risk",
    "days_since_excursion": "freezer_excursion_risk",
    "intake_7d": "freezer_excursion_risk",
    "instrument_failure_rate": "sequencing_success",
    "kit_failure_rate": "sequencing_success",
    "previous_run_failures": "sequencing_success",
    "sequencing_queue_days": "turnaround_hours",
}


def test_a_recommendation_of_each_kind_carries_its_sop_page(citations: PackedCitations) -> None:
    for kind, page in EXPECTED.items():
        model = MODEL_OF.get(kind, "sample_quality")
        answer = _worded(model, kind, RECORD)
        assert answer["recommendations"], (model, kind)
        cited = citations.for_answer(answer, RECORD, {}, get_model(model).serving.recommend)
        assert len(cited) == len(answer["recommendations"])
        assert cited[0] and cited[0][0]["citation"] == page, (kind, cited)
    unanswered = _worded("sample_quality", "purity_score", RECORD)
    assert citations.for_answer(unanswered, RECORD, {}, get_model("sample_quality").serving.recommend) == [[]]


def test_citations_follow_the_recommendation_they_belong_to(citations: PackedCitations) -> None:
    """Two factors, two recommendations: each cites its own page; a repeated action cites once."""
    factors = [RiskFactor("purity_score", 1.2, "", -0.3), RiskFactor("freeze_thaw_cycles", 5, "count", -0.2),
               RiskFactor("integrity_score", 0.3, "", -0.1)]  # fmt: skip
    record = {**RECORD, "a260_280": 1.5, "a260_230": 1.1, "rin": None, "din": 4.2}
    answer = {"risk_factors": [f.as_dict() for f in factors], "recommendations": recommendations(factors, record, {})}
    cited = citations.for_answer(answer, record, {}, get_model("sample_quality").serving.recommend)
    assert [[c["citation"] for c in found] for found in cited] == [[], [f"{SOP_014}, p. 2"], [f"{SOP_014}, p. 3"]]


@pytest.fixture(scope="module")
def lab() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generated_lab(1500, seed=5)


@pytest.fixture(scope="module")
def bundle(lab, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    samples, runs = lab
    families = {"sample_quality": ("logistic",), "sequencing_success": ("logistic",)}
    return pack_catalog(tmp_path_factory.mktemp("catalog") / "bundle", samples, runs, families)


def test_served_answers_carry_citations_and_are_otherwise_unchanged(lab, bundle: Path, lancedb_uri: str) -> None:  # type: ignore[no-untyped-def]
    samples, _ = lab
    assert PackedCitations.load(bundle) is None  # no SOPs packed: the answers are as before, no new field
    plain = ServedCatalog(bundle)
    cite_catalog(plain.models, PackedCitations.load(bundle))
    rows = records_of(samples.tail(200), request_columns(get_model("sample_quality")))
    ids = [f"r{i}" for i in range(len(rows))]
    now = pd.Timestamp(samples["received_ts"].max()) + pd.Timedelta(days=1)  # the same ages in both rounds
    before = plain.models["sample_quality"].predict(rows, ids, now=now)
    assert all(FIELD not in a.response for a in before)

    assert pack_sop_citations(bundle, lancedb_uri).packed
    packed = PackedCitations.load(bundle)
    cited = ServedCatalog(bundle)
    cite_catalog(cited.models, packed)
    after = cited.models["sample_quality"].predict(rows, ids, now=now)
    pages = {"Limit freeze-thaw": f"{SOP_014}, p. 2", "Re-extract": f"{SOP_014}, p. 3", "Re-quantify:": f"{SOP_014}, p. 3"}
    seen = set()
    for old, new in zip(before, after, strict=True):
        response = dict(new.response)
        found = response.pop(FIELD)
        assert response == old.response  # everything else as before
        assert len(found) == len(response["recommendations"])
        for text, passages in zip(response["recommendations"], found, strict=True):
            for start, page in pages.items():
                if text.startswith(start):
                    assert page in [p["citation"] for p in passages], (text, passages)
                    seen.add(start)
    assert seen, "no answer among 200 had a recommendation the SOPs answer"
    # A run-based model's answers cite too (its sample-side recommendations, the same SOP pages).
    libraries = records_of(lab[1].tail(50).merge(samples.drop(columns=["qc_status"]), on="sample_id"),
                           request_columns(get_model("sequencing_success")))  # fmt: skip
    for answer in cited.models["sequencing_success"].predict(libraries):
        assert len(answer.response[FIELD]) == len(answer.response["recommendations"])


@pytest.fixture(scope="module")
def sample_quality_predictor(tmp_path_factory: pytest.TempPathFactory) -> SampleQualityPredictor:
    """The original routes' predictor over a real bundle (a logistic champion in a real MLflow registry)."""
    from serving_support import trained_registry

    from tracseq_dagster.serving.bundle import export_bundle

    folder = tmp_path_factory.mktemp("sample_quality")
    trained = trained_registry(folder, rows=1500)
    trained.train("logistic", "run-1")
    export_bundle(trained.registry, trained.samples, trained.features, folder / "bundle")
    return SampleQualityPredictor(folder / "bundle")


def test_the_columnar_table_cites_like_predict(sample_quality_predictor: SampleQualityPredictor,
                                               citations: PackedCitations) -> None:  # fmt: skip
    """/fast/batch_predict: the side table names the passages of the kinds among the risk factors; worded
    answers carry a column aligned with ``recommendations``, the same citations as /predict (text aside)."""
    predictor = sample_quality_predictor
    samples = recent_samples(300, seed=41, id_offset=700_000)
    records = json.loads(samples.drop(columns=["qc_status"]).to_json(orient="records", date_format="iso"))
    records.append(dict(records[3]))  # a repeated row is answered (and cited) twice
    moment = predictor.history.cutoff + pd.Timedelta(hours=1)
    expected = citations.attach(predictor.predict(records, as_of=moment), records, sample_quality_recommend)
    valid = columnar.validate_table(pa.Table.from_pylist(records))

    worded = predictor.predict_table(valid, as_of=moment, texts=True)
    table = cite_table(worded, worded.table("b1"), citations, sample_quality_recommend)
    column = table[FIELD].to_pylist()
    assert len(column) == len(records)
    cited = 0
    for want, got, texts in zip(expected, column, table["recommendations"].to_pylist(), strict=True):
        assert texts == want.response["recommendations"] and len(got) == len(texts)
        assert got == [[{k: c[k] for k in ("citation", "file_name", "page_start", "page_end")} for c in passages]
                       for passages in want.response[FIELD]]  # fmt: skip
        cited += any(got)
    assert cited, "no answer among 300 had a recommendation the SOPs answer"

    side = json.loads(table.schema.metadata[METADATA_KEY.encode()])
    factors = {row[f"risk_factor_{i}"] for row in table.to_pylist() for i in range(1, 6)} - {None}
    assert set(side) == {kind for kind in factors if kind in citations.kinds} and side
    assert all(side[kind] == list(citations.kinds[kind]) for kind in side)  # the passages with their text
    assert table.schema.metadata[b"batch_id"] == b"b1"  # the answer's own metadata kept

    plain = predictor.predict_table(valid, as_of=moment)  # without ?recommendations=text: the side table only
    fast = cite_table(plain, plain.table("b2"), citations, sample_quality_recommend)
    assert FIELD not in fast.column_names and json.loads(fast.schema.metadata[METADATA_KEY.encode()]) == side
    unchanged = plain.table("b3")
    assert cite_table(plain, unchanged, None, sample_quality_recommend) is unchanged  # no citations packed


def test_the_sample_quality_predictor_is_wrapped_only_with_citations(citations: PackedCitations) -> None:
    def predict(records: list[dict[str, Any]]) -> list[Any]:
        return []

    assert citing(predict, None, None) is predict
    assert citing(predict, citations, None) is not predict


def test_nothing_is_packed_without_an_index_or_without_sops(tmp_path: Path) -> None:
    missing = tmp_path / "no-db"
    outcome = pack_sop_citations(tmp_path, str(missing))
    assert not outcome.packed and "no document index" in outcome.status
    assert not missing.exists() and not (tmp_path / CITATIONS_FILE).exists()  # the build only reads
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "library-prep-notes.md").write_text("# Library preparation\n\nThe kit needs 200 ng of input DNA.\n")
    index_folder(notes, lake_root=tmp_path / "lake", lancedb_uri=tmp_path / "db", in_process=True)
    outcome = pack_sop_citations(tmp_path, str(tmp_path / "db"))
    assert not outcome.packed and "no recommendation kind" in outcome.status
    assert PackedCitations.load(tmp_path) is None


def test_a_broken_citations_file_is_named(tmp_path: Path) -> None:
    from tracseq_dagster.serving.recommendation_citations import CitationFileError

    (tmp_path / CITATIONS_FILE).write_text(json.dumps({"format": 1, "kinds": "x"}))
    with pytest.raises(CitationFileError, match=CITATIONS_FILE):
        PackedCitations.load(tmp_path)
