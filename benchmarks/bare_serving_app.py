"""The same prediction path as the Bento, on bare Starlette: the baseline of benchmarks/serving.py.

Validation (the same pydantic SampleRecord), the same micro-batcher and the same predictor on
the same bundle; no BentoML. The difference in latency and throughput is the framework's cost.

    TRACSEQ_BUNDLE_DIR=<bundle folder> uvicorn benchmarks.bare_serving_app:app --port 3100
"""

from __future__ import annotations

import os

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tracseq_dagster.serving.micro_batcher import MicroBatcher
from tracseq_dagster.serving.predictor import SampleQualityPredictor
from tracseq_dagster.serving.request_schema import BatchRequest, SampleRecord

predictor = SampleQualityPredictor(os.environ["TRACSEQ_BUNDLE_DIR"])
batcher = MicroBatcher(predictor.predict, max_batch=int(os.environ.get("TRACSEQ_MAX_BATCH", "64")),
                       max_wait_ms=float(os.environ.get("TRACSEQ_MAX_WAIT_MS", "5")))  # fmt: skip


async def predict(request: Request) -> JSONResponse:
    try:
        record = SampleRecord.model_validate_json(await request.body())
    except ValidationError as error:
        return JSONResponse({"detail": error.errors(include_context=False, include_input=False)}, status_code=400)
    answer = await batcher.submit(record.model_dump())
    return JSONResponse(answer.response)


async def batch_predict(request: Request) -> JSONResponse:
    try:
        samples = BatchRequest.model_validate_json(await request.body()).samples
    except ValidationError as error:
        return JSONResponse({"detail": error.errors(include_context=False, include_input=False)}, status_code=400)
    return JSONResponse([a.response for a in predictor.predict([s.model_dump() for s in samples])])


async def hello(request: Request) -> JSONResponse:
    """Reads the body and answers a constant: the ceiling of uvicorn and the load generator here."""
    await request.body()
    return JSONResponse({"hello": True})


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({"ready": True})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/batch_predict", batch_predict, methods=["POST"]),
                        Route("/hello", hello, methods=["POST"]), Route("/readyz", ready)])  # fmt: skip
