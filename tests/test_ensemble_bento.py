"""An ensemble champion in a real Bento: built into a BentoML store, served by `bentoml serve`, called over HTTP.

The unit tests score the ensemble through the predictor; this one checks that the packaging and
the service around it (cloudpickled model in the BentoML model store, file digests, warm-up at
load, micro-batching, the JSON routes) serve it as any champion: answers with class
probabilities, risk factors worded from its members' weighted contributions, recommendations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
import requests
from ensemble_support import ensemble_bundle, fitted_ensemble
from processes import free_port, stop, wait_until_ready
from serving_support import recent_samples, request_records

pytestmark = pytest.mark.slow

TOKEN = "ensemble-token-3c9a"
REDIS_URL = "redis://127.0.0.1:6379/0"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_bento_with_an_ensemble_champion_answers_with_risk_factors(tmp_path: Path) -> None:
    bundle, info = ensemble_bundle(tmp_path / "bundle", fitted_ensemble())
    prefix = f"tracseq-ensemble-{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "TRACSEQ_DATA_DIR": str(tmp_path / "data"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "TRACSEQ_REDIS_URL": REDIS_URL,
        "TRACSEQ_REDIS_PREFIX": prefix,
        "TRACSEQ_PREDICTION_LOG": str(tmp_path / "prediction_log"),
        "TRACSEQ_API_TOKEN": TOKEN,
        "DO_NOT_TRACK": "1",
    }
    build = (
        "import json, sys; from pathlib import Path; from tracseq_dagster.serving.bundle import BundleInfo, ModelCard; "
        "from tracseq_dagster.serving.bento_build import build_bento; "
        "raw = json.loads(Path(sys.argv[1], 'bundle.json').read_text()); raw['champion'] = ModelCard(**raw['champion']); "
        "print(build_bento(Path(sys.argv[1]), BundleInfo(**raw)).tag)"
    )
    built = subprocess.run([sys.executable, "-c", build, str(bundle)], env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    tag = built.stdout.strip().splitlines()[-1]
    assert tag == f"tracseq_predictions:{info.tag}", built.stdout

    port = free_port()
    log = tmp_path / "serve.log"
    bentoml = os.path.join(os.path.dirname(sys.executable), "bentoml")
    process = subprocess.Popen([bentoml, "serve", tag, "--host", "127.0.0.1", "--port", str(port)], env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/readyz", log, timeout_s=240)
        model = requests.get(f"{url}/model", headers=AUTH, timeout=30).json()
        assert model["variants"]["champion"]["family"] == "ensemble"
        assert model["variants"]["champion"]["attribution"] == "ensemble"

        records = request_records(recent_samples(40, seed=77, id_offset=600_000))
        answers = []
        for record in records[:20]:
            response = requests.post(f"{url}/predict", json=record, headers=AUTH, timeout=60)
            assert response.status_code == 200, response.text
            answers.append(response.json())
        batch = requests.post(f"{url}/batch_predict", json={"samples": records}, headers=AUTH, timeout=60)
        assert batch.status_code == 200, batch.text
        batched = batch.json()
        assert [a["sample_id"] for a in batched] == [r["sample_id"] for r in records]
        for answer in [*answers, *batched]:
            assert answer["attribution"] == "ensemble" and answer["model"]["version"] == "7"
            assert abs(sum(answer["class_probabilities"].values()) - 1.0) < 1e-5
            assert all(f["contribution"] < 0 for f in answer["risk_factors"])
        explained = [a for a in answers if a["risk_factors"]]
        assert len(explained) >= 5 and any(a["recommendations"] for a in explained), json.dumps(answers[:2])
    finally:
        stop(process)
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
