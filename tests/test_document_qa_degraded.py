"""The document_qa Bento under load while Ollama goes away and comes back.

A real ``bentoml serve`` of the service, the fake Ollama (real HTTP) behind a TCP proxy the
test closes and reopens on the same port. While it is closed every question is answered from
the passages (200, mode ``retrieval_only`` with a notice), ``/readyz`` says ``ollama`` is down,
``/metrics`` counts the failures; once it is back the answers are generated again, without a
restart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from degraded_support import Bento, Load, TcpProxy
from processes import free_port, stop, wait_until_ready

from tests.documents_helpers import example_folder
from tests.fake_ollama import FakeOllama
from tracseq_dagster.documents.pipeline import index_folder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
RATE = 4.0  # questions per second (each embeds the question and searches the index)


def test_ollama_outage_answers_from_the_passages_and_generation_comes_back(tmp_path: Path) -> None:
    index_folder(example_folder(tmp_path), lake_root=tmp_path / "lake", lancedb_uri=tmp_path / "lancedb")
    port = free_port()
    question = {"question": "How fast and how long are blood tubes centrifuged?"}
    with FakeOllama(reply=lambda m, f: "Blood tubes are centrifuged at 4000 g for 12 minutes [1].") as fake:
        proxy = TcpProxy(("127.0.0.1", fake.server.server_address[1])).open()
        env = {**os.environ, "TRACSEQ_LANCEDB_DIR": str(tmp_path / "lancedb"), "OLLAMA_HOST": f"http://127.0.0.1:{proxy.port}",
               "BENTOML_HOME": str(tmp_path / "bentoml"), "DO_NOT_TRACK": "1", "TRACSEQ_DEPENDENCY_RETRY_S": "0.5"}  # fmt: skip
        log = tmp_path / "bento.log"
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "bentoml"), "serve", "bentos.document_qa.service:DocumentQAService",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        bento = Bento(tmp_path, env)
        bento.url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(server, f"{bento.url}/readyz", log, timeout_s=180)
            assert bento.readyz() == (200, {"status": "ready", "dependencies": {"ollama": "up"}})
            warm = httpx.post(f"{bento.url}/ask", json=question, timeout=120)  # loads the embedder
            assert warm.status_code == 200 and warm.json()["mode"] == "generated", warm.text
            with Load(bento.url + "/ask", [question], rate=RATE, threads=4, timeout_s=30) as load:
                time.sleep(3)
                proxy.close()
                down = load.mark("ollama down")
                time.sleep(1)
                status, body = bento.readyz()
                assert status == 200 and body["status"] == "degraded" and body["dependencies"]["ollama"].startswith("down: "), (
                    body
                )
                time.sleep(4)
                proxy.open()
                up = load.mark("ollama up")
                time.sleep(4)
            assert bento.readyz() == (200, {"status": "ready", "dependencies": {"ollama": "up"}})
            result = load.result
            during, errors_during = result.between(down, up)
            print(f"\nRELIABILITY ollama outage: {up - down:.1f} s down, {during} questions answered and {errors_during} errors "
                  f"during it; {result.sent} questions in all, {len(result.errors)} errors")  # fmt: skip
            assert not result.errors, result.errors[:5]
            assert during >= RATE * (up - down) * 0.5
            # Answers as the client saw them: generated before, passages during, generated after.
            modes = [(round(t, 2), mode) for t, mode in load.modes]
            assert {m for t, m in modes if t < down} == {"generated"}, modes
            assert {m for t, m in modes if down + 1 < t < up} == {"retrieval_only"}, modes
            assert {m for t, m in modes if t > up + 2} == {"generated"}, modes
            assert bento.metric("tracseq_dependency_failures_total", dependency="ollama") >= 1
            assert bento.metric("tracseq_dependency_bypassed_total", dependency="ollama", use="ask") >= during // 2
        finally:
            stop(server)
            proxy.close()
