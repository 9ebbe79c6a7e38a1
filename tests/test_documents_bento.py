"""A real `bentoml serve` of the document_qa service answering POST /ask over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.documents_helpers import example_folder
from tests.fake_ollama import FakeOllama
from tracseq_dagster.documents.pipeline import index_folder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bentoml_serve_answers_ask_with_citations_and_falls_back_without_the_model(tmp_path: Path) -> None:
    index_folder(example_folder(tmp_path), lake_root=tmp_path / "lake", lancedb_uri=tmp_path / "lancedb")
    port = _free_port()
    with FakeOllama(reply=lambda m, f: "Blood tubes are centrifuged at 4000 g for 12 minutes [1].") as fake:
        env = {
            **os.environ,
            "TRACSEQ_LANCEDB_DIR": str(tmp_path / "lancedb"),
            "OLLAMA_HOST": fake.url,
            "BENTOML_HOME": str(tmp_path / "bentoml"),
            "DO_NOT_TRACK": "1",
        }
        log = (tmp_path / "bento.log").open("w")
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "bentoml"),
                "serve",
                "bentos.document_qa.service:DocumentQAService",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 150
            while True:
                assert server.poll() is None, (tmp_path / "bento.log").read_text()[-3000:]
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "bento.log").read_text()[-3000:]
                time.sleep(1)
            question = {"question": "How fast and how long are blood tubes centrifuged?"}
            answer = httpx.post(f"http://127.0.0.1:{port}/ask", json=question, timeout=60).json()
            assert answer["mode"] == "generated", answer
            assert answer["citations"] == ["SOP-014-nucleic-acid-extraction.pdf, p. 4"]
            assert answer["text"].endswith("[SOP-014-nucleic-acid-extraction.pdf, p. 4].")

            fake.models.clear()  # the model is not pulled any more
            fallback = httpx.post(f"http://127.0.0.1:{port}/ask", json=question, timeout=60).json()
            assert fallback["mode"] == "retrieval_only" and "ollama pull llama3.2:3b" in fallback["notice"]
            assert fallback["passages"][0]["citation"] == "SOP-014-nucleic-acid-extraction.pdf, p. 4"

            invalid = httpx.post(f"http://127.0.0.1:{port}/ask", json={"question": "x", "top_k": 0}, timeout=30)
            assert invalid.status_code == 400
        finally:
            server.terminate()
            server.wait(timeout=30)
