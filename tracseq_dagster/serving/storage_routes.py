"""``POST /storage/recommend`` on the prediction Bento: where to store incoming samples.

    POST /storage/recommend   one incoming sample ({"sample_type": …, "project_id": …}) or many
                              ({"samples": [...], "top": 3}) → per sample the best free positions
                              with their reasons, placed jointly (:mod:`~tracseq_dagster.operations.storage_placement`)

The freezer state comes from the accepted samples the Bento packs with its catalog models
(``models/<name>/history/samples.parquet``; every served model packs all of them): built once
per worker, on the first request, as of the last receipt packed. The excursion risk is the
served ``freezer_excursion_risk`` champion's when the Bento has it, the freezers' history's
otherwise (:mod:`~tracseq_dagster.operations.placement_risk`), said in every answer.

The answer is a recommendation: nothing is reserved (the Bento's history is fixed until the next
build), so two calls with the same samples get the same positions. Bad input is a 400 whose
``detail`` names each bad field (``loc``); a sample type with no freezer at its temperature, or
no free position left, is a 200 whose answer for that sample says so; a Bento that packs no
accepted samples answers 409 with what to do. Nothing a client sends answers 5xx.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tracseq_dagster.contract import SAMPLE_TYPES
from tracseq_dagster.operations.freezer_state import FreezerState, freezer_state
from tracseq_dagster.operations.placement_risk import MODEL, RiskReport, excursion_risk
from tracseq_dagster.operations.storage_placement import IncomingSample, PlacementError, recommend

#: The largest batch one call may carry (1,000 samples place in well under a second).
MAX_INCOMING = 5_000
MAX_TOP = 10


class IncomingSampleRequest(BaseModel):
    """One sample to store."""

    model_config = ConfigDict(extra="forbid")

    sample_type: Literal[SAMPLE_TYPES] = Field(..., description="Material type; its storage temperature decides the freezer")  # type: ignore[valid-type]
    project_id: str = Field(..., min_length=1, max_length=64, description="Project: its samples are kept together")
    expected_retrieval: date | None = Field(None, description="When the sample is expected to be taken out (ISO date)")
    sample_id: str | None = Field(None, min_length=1, max_length=64, description="Echoed in the answer")

    def incoming(self) -> IncomingSample:
        return IncomingSample(self.sample_type, self.project_id.strip(), self.expected_retrieval, self.sample_id)


class StorageRequest(BaseModel):
    """Many samples, placed jointly; ``top`` positions per sample (the chosen one and ``top - 1`` alternatives)."""

    model_config = ConfigDict(extra="forbid")

    samples: list[IncomingSampleRequest] = Field(..., min_length=1, max_length=MAX_INCOMING)
    top: int = Field(3, ge=1, le=MAX_TOP)


class Position(BaseModel):
    location: str
    freezer_id: str
    rack: int
    box: int
    position: str
    cost: float
    excursion_risk_30d: float | None
    reasons: list[str]


class SamplePlacement(BaseModel):
    index: int
    sample_id: str | None
    sample_type: str
    project_id: str
    expected_retrieval: str | None
    status: Literal["placed", "no_freezer", "no_space"]
    message: str
    position: Position | None
    alternatives: list[Position]


class StorageAnswer(BaseModel):
    placements: list[SamplePlacement]
    risk_source: str = Field(..., description="model, history, mixed or none: where the excursion risks come from")
    notes: list[str]
    state_as_of: str
    free_positions: int


@dataclass
class StorageService:
    """The packed samples → freezer state and risks, built once per worker on first use (thread-safe)."""

    samples: Callable[[], pd.DataFrame | None]
    predictor: Callable[[], Any | None] = lambda: None
    _state: FreezerState | None = None
    _risk: RiskReport | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of_catalog(cls, catalog: Any) -> StorageService:
        """From a :class:`~tracseq_dagster.serving.catalog_predictor.ServedCatalog`: any served model's packed samples
        (the freezer model's first) and the freezer model when served."""

        def samples() -> pd.DataFrame | None:
            models = catalog.models
            chosen = models.get(MODEL) or next(iter(models.values()), None)
            return None if chosen is None else chosen.samples

        return cls(samples, lambda: catalog.models.get(MODEL))

    def ready(self) -> tuple[FreezerState, RiskReport] | str:
        """The state and risks, or why there are none (said to the client)."""
        with self._lock:
            if self._state is None or self._risk is None:
                samples = self.samples()
                if samples is None or samples.empty:
                    return ("this Bento packs no accepted samples (it serves no catalog model), so it knows no freezer state; "
                            "rebuild it after a model is trained, or run `tracseq storage recommend` on the lake")  # fmt: skip
                state = freezer_state(samples)
                predictor = self.predictor()
                history = getattr(predictor, "history", None)
                self._risk = excursion_risk(samples, state.freezers["freezer_id"].astype(str).tolist(), state.as_of,
                                            predictor=predictor, history=history if isinstance(history, pd.DataFrame) else None)  # fmt: skip
                self._state = state
            return self._state, self._risk

    def answer(self, body: StorageRequest) -> StorageAnswer | str:
        found = self.ready()
        if isinstance(found, str):
            return found
        state, risk = found
        placements = recommend([s.incoming() for s in body.samples], state, risk.risk, top=body.top)
        return StorageAnswer(
            placements=[SamplePlacement(**p.as_dict()) for p in placements],
            risk_source=risk.source,
            notes=risk.notes,
            state_as_of=state.as_of.isoformat(),
            free_positions=state.counts["free_positions"],
        )


def _invalid(error: ValidationError, prefix: tuple[Any, ...] = ()) -> Response:
    detail = error.errors(include_context=False, include_input=False, include_url=False)
    for entry in detail:
        entry["loc"] = (*prefix, *entry["loc"])
    return JSONResponse({"error": f"{error.error_count()} validation errors", "detail": detail}, status_code=400)


def parse_body(raw: bytes) -> tuple[StorageRequest, bool] | Response:
    """``{"samples": [...]}`` (many) or one sample's fields (one): the request and whether it was one."""
    import json

    try:
        data = json.loads(raw or b"null")
    except ValueError as error:
        return JSONResponse({"error": f"the body is not JSON: {error}", "detail": [{"loc": ["body"], "msg": "invalid JSON"}]},
                            status_code=400)  # fmt: skip
    if not isinstance(data, dict):
        return JSONResponse({"error": "send a JSON object: one sample, or {\"samples\": [...]}",
                             "detail": [{"loc": ["body"], "msg": "expected an object"}]}, status_code=400)  # fmt: skip
    try:
        if "samples" in data:
            return StorageRequest.model_validate(data), False
        top = data.pop("top", 3)
        one = IncomingSampleRequest.model_validate(data)
    except ValidationError as error:
        return _invalid(error)
    try:
        return StorageRequest(samples=[one], top=top), True
    except ValidationError as error:
        return _invalid(error)


def storage_routes(service: Callable[[], StorageService]) -> list[Route]:
    """The route, reading the service (``service()``) at request time: a Bento's instance, a test's object."""

    async def recommend_route(request: Request) -> Response:
        parsed = parse_body(await request.body())
        if isinstance(parsed, Response):
            return parsed
        body, single = parsed
        try:
            # Off the event loop: the first call builds the freezer state (seconds on a large history).
            answer = await asyncio.to_thread(service().answer, body)
        except PlacementError as error:
            return JSONResponse({"error": str(error), "detail": [{"loc": ["samples", error.index, error.field], "msg": str(error)}]},
                                status_code=400)  # fmt: skip
        if isinstance(answer, str):
            return JSONResponse({"error": answer}, status_code=409)
        content = answer.model_dump(mode="json")
        if single:
            content = {**content.pop("placements")[0], **content}
        return JSONResponse(content)

    return [Route("/storage/recommend", recommend_route, methods=["POST"])]
