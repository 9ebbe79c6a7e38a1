"""Serving every catalog model in process: the generic predictor (answers, categories, intervals,
worded risk factors, serving features equal to training features) and the /models routes through
Starlette's TestClient (listing, 404 naming the served models, 400 naming the bad field, the
columnar route, the prediction log's model column, the A/B split per model)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from catalog_support import generated_lab, pack_catalog, records_of
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tracseq_dagster.conformal import conformal_half_width
from tracseq_dagster.evaluation import Evaluation, with_conformal_interval
from tracseq_dagster.models import get_model, turnaround_hours
from tracseq_dagster.run_features import (
    SEQUENCING_SUCCESS_FEATURE_NAMES,
    TURNAROUND_FEATURE_NAMES,
    sequencing_success_frame,
    turnaround_frame,
)
from tracseq_dagster.serving.catalog_predictor import ServedCatalog
from tracseq_dagster.serving.catalog_routes import CatalogService, catalog_routes
from tracseq_dagster.serving.catalog_schema import request_columns
from tracseq_dagster.serving.columnar import ARROW_STREAM, PARQUET
from tracseq_dagster.serving.prediction_log import ParquetPredictionLog, PostgresPredictionLog
from tracseq_dagster.serving.traffic_split import TrafficSplit
from tracseq_dagster.training import interval_tags

MODELS = ("sample_quality", "sequencing_success", "turnaround_hours")


@pytest.fixture(scope="module")
def lab() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generated_lab(2500, seed=21)


@pytest.fixture(scope="module")
def bundle(lab, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    samples, runs = lab
    families = {
        "sample_quality": ("logistic",),
        "sequencing_success": ("logistic", "lightgbm"),
        "turnaround_hours": ("lightgbm",),
    }
    return pack_catalog(tmp_path_factory.mktemp("catalog") / "bundle", samples, runs, families)


@pytest.fixture(scope="module")
def served(bundle: Path) -> ServedCatalog:
    return ServedCatalog(bundle)


class Logged:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        self.rows += rows


def client_of(catalog: ServedCatalog) -> tuple[TestClient, Logged]:
    logged = Logged()
    state = CatalogService(catalog, logged)
    return TestClient(Starlette(routes=catalog_routes(lambda: state)), raise_server_exceptions=False), logged


def library_requests(lab: tuple[pd.DataFrame, pd.DataFrame], n: int, *, with_run_id: bool = True) -> list[dict[str, Any]]:
    """The last ``n`` libraries of the generated runs as sequencing_success requests (sample record + run context)."""
    samples, runs = lab
    rows = runs.tail(n).merge(samples.drop(columns=["qc_status"]), on="sample_id")
    columns = request_columns(get_model("sequencing_success"))
    return records_of(rows if with_run_id else rows.drop(columns=["run_id"]), columns)


def sample_requests(samples: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    return records_of(samples.tail(n), request_columns(get_model("turnaround_hours")))


# -- the generic predictor ---------------------------------------------------------------------


def test_sequencing_success_serving_features_equal_its_training_rows(lab, served: ServedCatalog) -> None:  # type: ignore[no-untyped-def]
    samples, runs = lab
    model = served.models["sequencing_success"]
    requests = library_requests(lab, 40)
    from tracseq_dagster.serving.catalog_schema import request_model

    rows = [request_model("sequencing_success").model_validate(r).model_dump() for r in requests]
    served_features = model.features(rows)
    training = sequencing_success_frame(samples, runs).loc[[(r["run_id"], r["sample_id"]) for r in rows]]
    expected = training[list(SEQUENCING_SUCCESS_FEATURE_NAMES)].reset_index(drop=True)
    numeric = [c for c in expected.columns if expected[c].dtype.kind == "f"]
    categorical = [c for c in expected.columns if c not in numeric]
    # JSON timestamps carry milliseconds: ages in hours may differ by far less than a second.
    np.testing.assert_allclose(served_features[numeric].to_numpy(float), expected[numeric].to_numpy(float), atol=1e-5, rtol=1e-9)
    assert (served_features[categorical].astype(str).to_numpy() == expected[categorical].astype(str).to_numpy()).all()
    assert served_features["instrument_recent_runs"].max() > 0  # the run history was read, not an empty one


def test_turnaround_serving_features_equal_its_training_rows(lab, served: ServedCatalog) -> None:  # type: ignore[no-untyped-def]
    samples, runs = lab
    from tracseq_dagster.serving.catalog_schema import request_model

    rows = [request_model("turnaround_hours").model_validate(r).model_dump() for r in sample_requests(samples, 30)]
    served_features = served.models["turnaround_hours"].features(rows)
    expected = (
        turnaround_frame(samples, runs).loc[[r["sample_id"] for r in rows], list(TURNAROUND_FEATURE_NAMES)].reset_index(drop=True)
    )
    numeric = [c for c in expected.columns if expected[c].dtype.kind == "f"]
    np.testing.assert_allclose(
        served_features[numeric].to_numpy(float), expected[numeric].to_numpy(float), atol=1e-5, equal_nan=True
    )
    assert served_features["recent_turnaround_count"].max() > 0


def test_sequencing_success_answers_p_pass_a_category_and_run_factors_in_the_labs_words(lab, served: ServedCatalog) -> None:  # type: ignore[no-untyped-def]
    client, logged = client_of(served)
    answer = client.post("/models/sequencing_success/batch_predict", json={"records": library_requests(lab, 60)})
    assert answer.status_code == 200, answer.text
    answers = answer.json()["answers"]
    assert len(answers) == 60
    spec = get_model("sequencing_success").serving
    worded = re.compile(r"^(instrument SEQ-\d+|library kit \S+) failed \d+ of the \d+ libraries of its last \d+ runs$")
    run_factor_seen = False
    for a in answers:
        assert 0.0 <= a["probability"] <= 1.0 and a["target_class"] == "pass"
        assert a["category"] == spec.category(a["probability"])
        assert a["probability"] == pytest.approx(a["class_probabilities"]["pass"])
        contributions = [f["contribution"] for f in a["risk_factors"]]
        assert all(c < 0 for c in contributions) and contributions == sorted(contributions)  # risks only, worst first
        for factor in a["risk_factors"]:
            assert factor["text"]
            if factor["feature"].startswith(("instrument_failure", "instrument_recent", "kit_")):
                assert worded.match(factor["text"]), factor["text"]
                run_factor_seen = True
    assert run_factor_seen
    assert any("library kit" in r or "sequencer" in r for a in answers for r in a["recommendations"])
    assert {r["model"] for r in logged.rows} == {"sequencing_success"} and len(logged.rows) == 60
    assert all(r["prediction"] == r["quality_probability"] for r in logged.rows)


def test_turnaround_answers_a_value_with_its_conformal_interval(lab, served: ServedCatalog) -> None:  # type: ignore[no-untyped-def]
    samples, _ = lab
    client, logged = client_of(served)
    card = served.models["turnaround_hours"].variants["champion"].card
    assert card.interval is not None and card.interval["coverage"] == 0.9
    half = card.interval["half_width"]
    for record in sample_requests(samples, 5):
        response = client.post("/models/turnaround_hours/predict", json=record)
        assert response.status_code == 200, response.text
        a = response.json()
        assert "category" not in a and a["interval"]["half_width"] == half and a["interval"]["coverage"] == 0.9
        assert a["interval"]["high"] == pytest.approx(a["prediction"] + half)
        assert a["interval"]["low"] == pytest.approx(max(0.0, a["prediction"] - half))
        ups = [f["contribution"] for f in a["risk_factors"]]
        assert all(c > 0 for c in ups)  # what lengthens the turnaround, never a zero
    assert logged.rows[0]["model"] == "turnaround_hours" and np.isnan(logged.rows[0].get("quality_probability", np.nan))


def test_sample_quality_through_the_catalog_route_matches_its_category_thresholds(lab, served: ServedCatalog) -> None:  # type: ignore[no-untyped-def]
    samples, _ = lab
    client, _ = client_of(served)
    response = client.post("/models/sample_quality/batch_predict", json={"records": sample_requests(samples, 20)})
    assert response.status_code == 200, response.text
    for a in response.json()["answers"]:
        assert set(a["class_probabilities"]) == {"pass", "borderline", "fail"}
        assert a["category"] == ("high" if a["probability"] >= 0.7 else "medium" if a["probability"] >= 0.4 else "low")


def test_conformal_interval_is_measured_on_the_holdout_and_tagged() -> None:
    class Constant:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return np.full(len(x), 10.0)

    frame = pd.DataFrame({"x": np.arange(19.0), "y": 10.0 + np.arange(1, 20)})  # errors 1..19
    evaluation = with_conformal_interval(Evaluation("mae", False, 0.0, 19), Constant(), frame, "y", 0.9)
    assert evaluation.interval_half_width == conformal_half_width(frame["y"], np.full(19, 10.0), 0.9) == 18.0  # ceil(20*0.9)=18th
    assert interval_tags(evaluation) == {"interval_half_width": "18", "interval_coverage": "0.9"}
    assert interval_tags(Evaluation("roc_auc", True, 0.8, 19)) == {}
    assert turnaround_hours.conformal_half_width(frame["y"].to_numpy(), np.full(19, 10.0)) == 18.0


# -- routes ---------------------------------------------------------------------------------


def test_get_models_lists_each_model_with_versions_aliases_metrics_and_features(served: ServedCatalog) -> None:
    client, _ = client_of(served)
    listing = client.get("/models").json()
    assert [m["name"] for m in listing["models"]] == list(MODELS)
    by_name = {m["name"]: m for m in listing["models"]}
    assert [(v["alias"], v["family"]) for v in by_name["sequencing_success"]["versions"]] == [
        ("champion", "logistic"),
        ("challenger", "lightgbm"),
    ]
    assert by_name["turnaround_hours"]["task"] == "regression" and "interval" in by_name["turnaround_hours"]["versions"][0]
    assert by_name["sequencing_success"]["features"] == list(SEQUENCING_SUCCESS_FEATURE_NAMES)
    one = client.get("/models/sequencing_success").json()
    assert one["request_columns"][-4:] == ["instrument_id", "library_kit", "library_prep_ts", "run_id"]
    assert one["feature_glossary"]["instrument_failure_rate"]["unit"] == "fraction 0..1"


def test_unknown_or_unserved_model_is_a_404_listing_the_served_ones(served: ServedCatalog) -> None:
    client, _ = client_of(served)
    for path in ("/models/nope", "/models/nope/predict", "/models/nope/batch_predict", "/models/nope/fast/batch_predict"):
        response = client.get(path) if path == "/models/nope" else client.post(path, json={})
        assert response.status_code == 404, (path, response.text)
        assert response.json()["served"] == list(MODELS) and "not in the model catalog" in response.json()["error"]


@pytest.mark.parametrize(
    ("model", "change", "field"),
    [
        ("sequencing_success", {"instrument_id": None}, "instrument_id"),
        ("sequencing_success", {"library_prep_ts": "yesterday-ish"}, "library_prep_ts"),
        ("sequencing_success", {"run_id": "RUN-12"}, "run_id"),
        ("turnaround_hours", {"sample_type": "plasma"}, "sample_type"),
        ("turnaround_hours", {"storage_temp_c": 99.0}, "storage_temp_c"),
        ("sample_quality", {"received_ts": None}, "received_ts"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(lab, served: ServedCatalog, model: str, change: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    client, logged = client_of(served)
    record = {**library_requests(lab, 1)[0], **change}
    if change.get("instrument_id", "") is None:
        del record["instrument_id"]
    response = client.post(f"/models/{model}/predict", json=record)
    assert response.status_code == 400, response.text
    assert any(field in map(str, entry["loc"]) for entry in response.json()["detail"]), response.json()
    batch = client.post(f"/models/{model}/batch_predict", json={"records": [library_requests(lab, 1)[0], record]})
    assert batch.status_code == 400 and any(entry["loc"][:2] == ["records", 1] and field in map(str, entry["loc"])
                                            for entry in batch.json()["detail"]), batch.json()  # fmt: skip
    assert logged.rows == []


def test_a_library_prepared_before_its_sample_arrived_is_refused(lab, served: ServedCatalog) -> None:  # type: ignore[no-untyped-def]
    client, _ = client_of(served)
    record = library_requests(lab, 1)[0]
    record["library_prep_ts"] = (pd.Timestamp(record["received_ts"]) - pd.Timedelta(hours=1)).isoformat()
    response = client.post("/models/sequencing_success/predict", json=record)
    assert response.status_code == 400 and "library_prep_ts" in response.json()["detail"][0]["msg"]
    for body in (b"not json", b"[]", b"{}"):
        assert client.post("/models/sequencing_success/predict", content=body).status_code == 400
    assert client.post("/models/sequencing_success/batch_predict", json={"records": []}).status_code == 400


def _arrow(records: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist(records)
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_columnar_route_answers_a_table_in_order_and_refuses_a_bad_row(lab, served: ServedCatalog) -> None:  # type: ignore[no-untyped-def]
    client, logged = client_of(served)
    records = library_requests(lab, 12, with_run_id=False)
    json_answers = client.post("/models/sequencing_success/batch_predict", json={"records": records}).json()["answers"]
    response = client.post(
        "/models/sequencing_success/fast/batch_predict", content=_arrow(records), headers={"content-type": ARROW_STREAM}
    )
    assert response.status_code == 200, response.text
    table = ipc.open_stream(pa.BufferReader(response.content)).read_all()
    assert table.column("sample_id").to_pylist() == [r["sample_id"] for r in records]
    assert table.column("probability").to_pylist() == [a["probability"] for a in json_answers]
    assert table.column("risk_text_1").to_pylist() == [a["risk_factors"][0]["text"] for a in json_answers]
    assert table.schema.metadata[b"model"] == b"sequencing_success"
    parquet = client.post("/models/turnaround_hours/fast/batch_predict", headers={"content-type": PARQUET},
                          content=_parquet(sample_requests(lab[0], 4)))  # fmt: skip
    answered = pq.read_table(pa.BufferReader(parquet.content))
    assert parquet.status_code == 200 and answered.num_rows == 4 and "interval_low" in answered.column_names
    bad = [*records[:2], {**records[2], "library_kit": ""}]
    refused = client.post(
        "/models/sequencing_success/fast/batch_predict", content=_arrow(bad), headers={"content-type": ARROW_STREAM}
    )
    assert refused.status_code == 400 and refused.json()["detail"][0]["loc"] == ["records", 2, "library_kit"], refused.text
    garbage = client.post(
        "/models/sequencing_success/fast/batch_predict", content=b"nope", headers={"content-type": ARROW_STREAM}
    )
    assert garbage.status_code == 400
    assert (
        client.post(
            "/models/sequencing_success/fast/batch_predict", content=b"x", headers={"content-type": "text/csv"}
        ).status_code
        == 415
    )
    models = [r["model"] for r in logged.rows]  # the JSON batch, the Arrow table, the Parquet table; nothing refused
    assert models == ["sequencing_success"] * 24 + ["turnaround_hours"] * 4


def _parquet(records: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue()


def test_the_ab_split_is_per_model_and_sticky(lab, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    split = ServedCatalog(bundle, TrafficSplit(0.5, "t"))
    client, _ = client_of(split)
    records = library_requests(lab, 40)
    first = [
        a["model"]["variant"]
        for a in client.post("/models/sequencing_success/batch_predict", json={"records": records}).json()["answers"]
    ]
    again = [
        a["model"]["variant"]
        for a in client.post("/models/sequencing_success/batch_predict", json={"records": records}).json()["answers"]
    ]
    assert first == again and set(first) == {"champion", "challenger"}
    # a model without a challenger answers from its champion whatever the share
    answers = client.post("/models/turnaround_hours/batch_predict", json={"records": sample_requests(lab[0], 10)}).json()[
        "answers"
    ]
    assert {a["model"]["variant"] for a in answers} == {"champion"}
    assert split.models["sequencing_success"].split.salt != split.models["sample_quality"].split.salt


# -- the prediction log's model column ----------------------------------------------------------


def _old_row(request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "ts": pd.Timestamp.now(tz="UTC"),
        "sample_id": "TS-2026-000001",
        "variant": "champion",
        "model_version": "1",
        "quality_probability": 0.9,
        "category": "high",
        "predicted_status": "pass",
        "latency_ms": 1.0,
    }


def test_log_rows_carry_the_model_and_old_rows_read_as_sample_quality(tmp_path: Path) -> None:
    log = ParquetPredictionLog(tmp_path / "log")
    log.append([_old_row("old")])
    log.append([{**_old_row("new"), "model": "turnaround_hours", "prediction": 31.5}])
    assert log.read()["request_id"].tolist() == ["old"] and log.read()["model"].tolist() == ["sample_quality"]
    everything = log.read(model=None)
    assert everything.set_index("request_id")["model"].to_dict() == {"old": "sample_quality", "new": "turnaround_hours"}
    assert log.read(model="turnaround_hours")["prediction"].tolist() == [31.5]


def test_postgres_log_adds_the_model_column_to_an_older_table(postgres_url: str) -> None:
    import psycopg2

    connection = psycopg2.connect(postgres_url)
    with connection, connection.cursor() as cursor:  # the table as the log made it before the model column
        cursor.execute('CREATE TABLE prediction_log (request_id text, ts timestamptz, sample_id text, variant text, '
                       'model_version text, quality_probability double precision, category text, predicted_status text, '
                       'latency_ms double precision)')  # fmt: skip
        cursor.execute("INSERT INTO prediction_log (request_id, ts) VALUES ('old', now())")
    connection.close()
    log = PostgresPredictionLog(postgres_url)
    log.append([{**_old_row("new"), "model": "sequencing_success", "prediction": 0.8}])
    assert log.read()["request_id"].tolist() == ["old"]
    assert log.read(model="sequencing_success")["prediction"].tolist() == [0.8]
    assert sorted(log.read(model=None)["model"]) == ["sample_quality", "sequencing_success"]
