"""The champion watcher over a real registry: a promotion or rollback reaches the service, which
swaps versions under a steady stream of requests without failing one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from control_support import add_version, registry_copy, template_registry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tracseq_dagster.control.champion_watch import ChampionWatcher, registry_champions
from tracseq_dagster.registry import ModelRegistry

MODEL = "sample_quality"


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    (tmp_path / "template").mkdir()
    client = registry_copy(template_registry(tmp_path / "template"), tmp_path)
    for _ in range(2):
        add_version(client, MODEL, tmp_path, gate="promote", metrics={})
    return ModelRegistry(client, MODEL)


def test_moves_are_reported_once_each(registry: ModelRegistry) -> None:
    moves: list[tuple[str, str | None, str | None]] = []
    watcher = ChampionWatcher(registry_champions(registry.client, [MODEL, "turnaround_hours"]), lambda *m: moves.append(m))
    assert watcher.known == {MODEL: None, "turnaround_hours": None} and watcher.check_once() == []
    registry.promote("1", "first")
    registry.promote("2", "better")
    assert watcher.check_once() == [(MODEL, None, "2")] and watcher.check_once() == []
    registry.rollback("bad")
    assert watcher.check_once() == [(MODEL, "2", "1")] and moves == [(MODEL, None, "2"), (MODEL, "2", "1")]


def test_a_swap_under_load_drops_no_request(registry: ModelRegistry) -> None:
    registry.promote("1", "first")
    serving = {"version": "1"}  # what the service answers with: one reference, swapped whole

    def load(model: str, old: str | None, new: str | None) -> None:
        time.sleep(0.2)  # loading and warming the new version happens off the request path
        serving["version"] = new  # type: ignore[assignment]

    async def predict(request: Request) -> JSONResponse:
        current = serving["version"]
        return JSONResponse({"model_version": current})

    app = Starlette(routes=[Route("/models/sample_quality/predict", predict, methods=["POST"])])
    watcher = ChampionWatcher(registry_champions(registry.client, [MODEL]), load, interval_s=0.1).start()
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        with _asgi_client(app) as client:
            while not stop.is_set():
                answer = client.post("/models/sample_quality/predict", json={})
                answers.append((answer.status_code, answer.json()["model_version"]))

    sender = threading.Thread(target=traffic)
    sender.start()
    time.sleep(0.5)
    registry.promote("2", "better")
    deadline = time.monotonic() + 20
    while serving["version"] != "2" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    sender.join()
    watcher.stop()
    versions = [v for _, v in answers]
    assert {s for s, _ in answers} == {200} and len(answers) > 50
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}  # old, then only new


def _asgi_client(app: Starlette):  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    return TestClient(app)
