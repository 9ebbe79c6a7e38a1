"""Every catalog model served for real: both export kinds generated and ingested by the CLI, the
three models trained through Dagster runs (`tracseq train --model …`), one Bento packaged
(`tracseq bento build`), `bentoml serve` on a free loopback port, each model's routes called over
HTTP (JSON, batch, Arrow), bad input and unknown models refused, the prediction log per model."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import requests
from processes import stop
from test_serving_e2e import AUTH, Stack

from tracseq_dagster.conformal import INTERVAL_HALF_WIDTH_TAG
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.models import get_model
from tracseq_dagster.registry import CHAMPION, ModelRegistry
from tracseq_dagster.serving.catalog_schema import request_columns
from tracseq_dagster.serving.columnar import ARROW_STREAM
from tracseq_dagster.serving.prediction_log import ParquetPredictionLog
from tracseq_dagster.tracking import open_client

pytestmark = pytest.mark.slow

MODELS = ("sample_quality", "sequencing_success", "turnaround_hours")


class CatalogStack(Stack):
    """test_serving_e2e's stack (CLI, registry, `bentoml serve` with a token, Redis, a Parquet log), plus GET and the build's output."""

    def build_with_output(self) -> tuple[str, str]:
        out = self.run("bento", "build")
        match = re.search(r"built (sample_quality:\S+)", out)
        assert match, out
        return match.group(1), out

    def get(self, route: str) -> requests.Response:
        return requests.get(self.url + route, headers=AUTH, timeout=30)


def json_rows(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    import json

    return json.loads(frame[[c for c in columns if c in frame.columns]].to_json(orient="records", date_format="iso"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    stack = CatalogStack(tmp_path_factory.mktemp("catalog_bento"))
    landing = stack.folder / "landing"
    for kind in ("samples", "runs"):
        stack.run("generate-exports", "--rows", "1500", "--seed", "7", "--out", str(landing), "--kind", kind)
    stack.run("ingest", str(landing))
    trained = stack.run("train", *[a for m in MODELS for a in ("--model", m)], "--families", "logistic,lightgbm",
                        "--budget-s", "8", "--cv-folds", "2", "--max-trials", "3")  # fmt: skip
    for model in MODELS:
        assert f"{model} promotion gate: promoted" in trained, trained
    stack.tag, stack.build_output = stack.build_with_output()
    stack.serve(stack.tag)
    yield stack
    if stack.process is not None:
        stop(stack.process)


def test_get_models_lists_the_three_champions(stack: CatalogStack) -> None:
    listing = stack.get("/models").json()
    assert [m["name"] for m in listing["models"]] == list(MODELS), listing
    assert all(m["versions"][0]["alias"] == "champion" and m["versions"][0]["metrics"] for m in listing["models"])
    assert "serving sample_quality, sequencing_success, turnaround_hours" in " ".join(stack.build_output.split())  # the console wraps
    details = stack.get("/models/sequencing_success").json()
    assert "instrument_id" in details["request_columns"] and details["declaration"]["predicted_at"].startswith("library_prep_ts")


def test_each_model_answers_json_batch_and_arrow(stack: CatalogStack) -> None:
    samples = accepted_samples(stack.lake)
    runs = stack.lake.read_validated_runs()
    libraries = runs.tail(8).merge(samples.drop(columns=["qc_status"]), on="sample_id")
    requests_of = {
        "sample_quality": json_rows(samples.tail(8), request_columns(get_model("sample_quality"))),
        "sequencing_success": json_rows(libraries, request_columns(get_model("sequencing_success"))),
        "turnaround_hours": json_rows(samples.tail(8), request_columns(get_model("turnaround_hours"))),
    }
    for model, records in requests_of.items():
        one = stack.post(f"/models/{model}/predict", records[0])
        assert one.status_code == 200, (model, one.text)
        answer = one.json()
        assert answer["model"]["name"] == model and answer["risk_factors"] is not None
        batch = stack.post(f"/models/{model}/batch_predict", {"records": records})
        assert batch.status_code == 200 and len(batch.json()["answers"]) == len(records), batch.text
        sink = io.BytesIO()
        table = pa.Table.from_pylist(records)
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        fast = stack.post(f"/models/{model}/fast/batch_predict", None, data=sink.getvalue(), headers={**AUTH, "content-type": ARROW_STREAM})
        assert fast.status_code == 200, (model, fast.text)
        answered = ipc.open_stream(pa.BufferReader(fast.content)).read_all()
        assert answered.column("sample_id").to_pylist() == [r["sample_id"] for r in records]
        if model == "turnaround_hours":
            registry = ModelRegistry(open_client(stack.env["MLFLOW_TRACKING_URI"]), model)
            half = float(registry.version(CHAMPION).tags[INTERVAL_HALF_WIDTH_TAG])
            served = [a for a in batch.json()["answers"] if a["model"]["variant"] == "champion"]
            assert served and all(a["interval"]["half_width"] == pytest.approx(half) for a in served)
        else:
            assert 0.0 <= answer["probability"] <= 1.0 and answer["category"] in ("high", "medium", "low")
    # the original routes stay sample_quality's
    original = stack.post("/predict", requests_of["sample_quality"][0])
    assert original.status_code == 200 and "quality_probability" in original.json(), original.text


def test_bad_input_and_unknown_models_are_refused_not_crashed(stack: CatalogStack) -> None:
    samples = accepted_samples(stack.lake)
    record = json_rows(samples.tail(1), request_columns(get_model("turnaround_hours")))[0]
    bad = stack.post("/models/sequencing_success/predict", record)  # no run context
    assert bad.status_code == 400 and {"instrument_id", "library_kit", "library_prep_ts"} <= {
        str(e["loc"][-1]) for e in bad.json()["detail"]}, bad.text  # fmt: skip
    wrong = stack.post("/models/turnaround_hours/predict", {**record, "sample_type": "plasma"})
    assert wrong.status_code == 400 and wrong.json()["detail"][0]["loc"][-1] == "sample_type"
    unknown = stack.post("/models/freezer_excursion_risk/predict", record)
    assert unknown.status_code == 404 and unknown.json()["served"] == list(MODELS)
    assert stack.post("/models/turnaround_hours/fast/batch_predict", None, data=b"garbage",
                      headers={**AUTH, "content-type": ARROW_STREAM}).status_code == 400  # fmt: skip
    assert requests.get(stack.url + "/models", timeout=30).status_code == 401  # the token guards the catalog routes too


def test_the_prediction_log_keeps_each_models_rows(stack: CatalogStack) -> None:
    log = ParquetPredictionLog(stack.folder / "prediction_log")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = log.read(model=None)
        if set(MODELS) <= set(rows["model"]):
            break
        time.sleep(1)
    by_model = rows.groupby("model").size().to_dict()
    assert set(MODELS) <= set(by_model), by_model
    assert set(log.read()["model"]) == {"sample_quality"}  # what the existing reports read
    split = rows[rows["model"] == "sequencing_success"]
    assert split["variant"].isin(["champion", "challenger"]).all() and split["prediction"].between(0, 1).all()
