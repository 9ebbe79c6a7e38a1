"""`tracseq management serve` as a real process: settings from the environment, a token made by
`tracseq tokens create` accepted, 401 without one, the OpenAPI document open."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from processes import free_port, stop, wait_until_ready


@pytest.mark.slow  # a server process, the embedded MLflow store's first migrations
def test_serve_from_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACSEQ_", "MLFLOW_"))}
    env |= {"TRACSEQ_DATA_DIR": str(tmp_path / "data"), "TRACSEQ_RATE_LIMIT": "30/minute"}
    tracseq = str(Path(sys.executable).parent / "tracseq")
    made = subprocess.run(
        [tracseq, "tokens", "create", "ops", "--role", "operator"], env=env, capture_output=True, text=True, check=True
    )
    token = made.stdout.strip()
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [tracseq, "management", "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/healthz", log, timeout_s=120)
        assert httpx.get(f"{url}/models").status_code == 401
        assert "/models/{name}/promotions" in httpx.get(f"{url}/openapi.json").json()["paths"]
        models = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert models.status_code == 200 and "sample_quality" in {m["name"] for m in models.json()}
        answers = [httpx.get(f"{url}/promotions", headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(30)]
        assert answers[:29] == [200] * 29 and answers[29] == 429  # 30/minute, the first call above counted too
    finally:
        stop(process)
    bad = subprocess.run([tracseq, "management", "serve"], env=env | {"TRACSEQ_AUTH": "maybe"}, capture_output=True, text=True)
    assert bad.returncode == 2 and "TRACSEQ_AUTH='maybe'" in bad.stderr and "Traceback" not in bad.stderr
