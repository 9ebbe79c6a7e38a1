"""Every catalog model's champion (and challenger) as one BentoML service.

    GET  /models           every served model: versions, aliases, metrics, feature set (the registry listing)
    GET  /models/{name}    one model: its declaration, request columns, lineage, traffic split, feature glossary
    POST /models/{name}/predict              one request row → value, category or interval, risk factors, recommendations
    POST /models/{name}/batch_predict        {"records": [row, …]} → {"answers": [...]}, in order
    POST /models/{name}/fast/batch_predict   an Arrow IPC stream or Parquet table of rows → a table of answers
    POST /storage/recommend  incoming samples → the best free freezer positions, placed jointly (tracseq_dagster.serving.storage_routes)

The original routes stay ``sample_quality``'s:

    POST /predict          one raw LIMS record → probability, category, risk factors, recommendations
    POST /batch_predict    {"samples": [record, …]} → one answer per record, in order
    POST /fast/batch_predict   an Arrow IPC stream or Parquet table of records → a table of answers

When the Bento was built with the lab's SOPs indexed, every answer with ``recommendations`` also
carries ``recommendation_citations``: one list per recommendation, in the same order, of the SOP
passages that say what to do (``{citation: "SOP-014-….pdf, p. 2", file_name, page_start,
page_end, text}``; serving/recommendation_citations.py). The columnar route puts them in its
schema metadata ``sop_citations`` (keyed by risk factor kind) and, with ``?recommendations=text``,
in a column aligned with ``recommendations`` (serving/table_citations.py). Without SOPs packed
the answers have neither. ``GET /model`` says what was packed (``sop_citations``: index
version, digest, kinds; null without).
    POST /features         {"sample_ids": [...]} → latest features of known samples (online store)
    GET  /features/{id}    the same for one sample
    GET  /model            versions, aliases, metrics, lineage, traffic split
    GET  /healthz /livez /metrics   BentoML's probes and Prometheus metrics
    GET  /readyz           200 {"status": "ready" | "degraded", "dependencies": {"redis": "up" | "down: …", …}}

No dependency outage fails a prediction: without Redis the cache is bypassed and /features
reads the lake's offline table; without the prediction log's database its rows wait in a
bounded queue (then are dropped and counted). /readyz says which dependency is down, /metrics
counts the failures (tracseq_dependency_failures_total, tracseq_dependency_bypassed_total,
tracseq_prediction_log_dropped_rows_total), and the service goes back to each dependency by
itself once it answers (see tracseq_dagster.serving.dependencies). MLflow is never called at
serve time: the models are packed in the Bento.

The domain work happens in :mod:`tracseq_dagster.serving`; this file wires it to HTTP. The
served bundle is the BentoML model ``TRACSEQ_MODEL_TAG`` (the ``model_tag`` build argument,
which the ``prediction_bento`` asset sets to the registered versions it packed): the
``sample_quality`` bundle at its root (the original routes; 404 when that model had no champion)
and one bundle per catalog model under ``models/`` (:mod:`tracseq_dagster.serving.catalog_bundle`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.routing import Route

from tracseq_dagster import settings
from tracseq_dagster.artifact_digest import verify_saved_model
from tracseq_dagster.control.service_access import add_access_control
from tracseq_dagster.models.sample_quality import recommend as sample_quality_recommend
from tracseq_dagster.serving import columnar
from tracseq_dagster.serving.catalog_predictor import ServedCatalog
from tracseq_dagster.serving.catalog_routes import COLUMNAR_PATH, CatalogService, catalog_routes
from tracseq_dagster.serving.content_type_guard import JsonOnlyMiddleware
from tracseq_dagster.serving.dependencies import Dependencies, ReadinessMiddleware
from tracseq_dagster.serving.feature_server import FeatureServer
from tracseq_dagster.serving.micro_batcher import MicroBatcher
from tracseq_dagster.serving.online_history import OnlineHistories
from tracseq_dagster.serving.online_store import open_feature_store
from tracseq_dagster.serving.prediction_cache import blob_key, cache_key, open_cache
from tracseq_dagster.serving.prediction_log import BackgroundLogWriter, open_prediction_log
from tracseq_dagster.serving.predictor import SampleQualityPredictor
from tracseq_dagster.serving.recommendation_citations import PackedCitations, cite_catalog, citing
from tracseq_dagster.serving.request_schema import BatchRequest, FeatureRequest, SampleRecord
from tracseq_dagster.serving.rollout import RolloutWatcher
from tracseq_dagster.serving.service_metrics import ServiceMetrics
from tracseq_dagster.serving.storage_routes import StorageService, storage_routes
from tracseq_dagster.serving.table_citations import cite_table
from tracseq_dagster.serving.traffic_split import TrafficSplit

MODEL_TAG = (
    os.environ.get("TRACSEQ_MODEL_TAG") or getattr(bentoml.use_arguments(), "model_tag", None) or "tracseq_predictions:latest"
)


routes = FastAPI(title="tracseq_predictions extras")
COLUMNAR_ROUTE = "/fast/batch_predict"
NO_SAMPLE_QUALITY = "this Bento serves no sample_quality champion (it had none when built); see GET /models"


async def _fast_predict(request: Request) -> Response:
    return await bentoml.get_current_service().fast_predict(request)


async def _fast_batch_predict(request: Request) -> Response:
    return await bentoml.get_current_service().fast_batch_predict(request)


# The high-volume routes on plain Starlette: FastAPI would resolve a dependency (the service
# instance) and wrap the endpoint on every request, about a tenth of a /fast/predict's CPU.
fast_routes = Starlette(routes=[Route("/predict", _fast_predict, methods=["POST"]),
                                Route("/batch_predict", _fast_batch_predict, methods=["POST"])])  # fmt: skip
# /models and /models/{name}/…: the catalog's routes, plain Starlette like the fast ones.
routes.router.routes.extend(catalog_routes(lambda: bentoml.get_current_service().catalog))
routes.router.routes.extend(storage_routes(lambda: bentoml.get_current_service().storage))  # from the packed samples


@bentoml.service(
    name="tracseq_predictions",
    workers=settings.bento_workers(),
    traffic={"timeout": 30, "max_concurrency": 4096},
    metrics={"enabled": True, "namespace": "tracseq"},
    # An OpenTelemetry span per request costs about a tenth of a /fast/predict's CPU; the
    # high-volume routes go without (nothing exports spans unless an exporter is configured).
    tracing={"excluded_urls": ["/fast/"]},
    # One access-log line per request costs more than a prediction; the prediction log keeps
    # every answer anyway. TRACSEQ_ACCESS_LOG=1 turns it back on.
    logging={"access": {"enabled": os.environ.get("TRACSEQ_ACCESS_LOG", "0") == "1"}},
)
@bentoml.asgi_app(routes, path="/")
@bentoml.asgi_app(fast_routes, path="/fast")  # mounted first: the "/" mount would match its paths too
class Predictions:
    bundle = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.split = TrafficSplit(settings.challenger_share(), settings.ab_salt())
        self.attribution = os.environ.get("TRACSEQ_ATTRIBUTION", "tree_path")  # or tree_shap (exact, slower)
        self.model_tag = str(self.bundle.tag)
        models_path = Path(self.bundle.path)
        self._verify(models_path, self.bundle.info.metadata, self.model_tag)  # the resolved stored model
        # The SOP passages of each recommendation kind, packed at build time when SOPs were indexed
        # (serving/recommendation_citations.py); None: answers carry no citations.
        self.citations = PackedCitations.load(models_path)
        # The original routes' bundle is there when sample_quality had a champion at build time.
        self.predictor = self._sample_quality_predictor(models_path)
        self.metrics = ServiceMetrics()
        self.dependencies = Dependencies()
        self.dependencies.listen(self.metrics.dependency_event)
        redis_url = settings.redis_url()
        redis_breaker = self.dependencies.breaker("redis") if redis_url else None
        self.cache = open_cache(redis_url, redis_breaker)
        if redis_breaker is not None:
            self.dependencies.breaker("redis", probe=self.cache.ping)  # type: ignore[attr-defined]
        server_url = settings.feature_server_url()
        self.features_store = open_feature_store(  # Feast's online store through its feature server, else the lake
            settings.lake_dir(),
            self.dependencies.breaker("feature_server") if server_url else None,
            feature_server=FeatureServer(server_url) if server_url else None,
        )
        log = open_prediction_log(settings.prediction_log_url())
        self.log = BackgroundLogWriter(
            log,
            max_queue_rows=settings.prediction_log_queue_rows(),
            retry_s=settings.dependency_retry_s(),
            breaker=self.dependencies.breaker("prediction_log", probe=getattr(log, "ping", None)),
            on_dropped=self.metrics.rows_dropped,
        )
        self.batcher = self._batcher(self.predictor, self.citations)
        self.catalog = CatalogService(self._served_catalog(models_path, self.citations), self.log.submit)
        self.storage = StorageService.of_catalog(self.catalog.catalog)
        self.history = self._online_history(self.predictor, self.catalog.catalog)
        # A newly built model is served without a restart (tracseq_dagster/serving/rollout.py).
        self.rollout = RolloutWatcher(self.model_tag, self._switch_to, interval_s=settings.rollout_interval_s()).start()
        # The model, the history snapshot and the imported modules live as long as the worker:
        # frozen out of the cyclic garbage collector, its full collections need not walk them.
        gc.collect()
        gc.freeze()

    @staticmethod
    def _verify(path: Path, metadata: Any, tag: str) -> None:
        """Every file as it was saved, or no model at all: the bundle holds pickles, which are code."""
        if not verify_saved_model(path, metadata, f"model {tag}"):
            logging.getLogger(__name__).warning(
                "model %s has no file digests (saved before they existed): served unverified", tag
            )

    def _sample_quality_predictor(self, path: Path) -> SampleQualityPredictor | None:
        return SampleQualityPredictor(path, self.split, self.attribution) if (path / "bundle.json").exists() else None

    @staticmethod
    def _online_history(predictor: SampleQualityPredictor | None, served: ServedCatalog) -> OnlineHistories | None:
        """With TRACSEQ_FEATURE_SERVER_URL, the history aggregates refreshed from Feast's online store
        (serving/online_history.py); without it, or before the first refresh, the packed history."""
        url = settings.feature_server_url()
        if url is None:
            return None
        return OnlineHistories.start(FeatureServer(url), {"/predict": predictor, **served.models}, settings.history_refresh_s())

    @staticmethod
    def _batcher(predictor: SampleQualityPredictor | None, citations: PackedCitations | None) -> MicroBatcher | None:
        if predictor is None:
            return None
        predict = citing(predictor.predict, citations, sample_quality_recommend)
        return MicroBatcher(predict, max_batch=settings.max_batch(), max_wait_ms=settings.max_wait_ms())

    def _served_catalog(self, path: Path, citations: PackedCitations | None) -> ServedCatalog:
        served = ServedCatalog(path, self.split, self.attribution)
        cite_catalog(served.models, citations)
        return served

    def _switch_to(self, tag: str) -> None:
        """Load, check and warm the announced model off the request path, then swap the references.

        Each request reads the references once, so one that started before the swap finishes on
        the old models and every later one uses the new: none is dropped or mixed.
        """
        stored = bentoml.models.get(tag)
        path = Path(stored.path)
        self._verify(path, stored.info.metadata, tag)
        predictor = self._sample_quality_predictor(path)  # loads and warms up (serving/warm_up.py)
        citations = PackedCitations.load(path)
        catalog = CatalogService(self._served_catalog(path, citations), self.log.submit)
        history = self._online_history(predictor, catalog.catalog)
        storage, batcher = StorageService.of_catalog(catalog.catalog), self._batcher(predictor, citations)
        gc.unfreeze()  # the old models become garbage once the last request on them ends
        self.predictor, self.batcher, self.catalog, self.storage, self.model_tag = predictor, batcher, catalog, storage, tag
        self.citations = citations
        if self.history is not None:
            self.history.stop()
        self.history = history
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/predict", input_spec=SampleRecord)
    async def predict(self, **record: Any) -> dict[str, Any]:
        """Quality of one sample: probability of passing QC, category, risk factors, recommendations."""
        return await self._predict_record(record)

    async def fast_predict(self, request: Request) -> Response:
        """/predict through a mounted ASGI route: the same answer, without BentoML's API machinery.

        For high-volume LIMS integrations (see BENCHMARKS.md for the cost of each path). Bad
        input gets the same 400 with one entry per bad field.
        """
        try:
            record = SampleRecord.model_validate_json(await request.body())
        except ValidationError as error:
            detail = error.errors(include_context=False, include_input=False, include_url=False)
            return JSONResponse({"error": f"{error.error_count()} validation errors", "detail": detail}, status_code=400)
        if self.predictor is None:
            return JSONResponse({"error": NO_SAMPLE_QUALITY}, status_code=404)
        return JSONResponse(await self._predict_record(record.model_dump()))

    def _sample_quality(self) -> SampleQualityPredictor:
        """The original routes' predictor, or a 404 when the Bento was built without a sample_quality champion."""
        if self.predictor is None:
            raise bentoml.exceptions.NotFound(NO_SAMPLE_QUALITY)
        return self.predictor

    async def _predict_record(self, record: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        citations = self.citations  # the cached answer holds the citations it was answered with
        key = cache_key(self._sample_quality().cache_tag + (f"-s{citations.digest}" if citations else ""), record)
        cached = self.cache.get(key)
        if cached is not None:
            self.metrics.cache_hit()
            return {**cached, "request_id": uuid.uuid4().hex, "cached": True}
        answer = await self.batcher.submit(record)
        self.cache.put(key, answer.response)
        self._log([answer], started)
        return {**answer.response, "cached": False}

    async def fast_batch_predict(self, request: Request) -> Response:
        """Records as a table (Arrow IPC stream or Parquet) → answers as a table of the same format, in order.

        The columnar contract (:mod:`tracseq_dagster.serving.columnar`) for bulk scoring: the same
        answers as /batch_predict, without per-record objects. ``?recommendations=text`` adds the
        worded recommendations (per-row Python, slower). A bad table gets 400 naming each bad row
        and field; an identical body is answered from the cache. When the Bento packed SOP
        citations, the schema metadata ``sop_citations`` holds the passages of the kinds among the
        risk factors, and worded answers a ``recommendation_citations`` column aligned with
        ``recommendations`` (serving/table_citations.py).
        """
        kind = columnar.media_type(request.headers.get("content-type"))
        if kind is None:
            return JSONResponse({"error": f"send the table as {columnar.ARROW_STREAM} or {columnar.PARQUET}"}, status_code=415)
        if self.predictor is None:
            return JSONResponse({"error": NO_SAMPLE_QUALITY}, status_code=404)
        body = await request.body()
        # Off the event loop: validation and features hold the GIL for a while; the tree kernel releases it.
        return await asyncio.to_thread(self._answer_table, body, kind, request.query_params.get("recommendations") == "text")

    def _answer_table(self, body: bytes, kind: str, texts: bool) -> Response:
        started = time.perf_counter()
        batch_id = uuid.uuid4().hex
        predictor, citations = self.predictor, self.citations  # read once: a rollout may swap them meanwhile
        key = blob_key(predictor.cache_tag + (f"-s{citations.digest}" if citations else ""), body, f"{kind}:{texts}")
        cached = self.cache.get_blob(key)
        if cached is not None:
            self.metrics.cache_hit()
            table = columnar.reissued(columnar.read_table(cached, columnar.ARROW_STREAM), batch_id)
            return Response(columnar.write_table(table, kind), media_type=kind)
        try:
            valid = columnar.validate_table(columnar.read_table(body, kind))
        except columnar.ColumnarError as error:
            return JSONResponse(error.payload(), status_code=400)
        answers = predictor.predict_table(valid, texts=texts)
        table = cite_table(answers, answers.table(batch_id), citations, sample_quality_recommend)
        self.cache.put_blob(key, columnar.write_table(table, columnar.ARROW_STREAM))
        self.metrics.observe_table(table)
        self.log.submit(answers.log_frame(batch_id, (time.perf_counter() - started) * 1000.0))  # in bulk, one frame
        return Response(columnar.write_table(table, kind), media_type=kind)

    @bentoml.api(route="/batch_predict", input_spec=BatchRequest)
    def batch_predict(self, samples: list[Any]) -> list[dict[str, Any]]:
        """The same answer as /predict for each record, in order (features and models run once per batch)."""
        started = time.perf_counter()
        records = [s.model_dump() for s in samples]
        answers = citing(self._sample_quality().predict, self.citations, sample_quality_recommend)(records)
        self._log(answers, started)
        return [a.response for a in answers]

    @bentoml.api(route="/features", input_spec=FeatureRequest)
    def features(self, sample_ids: list[str]) -> dict[str, Any]:
        """Latest features of known samples (Feast's online store through its feature server when configured and up, the lake's table otherwise)."""
        found, source = self._features_of(sample_ids)
        return {"features": found, "missing": [s for s in sample_ids if s not in found], "source": source}

    @routes.get("/features/{sample_id}")
    def one_sample_features(self, sample_id: str) -> dict[str, Any]:
        """Latest features of one known sample; 404 when the store does not know it."""
        found, source = self._features_of([sample_id])
        if sample_id not in found:
            raise HTTPException(status_code=404, detail=f"no features for sample {sample_id!r}: not in the {source} store")
        return {"sample_id": sample_id, "features": found[sample_id], "source": source}

    def _features_of(self, sample_ids: list[str]) -> tuple[dict[str, Any], str]:
        """Features found and the store that answered: online (Feast) or offline (the lake's table)."""
        if hasattr(self.features_store, "get_many_from"):
            return self.features_store.get_many_from(sample_ids)
        return self.features_store.get_many(sample_ids), "offline"

    @routes.get("/model")
    def model(self) -> dict[str, Any]:
        """Served versions, metrics, lineage, traffic split, feature glossary and category thresholds."""
        if self.predictor is None:
            raise HTTPException(status_code=404, detail=NO_SAMPLE_QUALITY)
        cited = self.citations.summary() if self.citations is not None else None
        history = self.history.status() if self.history is not None else "packed at build time"
        return {
            **self.predictor.model_info(),
            "rollout": self.rollout.status(),
            "sop_citations": cited,
            "history_source": history,
        }

    @bentoml.on_shutdown
    def _flush_prediction_log(self) -> None:
        """Write what the prediction log still holds before the worker exits."""
        self.rollout.stop()
        if self.history is not None:
            self.history.stop()
        self.log.close()

    def _log(self, answers: list[Any], started: float) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.metrics.observe(answers)
        self.log.submit(
            [{**a.log_row, "ts": datetime.now(UTC), "latency_ms": latency_ms / max(len(answers), 1)} for a in answers]
        )


async def _readiness() -> dict[str, Any]:
    return await bentoml.get_current_service().dependencies.check()


Predictions.add_asgi_middleware(ReadinessMiddleware, report=_readiness)
Predictions.add_asgi_middleware(JsonOnlyMiddleware, columnar_paths=(COLUMNAR_ROUTE,), columnar_pattern=COLUMNAR_PATH)
add_access_control(Predictions)  # TRACSEQ_SERVICE_AUTH: roles and rate limits, the shared token, or none
