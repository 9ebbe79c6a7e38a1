"""POST /storage/recommend: the route on a test app (fast) and on a real ``bentoml serve`` of the prediction Bento (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from catalog_support import generated_lab, pack
from degraded_support import ROOT, Bento
from processes import free_port
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tracseq_dagster.features import compute_features
from tracseq_dagster.models.sample_quality import labelled_rows_from_features
from tracseq_dagster.operations.freezer_state import freezer_state
from tracseq_dagster.operations.placement_risk import excursion_risk, model_risk
from tracseq_dagster.serving.catalog_predictor import ServedCatalog
from tracseq_dagster.serving.storage_routes import StorageService, storage_routes


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    return generated_lab(1500, seed=5)[0]


@pytest.fixture(scope="module")
def bundle(samples: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog bundle serving sample_quality (one quick fit): what a Bento packs, the accepted samples included."""
    folder = tmp_path_factory.mktemp("storage") / "bundle"
    features = compute_features(samples, samples, as_of=None).reset_index()
    pack(folder, "sample_quality", labelled_rows_from_features(features), samples, None, ("logistic",))
    return folder


def _client(service: StorageService) -> TestClient:
    return TestClient(Starlette(routes=storage_routes(lambda: service)), raise_server_exceptions=False)


def test_one_sample_gets_its_positions_with_reasons(samples: pd.DataFrame) -> None:
    response = _client(StorageService(lambda: samples)).post(
        "/storage/recommend", json={"sample_type": "RNA", "project_id": "PRJ-0001", "sample_id": "NEW-1", "top": 2}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "placed" and body["sample_id"] == "NEW-1" and len(body["alternatives"]) == 1
    state = freezer_state(samples)
    set_point = state.freezers.set_index("freezer_id")["set_point_c"][body["position"]["freezer_id"]]
    assert set_point == -80.0
    assert body["position"]["location"] not in {f"{f}/R{r}/B{b}/{p}" for f, r, b, p in state.occupied[["freezer_id", "rack", "box", "position"]].itertuples(index=False)}  # fmt: skip
    assert body["risk_source"] == "history" and "(risk from history, no model)" in body["position"]["reasons"][1]


def test_many_samples_are_placed_jointly_in_distinct_positions(samples: pd.DataFrame) -> None:
    incoming = [
        {"sample_type": t, "project_id": f"PRJ-000{i % 3 + 1}"} for i, t in enumerate(["RNA", "DNA", "blood", "FFPE"] * 10)
    ]
    response = _client(StorageService(lambda: samples)).post("/storage/recommend", json={"samples": incoming})
    assert response.status_code == 200, response.text
    placements = response.json()["placements"]
    assert [p["index"] for p in placements] == list(range(40))
    locations = [p["position"]["location"] for p in placements]
    assert all(p["status"] == "placed" for p in placements) and len(set(locations)) == 40


def test_bad_input_is_a_400_naming_the_field(samples: pd.DataFrame) -> None:
    client = _client(StorageService(lambda: samples))
    bad = client.post("/storage/recommend", json={"samples": [{"sample_type": "RNA", "project_id": "P"},
                                                              {"sample_type": "plasma", "project_id": "P"}]})  # fmt: skip
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["samples", 1, "sample_type"]
    missing = client.post("/storage/recommend", json={"sample_type": "RNA"})
    assert missing.status_code == 400 and missing.json()["detail"][0]["loc"] == ["project_id"]
    date = client.post("/storage/recommend", json={"sample_type": "RNA", "project_id": "P", "expected_retrieval": "soon"})
    assert date.status_code == 400 and date.json()["detail"][0]["loc"] == ["expected_retrieval"]
    broken = client.post("/storage/recommend", content=b'{"sample_type": ', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not JSON" in broken.json()["error"]
    too_many = client.post("/storage/recommend", json={"samples": [], "top": 99})
    assert too_many.status_code == 400 and {tuple(d["loc"]) for d in too_many.json()["detail"]} == {("samples",), ("top",)}


def test_no_freezer_at_the_temperature_is_an_answer_and_no_samples_is_a_409(samples: pd.DataFrame) -> None:
    no_cabinet = samples[~samples["storage_location"].str.startswith("CAB-")]
    response = _client(StorageService(lambda: no_cabinet)).post(
        "/storage/recommend", json={"sample_type": "FFPE", "project_id": "P"}
    )
    assert response.status_code == 200 and response.json()["status"] == "no_freezer"
    assert "no freezer at 20 °C" in response.json()["message"]
    empty = _client(StorageService(lambda: None)).post("/storage/recommend", json={"sample_type": "RNA", "project_id": "P"})
    assert empty.status_code == 409 and "packs no accepted samples" in empty.json()["error"]


# -- a real bentoml serve -------------------------------------------------------------------------


def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _save_catalog_bundle(bundle_dir: Path, bentoml_home: Path) -> str:
    """A catalog-only bundle (no sample_quality root bundle) as a BentoML model (a subprocess: BENTOML_HOME is read at import)."""
    script = (
        "import sys; from pathlib import Path\n"
        "from tracseq_dagster.serving.bento_build import _save_folder\n"
        "print(_save_folder(Path(sys.argv[1]), 'storage-test', {}, {}))\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "DO_NOT_TRACK": "1"}
    result = subprocess.run([sys.executable, "-c", script, str(bundle_dir)], env=env, capture_output=True, text=True, timeout=300,
                            cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_a_served_models_answers_become_the_risk_and_say_so(samples: pd.DataFrame, bundle: Path) -> None:
    """The model path's mechanics on a real served predictor: one request per freezer (its last packed sample moved to
    the state's time), the answer's probability turned into a risk, the model named. (freezer_excursion_risk is not in
    the catalog yet; sample_quality stands in: any catalog model takes a sample record.)"""
    predictor = ServedCatalog(bundle).models["sample_quality"]
    state = freezer_state(samples)
    freezers = state.freezers["freezer_id"].astype(str).tolist()
    risk = model_risk(predictor, [*freezers, "FRZ-99"], state.as_of)
    assert sorted(risk) == sorted(freezers)  # FRZ-99 has no packed sample: left to history
    assert all(0.0 <= r.probability <= 1.0 for r in risk.values())
    assert {r.source for r in risk.values()} == {"predicted by sample_quality v1"}  # the champion variant only
    report = excursion_risk(samples, freezers, state.as_of, predictor=predictor)
    assert report.source == "model" and report.notes == [] and sorted(report.risk) == sorted(risk)
    assert all(abs(report.risk[f].probability - risk[f].probability) < 1e-3 for f in risk)


@pytest.mark.slow
def test_storage_recommend_on_bentoml_serve(samples: pd.DataFrame, bundle: Path, tmp_path: Path) -> None:
    tag = _save_catalog_bundle(bundle, tmp_path / "bentoml")
    env = {**os.environ, "TRACSEQ_MODEL_TAG": tag, "BENTOML_HOME": str(tmp_path / "bentoml"), "TRACSEQ_DATA_DIR": str(tmp_path / "data"),
           "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "TRACSEQ_BENTO_WORKERS": "1", "DO_NOT_TRACK": "1"}  # fmt: skip
    env.pop("TRACSEQ_REDIS_URL", None)
    env.pop("TRACSEQ_PREDICTION_LOG", None)
    bento = Bento(tmp_path, env).start()
    try:
        url = f"{bento.url}/storage/recommend"
        status, one = _post(url, {"sample_type": "tissue", "project_id": "PRJ-0002", "expected_retrieval": "2026-01-20"})
        assert status == 200, one
        assert one["status"] == "placed" and one["position"]["freezer_id"].startswith("FRZ-")
        assert one["risk_source"] == "history" and any("risk from history, no model" in r for r in one["position"]["reasons"])
        incoming = [
            {"sample_type": t, "project_id": "PRJ-0001", "sample_id": f"N{i}"} for i, t in enumerate(["RNA", "saliva"] * 50)
        ]
        status, many = _post(url, {"samples": incoming, "top": 1})
        assert status == 200 and len({p["position"]["location"] for p in many["placements"]}) == 100
        assert all(p["alternatives"] == [] for p in many["placements"])
        status, bad = _post(url, {"samples": [{"sample_type": "plasma", "project_id": "P"}]})
        assert status == 400 and bad["detail"][0]["loc"] == ["samples", 0, "sample_type"]
    finally:
        bento.stop()
