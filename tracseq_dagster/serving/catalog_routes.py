"""The HTTP routes of the served catalog, as plain Starlette routes (the Bento adds them to its app;
the tests serve them with Starlette's TestClient)::

    GET  /models                              every served model: versions, aliases, metrics, features
    GET  /models/{name}                       one model: the listing, its declaration, request columns, glossary
    POST /models/{name}/predict               one request row (JSON) → one answer
    POST /models/{name}/batch_predict         {"records": [row, …]} → {"answers": [answer, …]}, in order
    POST /models/{name}/fast/batch_predict    an Arrow IPC stream or Parquet table of rows → a table of answers

An unknown model is a 404 that lists the served ones (and says why a catalog model is not
served); bad input is a 400 whose ``detail`` names each bad field (``loc``); a bad body never
reaches the model, and nothing here answers 5xx for anything a client sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tracseq_dagster.models import catalog
from tracseq_dagster.serving import columnar
from tracseq_dagster.serving.catalog_predictor import ModelPredictor, ServedCatalog
from tracseq_dagster.serving.catalog_schema import batch_model, request_model
from tracseq_dagster.serving.predictor import Answer

#: Paths of the columnar routes (the JSON-only guard lets their Arrow/Parquet bodies through).
COLUMNAR_PATH = r"^/models/[^/]+/fast/batch_predict$"


@dataclass
class CatalogService:
    """What the routes need: the served catalog and where answers are logged (rows of the prediction log)."""

    catalog: ServedCatalog
    log: Callable[[list[dict[str, Any]]], None] = lambda rows: None


def catalog_routes(service: Callable[[], CatalogService]) -> list[Route]:
    """The routes, reading the service (``service()``) at request time: a Bento's instance, a test's object."""

    async def listing(request: Request) -> Response:
        return JSONResponse(service().catalog.listing())

    async def details(request: Request) -> Response:
        found = _model(service(), request)
        return found if isinstance(found, Response) else JSONResponse(found.details())

    async def answer_json(request: Request, batch: bool) -> Response:
        """One row (``/predict``) or ``{"records": […]}`` (``/batch_predict``): validated, answered, logged."""
        state = service()
        found = _model(state, request)
        if isinstance(found, Response):
            return found
        try:
            body = (batch_model if batch else request_model)(found.name).model_validate_json(await request.body())
        except ValidationError as error:
            return _invalid(error)
        rows = [r.model_dump() for r in body.records] if batch else [body.model_dump()]  # type: ignore[attr-defined]
        answers = await _answer(state, found, rows)
        if isinstance(answers, Response):
            return answers
        return JSONResponse({"answers": answers} if batch else answers[0])

    async def predict(request: Request) -> Response:
        return await answer_json(request, batch=False)

    async def batch_predict(request: Request) -> Response:
        return await answer_json(request, batch=True)

    async def fast_batch_predict(request: Request) -> Response:
        state = service()
        found = _model(state, request)
        if isinstance(found, Response):
            return found
        kind = columnar.media_type(request.headers.get("content-type"))
        if kind is None:
            return JSONResponse({"error": f"send the table as {columnar.ARROW_STREAM} or {columnar.PARQUET}"}, status_code=415)
        body = await request.body()
        return await asyncio.to_thread(_answer_table, state, found, body, kind)

    return [
        Route("/models", listing, methods=["GET"]),
        Route("/models/{name}", details, methods=["GET"]),
        Route("/models/{name}/predict", predict, methods=["POST"]),
        Route("/models/{name}/batch_predict", batch_predict, methods=["POST"]),
        Route("/models/{name}/fast/batch_predict", fast_batch_predict, methods=["POST"]),
    ]


def _model(state: CatalogService, request: Request) -> ModelPredictor | Response:
    name = request.path_params["name"]
    found = state.catalog.models.get(name)
    if found is not None:
        return found
    served = ", ".join(state.catalog.models) or "none"
    why = state.catalog.skipped.get(name) or ("not packed in this Bento" if name in catalog() else "not in the model catalog")
    return JSONResponse({"error": f"model {name!r} is not served ({why}); served: {served}",
                         "served": list(state.catalog.models)}, status_code=404)  # fmt: skip


def _invalid(error: ValidationError, prefix: tuple[Any, ...] = ()) -> Response:
    detail = error.errors(include_context=False, include_input=False, include_url=False)
    for entry in detail:
        entry["loc"] = (*prefix, *entry["loc"])
    return JSONResponse({"error": f"{error.error_count()} validation errors", "detail": detail}, status_code=400)


def _refused(error: ValueError) -> Response:
    """A request the feature code cannot answer (valid fields, impossible together): 400, not 500."""
    return JSONResponse({"error": str(error), "detail": []}, status_code=400)


async def _answer(state: CatalogService, model: ModelPredictor, records: list[dict[str, Any]]) -> list[dict[str, Any]] | Response:
    started = time.perf_counter()
    try:
        # Off the event loop: the feature code and the model hold the GIL for a while.
        answers = await asyncio.to_thread(model.predict, records)
    except ValueError as error:
        return _refused(error)
    _log(state, answers, started)
    return [a.response for a in answers]


def _log(state: CatalogService, answers: list[Answer], started: float) -> None:
    latency_ms = (time.perf_counter() - started) * 1000.0 / max(len(answers), 1)
    now = datetime.now(UTC)
    state.log([{**a.log_row, "ts": now, "latency_ms": latency_ms} for a in answers])


def _answer_table(state: CatalogService, model: ModelPredictor, body: bytes, kind: str) -> Response:
    """A columnar request: the table's rows validated like JSON rows, answered as a table of the same format."""
    started = time.perf_counter()
    try:
        table = columnar.read_table(body, kind)
        if table.num_rows == 0 or table.num_rows > columnar.MAX_TABLE_ROWS:
            raise columnar.ColumnarError(f"the table has {table.num_rows:,} rows; send 1 to {columnar.MAX_TABLE_ROWS:,}",
                                         [{"loc": ["records"], "msg": f"1 to {columnar.MAX_TABLE_ROWS} rows"}])  # fmt: skip
        row_model = request_model(model.name)
        # the ignore: a row model built at run time from the catalog is a value, not a type mypy can see
        adapter: TypeAdapter[list[BaseModel]] = TypeAdapter(list[row_model])  # type: ignore[valid-type]
        rows = adapter.validate_python(table.to_pylist())
    except columnar.ColumnarError as error:
        return JSONResponse(error.payload(), status_code=400)
    except ValidationError as error:
        return _invalid(error, ("records",))
    try:
        answers = model.predict([r.model_dump() for r in rows])
    except ValueError as error:
        return _refused(error)
    batch_id = uuid.uuid4().hex
    ids = columnar.request_ids(batch_id, len(answers)).to_pylist()
    answers = [Answer({**a.response, "request_id": i}, {**a.log_row, "request_id": i}) for a, i in zip(answers, ids, strict=True)]
    _log(state, answers, started)
    flat = [flat_answer(a.response) for a in answers]
    columns = list(dict.fromkeys(k for row in flat for k in row))  # rows with fewer risk factors: nulls
    out = pa.Table.from_pydict({c: [row.get(c) for row in flat] for c in columns})
    out = out.replace_schema_metadata({"model": model.name, "bundle": model.info.tag, "batch_id": batch_id})
    return Response(columnar.write_table(out, kind), media_type=kind)


def flat_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """One answer as a table row: nested parts as columns (``interval_low``, ``risk_factor_1``, …)."""
    row = {
        k: v
        for k, v in answer.items()
        if k not in ("risk_factors", "recommendations", "class_probabilities", "interval", "model")
    }
    for key, value in (answer.get("interval") or {}).items():
        row[f"interval_{key}"] = value
    for key, value in (answer.get("class_probabilities") or {}).items():
        row[f"p_{key}"] = value
    row |= {"variant": answer["model"]["variant"], "model_version": answer["model"]["version"]}
    for i, factor in enumerate(answer["risk_factors"], start=1):
        row |= {
            f"risk_factor_{i}": factor["feature"],
            f"risk_contribution_{i}": factor["contribution"],
            f"risk_text_{i}": factor["text"],
        }
    row["recommendations"] = answer["recommendations"]
    return row
