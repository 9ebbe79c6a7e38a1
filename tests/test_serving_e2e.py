"""The Bento for real: built through Dagster, served by `bentoml serve`, called over HTTP.

One module-wide stack: sample and run exports ingested by the CLI; sample_quality with a
LightGBM champion and a logistic challenger in a real MLflow registry; the two run models
(sequencing_success, turnaround_hours) trained through Dagster runs (`tracseq train --model …`);
`tracseq bento build` (the Dagster asset) packaging all three, then `bentoml serve` on a free
loopback port with a bearer token, Redis for features and the cache, and a Parquet prediction log.

The sample_quality routes are tested first, then every catalog model's routes (JSON, batch,
Arrow), bad input and unknown models, and the prediction log per model. The last test promotes
the sample_quality challenger, rebuilds and restarts.

The catalog routes share this Bento rather than building and serving a second one: one build
serves every model. sample_quality's own `tracseq train` is test_training_dagster's. So do the SOP
citations: the first build has no documents (answers without citations); then the example SOPs are
ingested and the Bento rebuilt, and every later build packs their citations.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import redis
import requests
from feast_support import clear_project, feature_server
from processes import free_port, stop, wait_until_ready
from serving_support import TrainedRegistry, recent_samples, request_records

from tracseq_dagster.conformal import INTERVAL_HALF_WIDTH_TAG
from tracseq_dagster.feature_repo.config import FeastSettings
from tracseq_dagster.feature_repo.definitions import repo_objects
from tracseq_dagster.feature_repo.materialization import materialize_with_statistics
from tracseq_dagster.feature_repo.store import apply_repo, open_store
from tracseq_dagster.feature_repo.tables import write_feature_tables
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import get_model
from tracseq_dagster.registry import CHAMPION, ModelRegistry
from tracseq_dagster.run_generator import generate_runs
from tracseq_dagster.serving import columnar
from tracseq_dagster.serving.catalog_schema import request_columns
from tracseq_dagster.serving.prediction_log import ParquetPredictionLog, open_prediction_log
from tracseq_dagster.serving.recommendation_citations import FIELD as CITATIONS
from tracseq_dagster.serving.request_schema import MAX_BATCH_RECORDS
from tracseq_dagster.tracking import open_client

pytestmark = pytest.mark.slow

TOKEN = "test-token-5b1e"
REDIS_URL = "redis://127.0.0.1:6379/0"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODELS = ("sample_quality", "sequencing_success", "turnaround_hours")


class Stack:
    """The environment, the registry and the running server of this module."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.prefix = f"tracseq-test-{uuid.uuid4().hex[:8]}:"
        home = folder / "dagster_home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.env = {
            **os.environ,
            "TRACSEQ_DATA_DIR": str(folder / "data"),
            "DAGSTER_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "TRACSEQ_MLFLOW_ARTIFACTS": (folder / "artifacts").as_uri(),
            "BENTOML_HOME": str(folder / "bentoml"),
            "TRACSEQ_REDIS_URL": REDIS_URL,
            "TRACSEQ_REDIS_PREFIX": self.prefix,
            "TRACSEQ_PREDICTION_LOG": str(folder / "prediction_log"),
            "TRACSEQ_API_TOKEN": TOKEN,
            "TRACSEQ_CHALLENGER_SHARE": "0.3",
            "DO_NOT_TRACK": "1",
        }
        self.lake = Lake(folder / "data" / "lake")
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.build_output = ""

    def run(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "tracseq_dagster.cli", *args], env=self.env,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def build(self) -> str:
        """`tracseq bento build`: the Bento's tag (its console output is kept in ``build_output``)."""
        self.build_output = self.run("bento", "build")
        match = re.search(r"built (tracseq_predictions:\S+)", self.build_output)
        assert match, self.build_output
        return match.group(1)

    def serve(self, tag: str | None) -> None:
        """`bentoml serve <tag>`, or with no tag `tracseq bento serve` (the latest build)."""
        if self.process is not None:
            stop(self.process)
        port = free_port()
        log = self.folder / f"serve-{port}.log"
        address = ["--host", "127.0.0.1", "--port", str(port)]
        command = ([os.path.join(os.path.dirname(sys.executable), "bentoml"), "serve", tag, *address] if tag
                   else [sys.executable, "-m", "tracseq_dagster.cli", "bento", "serve", *address])  # fmt: skip
        self.process = subprocess.Popen(command, env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        wait_until_ready(self.process, f"{self.url}/readyz", log, timeout_s=180)

    def post(self, route: str, payload: Any, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + route, json=payload, headers=kwargs.pop("headers", AUTH), timeout=60, **kwargs)

    def get(self, route: str) -> requests.Response:
        return requests.get(self.url + route, headers=AUTH, timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("bento")
    stack = Stack(folder)
    landing = folder / "landing"
    landing.mkdir()
    samples = recent_samples(2000, seed=31)
    samples.to_csv(landing / "lims_export.csv", index=False)
    generate_runs(samples, seed=31).to_csv(landing / "runs_export.csv", index=False)
    stack.run("ingest", str(landing))
    registry = ModelRegistry(open_client(stack.env["MLFLOW_TRACKING_URI"]), "sample_quality")
    stack.trained = TrainedRegistry(registry, accepted_samples(stack.lake), stack.lake.read_features(),
                                    stack.env["MLFLOW_TRACKING_URI"], folder)  # fmt: skip
    stack.trained.train("lightgbm", "run-1")
    stack.trained.train("logistic", "run-2", promote=False)
    run_models = MODELS[1:]
    trained = stack.run("train", *[a for m in run_models for a in ("--model", m)], "--families", "logistic,lightgbm",
                        "--budget-s", "8", "--cv-folds", "2", "--max-trials", "3")  # fmt: skip
    for model in run_models:
        assert f"{model} promotion gate: promoted" in trained, trained
    stack.serve(stack.build())
    yield stack
    if stack.process is not None:
        stop(stack.process)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=stack.prefix + "*"):
        client.delete(key)


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return request_records(recent_samples(40, seed=32, id_offset=600_000))


def test_bearer_token_guards_everything_but_the_probes(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    assert stack.post("/predict", records[0], headers={}).status_code == 401
    assert stack.post("/predict", records[0], headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.get(stack.url + "/model", timeout=10).status_code == 401
    for probe in ("/readyz", "/livez", "/metrics"):
        assert requests.get(stack.url + probe, timeout=10).status_code == 200


def test_predict_through_the_bentoml_client(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    with bentoml.SyncHTTPClient(stack.url, token=TOKEN) as client:
        answer = client.predict(**records[0])
    assert answer["sample_id"] == records[0]["sample_id"]
    assert 0.0 <= answer["quality_probability"] <= 1.0
    assert answer["category"] in {"high", "medium", "low"}
    assert answer["model"]["name"] == "sample_quality" and answer["model"]["variant"] in {"champion", "challenger"}
    assert re.fullmatch(r"[0-9a-f]{32}", answer["request_id"])


def test_batch_answers_match_single_answers_and_the_split_is_sticky(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    batch = stack.post("/batch_predict", {"samples": records})
    assert batch.status_code == 200
    answers = batch.json()
    assert [a["sample_id"] for a in answers] == [r["sample_id"] for r in records]
    singles = [stack.post("/predict", r).json() for r in records[:8]]
    for single, from_batch in zip(singles, answers, strict=False):
        assert single["quality_probability"] == pytest.approx(from_batch["quality_probability"], abs=1e-3)
        assert single["model"] == from_batch["model"]  # sticky: the same sample meets the same model
    variants = {a["model"]["variant"] for a in answers}
    assert variants == {"champion", "challenger"}  # 30% challenger over 40 samples
    low = [a for a in answers if a["category"] == "low"]
    assert low and all(a["risk_factors"] and a["recommendations"] for a in low)


def test_the_mounted_fast_route_answers_like_predict(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    record = {**records[25], "freeze_thaw_cycles": 11}
    fast = stack.post("/fast/predict", record)
    assert fast.status_code == 200, fast.text
    slow = stack.post("/predict", record).json()
    assert fast.json()["quality_probability"] == slow["quality_probability"] and fast.json()["model"] == slow["model"]
    assert stack.post("/fast/predict", record, headers={}).status_code == 401
    bad = stack.post("/fast/predict", {**record, "volume_ul": "lots", "sample_type": "plasma"})
    assert bad.status_code == 400 and {("volume_ul",), ("sample_type",)} <= {tuple(d["loc"]) for d in bad.json()["detail"]}


def test_the_columnar_route_answers_arrow_like_batch_predict(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    body = columnar.write_table(pa.Table.from_pylist(records), columnar.ARROW_STREAM)
    headers = {**AUTH, "Content-Type": columnar.ARROW_STREAM}
    response = requests.post(stack.url + "/fast/batch_predict", data=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    table = columnar.read_table(response.content, columnar.ARROW_STREAM)
    from_json = stack.post("/batch_predict", {"samples": records}).json()
    assert table["sample_id"].to_pylist() == [a["sample_id"] for a in from_json]
    assert table["variant"].to_pylist() == [a["model"]["variant"] for a in from_json]  # the same sticky split
    assert table["quality_probability"].to_pylist() == pytest.approx([a["quality_probability"] for a in from_json], abs=1e-3)
    assert table.schema.metadata[b"cached"] == b"false"
    again = columnar.read_table(requests.post(stack.url + "/fast/batch_predict", data=body, headers=headers, timeout=60).content,
                                columnar.ARROW_STREAM)  # fmt: skip
    assert again.schema.metadata[b"cached"] == b"true" and again["request_id"] != table["request_id"]
    bad = pa.Table.from_pylist([records[0], {**records[1], "storage_temp_c": 120.0}])
    refused = requests.post(stack.url + "/fast/batch_predict", data=columnar.write_table(bad, columnar.PARQUET),
                            headers={**AUTH, "Content-Type": columnar.PARQUET}, timeout=60)  # fmt: skip
    assert refused.status_code == 400 and ["samples", 1, "storage_temp_c"] in [d["loc"] for d in refused.json()["detail"]]
    assert requests.post(stack.url + "/fast/batch_predict", data=body, headers={"Content-Type": columnar.ARROW_STREAM},
                         timeout=60).status_code == 401  # fmt: skip
    assert stack.post("/fast/batch_predict", {"samples": records}).status_code == 415
    log = open_prediction_log(stack.env["TRACSEQ_PREDICTION_LOG"])
    wanted = set(table["request_id"].to_pylist())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not wanted <= set(log.read()["request_id"]):
        time.sleep(0.5)
    assert wanted <= set(log.read()["request_id"])  # logged in bulk, in the background


def test_identical_requests_are_answered_from_the_cache(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    first = stack.post("/predict", records[20]).json()
    second = stack.post("/predict", records[20]).json()
    assert second["cached"] is True and second["quality_probability"] == first["quality_probability"]
    assert second["request_id"] != first["request_id"]
    assert any(
        k.startswith(f"{stack.prefix}prediction:".encode())
        for k in redis.Redis.from_url(REDIS_URL).scan_iter(match=stack.prefix + "*")
    )


def test_model_info_and_metrics(stack: Stack) -> None:
    info = requests.get(stack.url + "/model", headers=AUTH, timeout=10).json()
    champion, challenger = info["variants"]["champion"], info["variants"]["challenger"]
    assert (champion["version"], champion["family"], champion["attribution"]) == ("1", "lightgbm", "tree_path")
    assert (challenger["version"], challenger["family"], challenger["attribution"]) == ("2", "logistic", "linear")
    assert "holdout_roc_auc_ovr" in champion["metrics"] and champion["training_rows"] > 1000
    assert champion["export_hashes"] == ["export-a"] and len(champion["feature_code_version"]) == 16
    assert info["traffic_split"]["challenger_share"] == 0.3 and info["history_samples"] == 2000
    metrics = requests.get(stack.url + "/metrics", timeout=10).text
    assert re.search(r'tracseq_predictions_total\{category="\w+",model_version="1",variant="champion"\} \d', metrics)
    assert "tracseq_prediction_cache_hits_total" in metrics
    assert re.search(r'tracseq_request_duration_seconds_bucket\{[^}]*endpoint="/predict"', metrics)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: {k: v for k, v in r.items() if k != "site"}, "site"),
        (lambda r: {**r, "volume_ul": "twenty"}, "volume_ul"),
        (lambda r: {**r, "storage_temp_c": 120.0}, "storage_temp_c"),
        (lambda r: {**r, "sample_type": "plasma"}, "sample_type"),
        (lambda r: {**r, "freeze_thaw_cycles": -2}, "freeze_thaw_cycles"),
        (lambda r: {**r, "storage_location": "top shelf"}, "storage_location"),
        (lambda r: {**r, "received_ts": "yesterday"}, "received_ts"),
    ],
    ids=["missing", "mistyped", "out-of-range", "unknown-type", "negative-count", "bad-pattern", "bad-timestamp"],
)
def test_bad_records_get_400_naming_the_field(stack: Stack, records, change, field: str) -> None:  # type: ignore[no-untyped-def]
    response = stack.post("/predict", change(records[0]))
    assert response.status_code == 400, response.text
    assert [field] in [d["loc"] for d in response.json()["detail"]]
    in_batch = stack.post("/batch_predict", {"samples": [records[1], change(records[0])]})
    assert in_batch.status_code == 400
    assert ["samples", 1, field] in [d["loc"] for d in in_batch.json()["detail"]]


def test_malformed_and_oversized_requests_are_refused_not_crashed(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    broken = requests.post(
        stack.url + "/predict", data=b'{"sample_id": ', headers={**AUTH, "Content-Type": "application/json"}, timeout=10
    )
    assert broken.status_code == 400 and "json" in broken.text.lower()
    multipart = requests.post(stack.url + "/features", data=b'{"sample_ids": ["x"]}',
                              headers={**AUTH, "Content-Type": "multipart/form-data"}, timeout=10)  # fmt: skip
    assert multipart.status_code == 415 and "application/json" in multipart.text
    assert stack.post("/batch_predict", {"samples": []}).status_code == 400
    oversized = stack.post("/batch_predict", {"samples": [records[0]] * (MAX_BATCH_RECORDS + 1)})
    assert oversized.status_code == 400 and "samples" in oversized.text
    later = (pd.Timestamp(records[0]["received_ts"]) + pd.Timedelta(hours=1)).isoformat()
    order = stack.post("/predict", {**records[0], "collection_ts": later})
    assert order.status_code == 400 and "after received_ts" in order.text


def test_every_prediction_is_logged_in_the_background(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    answer = stack.post("/predict", {**records[30], "freeze_thaw_cycles": 7}).json()
    log = open_prediction_log(stack.env["TRACSEQ_PREDICTION_LOG"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        frame = log.read()
        if len(frame) and answer["request_id"] in set(frame["request_id"]):
            break
        time.sleep(0.5)
    row = frame.set_index("request_id").loc[answer["request_id"]]
    assert row["sample_id"] == records[30]["sample_id"] and row["freeze_thaw_cycles"] == 7.0
    assert row["model_version"] == answer["model"]["version"] and row["variant"] == answer["model"]["variant"]
    assert row["quality_probability"] == pytest.approx(answer["quality_probability"], abs=1e-6)
    assert row["latency_ms"] > 0
    assert len(frame) >= 40  # the batch and the single requests before


def test_schema_driven_fuzz_finds_no_server_error(stack: Stack) -> None:
    st = os.path.join(os.path.dirname(sys.executable), "st")
    # One worker: Python 3.11's ast module keeps its recursion counter per interpreter, not per thread, so two
    # Hypothesis threads parsing lambda sources at once fail now and then with "AST constructor recursion depth
    # mismatch" (CPython gh-106905), a crash of the generator, not of the service.
    result = subprocess.run(
        [st, "run", f"{stack.url}/docs.json", "--checks", "not_a_server_error", "--max-examples", "40",
         "--header", f"Authorization: Bearer {TOKEN}", "--generation-deterministic", "--workers", "1",
         "--include-path-regex", "^/(predict|batch_predict|features)$"],
        capture_output=True, text=True, timeout=600, env=stack.env, cwd=stack.folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-2000:]
    assert re.search(r"(\d+) passed", result.stdout) or "No issues found" in result.stdout, result.stdout[-3000:]


# -- every catalog model, from the same Bento ------------------------------------------------


def json_rows(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    return json.loads(frame[[c for c in columns if c in frame.columns]].to_json(orient="records", date_format="iso"))


def test_get_models_lists_the_three_champions(stack: Stack) -> None:
    listing = stack.get("/models").json()
    assert [m["name"] for m in listing["models"]] == list(MODELS), listing
    assert all(m["versions"][0]["alias"] == "champion" and m["versions"][0]["metrics"] for m in listing["models"])
    assert "serving sample_quality, sequencing_success, turnaround_hours" in " ".join(
        stack.build_output.split()
    )  # the console wraps
    details = stack.get("/models/sequencing_success").json()
    assert "instrument_id" in details["request_columns"] and details["declaration"]["predicted_at"].startswith("library_prep_ts")


def test_each_model_answers_json_batch_and_arrow(stack: Stack) -> None:
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
        fast = stack.post(f"/models/{model}/fast/batch_predict", None, data=sink.getvalue(),
                          headers={**AUTH, "content-type": columnar.ARROW_STREAM})  # fmt: skip
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


def test_bad_input_and_unknown_models_are_refused_not_crashed(stack: Stack) -> None:
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
                      headers={**AUTH, "content-type": columnar.ARROW_STREAM}).status_code == 400  # fmt: skip
    assert requests.get(stack.url + "/models", timeout=30).status_code == 401  # the token guards the catalog routes too


def test_the_prediction_log_keeps_each_models_rows(stack: Stack) -> None:
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


# -- recommendations that cite the SOP ---------------------------------------------------------


def _cited_pages(answer: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Each recommendation with the citations of its SOP passages, checked aligned with ``recommendations``."""
    cited = answer[CITATIONS]
    assert len(cited) == len(answer["recommendations"]), answer
    return [(text, [c["citation"] for c in passages]) for text, passages in zip(answer["recommendations"], cited, strict=True)]


def test_a_bento_built_with_the_sops_indexed_cites_them_over_http(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    """The Bento served so far was built without documents: its answers have no citations (the schema as
    before). Then the example SOPs are ingested (`tracseq documents ingest`: the Dagster assets, the
    build's embedder), the Bento rebuilt and served: recommendations cite SOP-014's page that says what to
    do, on /predict, /batch_predict, /models/sample_quality/predict and /fast/batch_predict, and the build
    announced the index version it cited from (what the rollout sensor compares)."""
    from tests.documents_helpers import example_folder
    from tracseq_dagster.documents.citation_pack import indexed_version
    from tracseq_dagster.serving.rollout import announced_document_index_version
    from tracseq_dagster.serving.table_citations import METADATA_KEY

    # many freeze-thaw cycles, little DNA/RNA, low integrity (on the integrity each sample type records)
    risky = [{**r, "freeze_thaw_cycles": 14, "concentration_ng_ul": 0.4, **{k: 2.0 for k in ("rin", "din") if r.get(k) is not None}}
             for r in records[:30]]  # fmt: skip
    body = columnar.write_table(pa.Table.from_pylist(risky), columnar.ARROW_STREAM)
    arrow = {**AUTH, "Content-Type": columnar.ARROW_STREAM}

    def fast() -> pa.Table:
        answered = requests.post(stack.url + "/fast/batch_predict?recommendations=text", data=body, headers=arrow, timeout=60)
        assert answered.status_code == 200, answered.text
        return columnar.read_table(answered.content, columnar.ARROW_STREAM)

    plain = stack.post("/predict", risky[0]).json()
    assert plain["recommendations"] and CITATIONS not in plain
    assert all(CITATIONS not in a for a in stack.post("/batch_predict", {"samples": risky}).json())
    assert CITATIONS not in stack.post("/models/sample_quality/predict", risky[0]).json()
    table = fast()
    assert CITATIONS not in table.column_names and METADATA_KEY.encode() not in (table.schema.metadata or {})
    assert stack.get("/model").json()["sop_citations"] is None

    stack.run("documents", "ingest", str(example_folder(stack.folder / "sops")))
    tag = stack.build()
    assert re.search(r"-s[0-9a-f]{8}$", tag), tag  # the citations' digest is part of the Bento's version
    lancedb = str(Path(stack.env["TRACSEQ_DATA_DIR"]) / "lancedb")
    assert announced_document_index_version(stack.env["BENTOML_HOME"]) == indexed_version(lancedb, "minilm-onnx") is not None
    stack.serve(tag)

    sop, pages = (
        "SOP-014-nucleic-acid-extraction.pdf",
        {"Limit freeze-thaw": "p. 2", "Re-extract": "p. 3", "Re-quantify:": "p. 3"},
    )
    seen: set[str] = set()
    answers = [stack.post("/predict", r).json() for r in risky[:10]] + stack.post("/batch_predict", {"samples": risky}).json()
    answers.append(stack.post("/models/sample_quality/predict", risky[0]).json())
    for answer in answers:
        for text, citations in _cited_pages(answer):
            for start, page in pages.items():
                if text.startswith(start):
                    assert f"{sop}, {page}" in citations, (text, citations)
                    seen.add(start)
    assert "Limit freeze-thaw" in seen, answers[:2]
    passage = next(p for a in answers for found in a[CITATIONS] for p in found)
    assert set(passage) == {"citation", "file_name", "page_start", "page_end", "text"} and passage["text"]
    assert stack.get("/model").json()["sop_citations"]["kinds"]

    table = fast()
    side = json.loads(table.schema.metadata[METADATA_KEY.encode()])
    assert side.get("freeze_thaw_cycles") and side["freeze_thaw_cycles"][0]["citation"] == f"{sop}, p. 2"
    for texts, cited in zip(table["recommendations"].to_pylist(), table[CITATIONS].to_pylist(), strict=True):
        assert len(cited) == len(texts)
        for text, passages in zip(texts, cited, strict=True):
            if text.startswith("Limit freeze-thaw"):
                assert [(p["file_name"], p["page_start"]) for p in passages][:1] == [(sop, 2)], (text, passages)


# -- last: the served model switched ---------------------------------------------------------


def test_promote_rebuild_restart_switches_the_served_model(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    stack.trained.registry.promote("2", "serving test: switch to the logistic model")
    tag = stack.build()
    assert tag.startswith("tracseq_predictions:v2")  # champion v2, no separate challenger any more
    stack.serve(None)  # tracseq bento serve: the latest build
    info = requests.get(stack.url + "/model", headers=AUTH, timeout=10).json()
    assert info["variants"]["champion"]["version"] == "2" and "challenger" not in info["variants"]
    answer = stack.post("/predict", records[3]).json()
    assert answer["model"] == {"name": "sample_quality", "version": "2", "variant": "champion"}
    assert answer["attribution"] == "linear" and answer["cached"] is False


def test_a_promotion_is_rolled_out_to_the_running_service_without_a_failed_request(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    """Requests keep coming while the champion moves and the Bento is rebuilt: the running service switches
    by itself (no restart), not one request fails, each answer is the old or the new version, then only the new."""
    import threading

    stack.env = {**stack.env, "TRACSEQ_ROLLOUT_INTERVAL_S": "0.5", "TRACSEQ_CHALLENGER_SHARE": "0"}
    stack.serve(None)
    before = requests.get(stack.url + "/model", headers=AUTH, timeout=10).json()["variants"]["champion"]["version"]
    after = "1" if before == "2" else "2"
    answers: list[tuple[int, str | None]] = []
    stop_sending = threading.Event()

    def send() -> None:  # one sender, so answers arrive in the order they were asked
        i = 0
        while not stop_sending.is_set():
            response = stack.post("/models/sample_quality/predict", records[i % len(records)])
            answers.append((response.status_code, response.json().get("model", {}).get("version") if response.ok else None))
            i += 1

    sender = threading.Thread(target=send)
    sender.start()
    try:
        stack.trained.registry.promote(after, "rollout test: the other version becomes champion")
        stack.build()  # what the rollout sensor's package_bento run does; it announces the new model
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and [v for _, v in answers[-20:]].count(after) < 20:
            time.sleep(0.2)
    finally:
        stop_sending.set()
        sender.join(timeout=60)
    statuses = {status for status, _ in answers}
    versions = [version for _, version in answers]
    assert statuses == {200}, [a for a in answers if a[0] != 200][:5]
    assert set(versions) == {before, after} and versions[0] == before
    first_new = versions.index(after)
    assert set(versions[first_new:]) == {after}, "an old answer came after the switch"
    info = requests.get(stack.url + "/model", headers=AUTH, timeout=10).json()
    assert info["variants"]["champion"]["version"] == after and info["rollout"]["switches"] == 1


def test_with_roles_the_served_models_take_control_plane_tokens_and_rate_limits(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    """TRACSEQ_SERVICE_AUTH=roles: the real Bento answers a predictor's token, refuses a viewer's
    prediction (403) and the old shared token (401), and limits each token (429)."""
    stack.env = {**stack.env, "TRACSEQ_SERVICE_AUTH": "roles", "TRACSEQ_CONTROL_DB": f"sqlite:///{stack.folder / 'control.db'}",
                 "TRACSEQ_RATE_LIMIT": "5/minute"}  # fmt: skip
    predictor = stack.run("tokens", "create", "lims", "--role", "predictor").strip().splitlines()[-1].split()[-1]
    viewer = stack.run("tokens", "create", "dashboard", "--role", "viewer").strip().splitlines()[-1].split()[-1]
    stack.serve(None)

    def predict(token: str) -> int:
        return stack.post("/models/sample_quality/predict", records[4], headers={"Authorization": f"Bearer {token}"}).status_code

    assert requests.get(stack.url + "/readyz", timeout=10).status_code == 200
    assert predict(TOKEN) == 401
    assert predict(viewer) == 403
    assert requests.get(stack.url + "/models", headers={"Authorization": f"Bearer {viewer}"}, timeout=30).status_code == 200
    assert [predict(predictor) for _ in range(6)] == [200] * 5 + [429]  # the viewer's requests are counted apart


def test_a_served_model_file_changed_after_the_build_stops_the_service_naming_it(stack: Stack) -> None:
    """The Bento's model records every file's SHA-256; `bentoml serve` on a changed pickle refuses to start."""
    tag = stack.build()
    pickled = next((stack.folder / "bentoml" / "models" / "tracseq_predictions").glob(f"{tag.split(':')[1]}/**/model.pkl"))
    original = pickled.read_bytes()
    pickled.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    log = stack.folder / "serve-tampered.log"
    command = [
        os.path.join(os.path.dirname(sys.executable), "bentoml"),
        "serve",
        tag,
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
    ]
    process = subprocess.Popen(command, env=stack.env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "refusing to serve it" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        text = log.read_text()
        assert f"{pickled.relative_to(pickled.parents[1]).as_posix()} changed since the model was saved" in text, text[-3000:]
    finally:
        stop(process)
        pickled.write_bytes(original)


def test_with_a_feature_server_history_and_features_come_from_feast(stack: Stack, records) -> None:  # type: ignore[no-untyped-def]
    """TRACSEQ_FEATURE_SERVER_URL: the running Bento refreshes its history aggregates and answers /features
    from Feast's online store through a real `feast serve`; with the server gone it answers from what it has."""
    write_feature_tables(stack.lake)
    settings = FeastSettings(stack.env["TRACSEQ_DATA_DIR"], f"e2e{uuid.uuid4().hex[:8]}", None, "redis://127.0.0.1:6379/13")
    store = open_store(settings)
    apply_repo(store, repo_objects(stack.lake.root))
    materialize_with_statistics(store, settings.folder)
    sample_id = stack.trained.samples["sample_id"].iloc[7]
    libraries = (
        stack.lake.read_validated_runs().tail(2).merge(accepted_samples(stack.lake).drop(columns=["qc_status"]), on="sample_id")
    )
    runs_request = json_rows(libraries, request_columns(get_model("sequencing_success")))[0]
    try:
        with feature_server(settings) as url:
            stack.env = {**stack.env, "TRACSEQ_FEATURE_SERVER_URL": url, "TRACSEQ_HISTORY_REFRESH_S": "1",
                         "TRACSEQ_SERVICE_AUTH": "token"}  # fmt: skip
            stack.serve(None)
            sources = stack.get("/model").json()["history_source"]
            # the original route's predictor and the catalog models with sample or run history (not the freezer days)
            assert set(sources) == {"/predict", "sample_quality", "sequencing_success", "turnaround_hours"}, sources
            for history in sources.values():
                assert history["source"] == f"feast feature server {url}" and history["refreshes"] >= 1, history
                assert history["last_error"] is None
            features = stack.get(f"/features/{sample_id}").json()
            assert features["source"] == "online", features  # Feast's online store, through the feature server
            offline = stack.lake.read_features().set_index("sample_id").loc[sample_id]
            assert features["features"]["freeze_thaw_cycles"] == offline["freeze_thaw_cycles"]
            assert stack.post("/predict", records[3]).status_code == 200
            assert stack.post("/models/sequencing_success/predict", runs_request).status_code == 200
        time.sleep(2.5)  # the server is gone: the next refreshes fail
        history = stack.get("/model").json()["history_source"]["sequencing_success"]
        assert history["last_error"] and "get-online-features" in history["last_error"]
        assert stack.post("/models/sequencing_success/predict", runs_request).status_code == 200
        assert stack.post("/predict", records[4]).status_code == 200  # the last aggregates answer
        assert stack.get(f"/features/{sample_id}").status_code == 200  # from the lake's table
    finally:
        clear_project(settings)
