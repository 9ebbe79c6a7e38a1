"""The management API: models, promotions and approvals, rollbacks, retraining, features, audit.

FastAPI rather than a second Bento: nothing here serves a model (no batching, no runners), and
FastAPI gives the OpenAPI document (``/openapi.json``, ``/docs``) and the request validation
(a 422 whose ``detail[].loc`` names the field) from the type annotations. ``tracseq management
serve`` runs it under uvicorn.

Every route but the probes goes through :class:`RoleAuthMiddleware` (401 / 403 by the role
policy, :mod:`tracseq_dagster.control.roles`) and, when ``TRACSEQ_RATE_LIMIT`` is set,
:class:`RateLimitMiddleware` (429 with Retry-After). Every action is audited with the token's
name. A client error is a 4xx that says what is wrong; what the platform lacks (no Dagster
webserver, no Feast registry) is a 503 that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path as FolderPath
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict, Field

from tracseq_dagster.control.approvals import ApprovalWorkflow, approval_required
from tracseq_dagster.control.audit import AuditLog
from tracseq_dagster.control.auth_middleware import OPEN_PATHS, RoleAuthMiddleware
from tracseq_dagster.control.catalog_view import UnknownVersion, model_listing, version_metrics
from tracseq_dagster.control.promotions import PromotionError, PromotionRequests
from tracseq_dagster.control.rate_limit import RateLimitMiddleware
from tracseq_dagster.control.retraining import RetrainUnavailable, launch_retraining
from tracseq_dagster.control.tokens import Principal, TokenStore
from tracseq_dagster.models import catalog, get_model
from tracseq_dagster.registry import ModelRegistry

#: Open without a token: probes, metrics, and the API's own description.
API_OPEN_PATHS = OPEN_PATHS | {"/openapi.json", "/docs", "/docs/oauth2-redirect"}

ModelName = Annotated[str, Path(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$", description="A catalog model (GET /models).")]
Version = Annotated[int, Path(ge=1, le=10**9, description="A registered version number.")]
RequestId = Annotated[int, Path(ge=1, le=2**31 - 1, description="A promotion request (GET /promotions).")]
Reason = Annotated[
    str, Field(min_length=1, max_length=1000, description="Why: recorded in the audit log and the registry's history.")
]
FeatureValue = str | int | float | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromotionBody(Strict):
    version: int = Field(ge=1, le=10**9, description="The version to promote (its gate must have passed).")
    reason: Reason


class DecisionBody(Strict):
    reason: Reason


class RollbackBody(Strict):
    reason: Reason


class RetrainBody(Strict):
    reason: Reason
    families: list[Annotated[str, Field(min_length=1, max_length=50)]] | None = Field(
        default=None, min_length=1, max_length=20, description="Families to sweep; default: the model's own."
    )


class OnlineBody(Strict):
    features: str | list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        description="A feature service (a catalog model's name) or feature names (view:feature or a bare name)."
    )
    entities: list[dict[Annotated[str, Field(min_length=1, max_length=100)], FeatureValue]] = Field(min_length=1, max_length=1000)


class HistoricalBody(OnlineBody):
    as_of: datetime | None = Field(default=None, description="One instant for every row; else each row's event_timestamp.")


@dataclass
class ControlPlane:
    """What the API works with; :meth:`from_environment` reads it from the settings."""

    tokens: TokenStore | None
    audit: AuditLog
    requests: PromotionRequests
    mlflow: Callable[[], MlflowClient]
    dagster_url: str | None = None
    dagster_location: str | None = None
    auth: bool = True
    rate_limit: str | None = None
    redis_url: str | None = None
    #: () -> (Feast store, statistics folder); None when no Feast repository is configured.
    feast: Callable[[], tuple[Any, FolderPath]] | None = None
    needs_approval: Callable[[str], bool] = field(default=approval_required)
    #: () -> the prediction service's GET /models answer; None when its address is not configured.
    served: Callable[[], dict[str, Any]] | None = None

    @cached_property
    def client(self) -> MlflowClient:
        return self.mlflow()

    def registry(self, model: str) -> ModelRegistry:
        return ModelRegistry(self.client, model)

    @cached_property
    def workflow(self) -> ApprovalWorkflow:
        return ApprovalWorkflow(self.requests, self.audit, self.registry, self.needs_approval)

    @classmethod
    def from_environment(cls) -> ControlPlane:
        import os

        from tracseq_dagster import settings
        from tracseq_dagster.control import config
        from tracseq_dagster.control.audit import open_audit_log
        from tracseq_dagster.control.database import open_engine
        from tracseq_dagster.tracking import open_client

        engine = open_engine(config.control_db_url())
        auth = config.auth_enabled()
        return cls(
            tokens=TokenStore(engine), audit=open_audit_log(), requests=PromotionRequests(engine),
            mlflow=lambda: open_client(settings.mlflow_tracking_uri()), dagster_url=config.dagster_url(),
            dagster_location=os.getenv("TRACSEQ_DAGSTER_LOCATION") or None, auth=auth, rate_limit=config.rate_limit(),
            redis_url=settings.redis_url(), feast=_feast_from_environment, served=_served_from_environment(),
        )  # fmt: skip


def _served_from_environment() -> Callable[[], dict[str, Any]] | None:
    """A reader of the prediction service's ``GET /models`` (``TRACSEQ_PREDICTIONS_URL``), or None."""
    import os

    from tracseq_dagster.settings import checked_url

    url = os.getenv("TRACSEQ_PREDICTIONS_URL", "").strip()
    if not url:
        return None
    checked_url("TRACSEQ_PREDICTIONS_URL", url, example="http://predictions-gateway:8080")
    token = os.getenv("TRACSEQ_PREDICTIONS_TOKEN", "").strip()

    def read() -> dict[str, Any]:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.get(f"{url.rstrip('/')}/models", headers=headers, timeout=5.0)
        answer.raise_for_status()
        return answer.json()

    return read


def _feast_from_environment() -> tuple[Any, FolderPath]:
    from tracseq_dagster.feature_repo.config import FeastSettings
    from tracseq_dagster.feature_repo.store import open_store

    feast = FeastSettings.from_environment()
    return open_store(feast), feast.folder


def _who(request: Request) -> Principal:
    return request.state.principal


def _model(name: str) -> str:
    if name not in catalog():
        raise HTTPException(404, f"no model {name!r} in the catalog; it has {', '.join(catalog())}")
    return name


def create_app(plane: ControlPlane) -> FastAPI:
    app = FastAPI(
        title="TracSeq management API",
        version="1",
        description="Models, promotions and approvals, rollbacks, retraining, features and the audit log. "
        "Send Authorization: Bearer <token> (tracseq tokens create); each route says which roles may call it.",
    )
    app.state.plane = plane

    @app.exception_handler(PromotionError)
    async def _promotion_error(request: Request, error: PromotionError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(MlflowException)
    async def _registry_down(request: Request, error: MlflowException) -> JSONResponse:
        # The registry failing is the platform's problem, not the caller's: say which store, not a bare 500.
        return JSONResponse({"detail": f"the MLflow registry did not answer ({str(error).splitlines()[0][:300]}): check MLFLOW_TRACKING_URI and its server"},
                            status_code=503)  # fmt: skip

    @app.get("/healthz", tags=["probes"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # -- models --------------------------------------------------------------------------------
    @app.get("/models", tags=["models"], summary="The catalog with champion, challenger, versions and metrics (any role)")
    def list_models() -> list[dict[str, Any]]:
        return [model_listing(plane.client, spec, needs_approval=plane.needs_approval(spec.name)) for spec in catalog().values()]

    @app.get("/models/{name}", tags=["models"], summary="One catalog model (any role)")
    def one_model(name: ModelName) -> dict[str, Any]:
        spec = get_model(_model(name))
        return model_listing(plane.client, spec, needs_approval=plane.needs_approval(name))

    @app.get(
        "/models/{name}/versions/{version}/metrics", tags=["models"], summary="A version's metrics and gate verdict (any role)"
    )
    def metrics(name: ModelName, version: Version) -> dict[str, Any]:
        try:
            return version_metrics(plane.client, _model(name), version)
        except UnknownVersion as error:
            raise HTTPException(404, str(error)) from None

    @app.post(
        "/models/{name}/retrain", tags=["models"], status_code=202, summary="Launch a retraining on Dagster (operator, admin)"
    )
    def retrain(name: ModelName, body: RetrainBody, request: Request) -> dict[str, Any]:
        spec = get_model(_model(name))
        own = spec.swept_families()
        unknown = sorted(set(body.families or ()) - set(own))
        if unknown:
            raise HTTPException(
                422,
                [
                    {
                        "loc": ["body", "families"],
                        "msg": f"not families of {name}: {', '.join(unknown)}; it sweeps {', '.join(own)}",
                        "type": "value_error",
                    }
                ],
            )
        who = _who(request)
        try:
            launched = launch_retraining(
                plane.dagster_url, name, tuple(body.families or own), body.reason, who.name, plane.dagster_location
            )
        except RetrainUnavailable as error:
            plane.audit.record(
                actor=who.name,
                role=who.role,
                action="retrain",
                model=name,
                outcome="unavailable",
                reason=f"{body.reason}: {error}",
            )
            raise HTTPException(503, str(error)) from None
        plane.audit.record(
            actor=who.name, role=who.role, action="retrain", model=name, outcome="launched", reason=body.reason, detail=launched
        )
        return launched

    @app.post("/models/{name}/promotions", tags=["promotions"], status_code=201,
              summary="Request a promotion of a version that passed the gate (operator, admin)")  # fmt: skip
    def request_promotion(name: ModelName, body: PromotionBody, request: Request) -> dict[str, Any]:
        return plane.workflow.request(_model(name), str(body.version), _who(request), body.reason).as_dict()

    @app.post("/models/{name}/rollback", tags=["promotions"], summary="Move champion back to the previous one (operator, admin)")
    def rollback(name: ModelName, body: RollbackBody, request: Request) -> dict[str, Any]:
        event = plane.workflow.rollback(_model(name), _who(request), body.reason)
        return {"model": name, "champion": event.version, "previous": event.previous, "at": event.at, "sequence": event.sequence}

    # -- promotions ----------------------------------------------------------------------------
    @app.get("/promotions", tags=["promotions"], summary="Promotion requests, oldest first (any role)")
    def list_promotions(
        model: Annotated[str | None, Query(max_length=100)] = None,
        status: Annotated[Literal["pending", "approved", "rejected", "promoted", "failed"] | None, Query()] = None,
    ) -> list[dict[str, Any]]:
        return [r.as_dict() for r in plane.requests.list(model, status)]

    @app.get("/promotions/{request_id}", tags=["promotions"], summary="One promotion request (any role)")
    def one_promotion(request_id: RequestId) -> dict[str, Any]:
        return plane.requests.get(request_id).as_dict()

    @app.post(
        "/promotions/{request_id}/approve",
        tags=["promotions"],
        summary="Approve and promote (approver, admin; not the requester)",
    )
    def approve(request_id: RequestId, body: DecisionBody, request: Request) -> dict[str, Any]:
        return plane.workflow.approve(request_id, _who(request), body.reason).as_dict()

    @app.post("/promotions/{request_id}/reject", tags=["promotions"], summary="Reject (approver, admin)")
    def reject(request_id: RequestId, body: DecisionBody, request: Request) -> dict[str, Any]:
        return plane.workflow.reject(request_id, _who(request), body.reason).as_dict()

    # -- deployments -----------------------------------------------------------------------------
    @app.get("/deployments", tags=["deployments"], summary="What serves what since when, per model (any role)")
    def deployments() -> dict[str, Any]:
        from tracseq_dagster.control.deployments import model_deployments, served_versions

        served, problem = None, None
        if plane.served is not None:
            try:
                served = served_versions(plane.served())
            except Exception as error:  # noqa: BLE001 - the prediction service down or refusing: say so, list the registry anyway
                problem = f"the prediction service did not answer GET /models ({type(error).__name__}: {error})"
        listing = [model_deployments(plane.registry(name), served) for name in catalog()]
        return {
            "deployments": listing,
            "prediction_service": problem or ("read" if served is not None else "not configured (TRACSEQ_PREDICTIONS_URL)"),
        }

    @app.post(
        "/deployments/{deployment}/rollback", tags=["deployments"], summary="Roll the current deployment back (operator, admin)"
    )
    def rollback_deployment(
        deployment: Annotated[
            str, Path(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}:\d{1,9}$", description="<model>:<sequence> (GET /deployments)")
        ],
        body: RollbackBody,
        request: Request,
    ) -> dict[str, Any]:
        from tracseq_dagster.control.deployments import UnknownDeployment, check_current, parse_id

        model, sequence = parse_id(deployment)
        try:
            check_current(plane.registry(_model(model)), sequence)
        except UnknownDeployment as error:
            raise HTTPException(404, str(error)) from None
        except ValueError as error:
            raise HTTPException(409, str(error)) from None
        event = plane.workflow.rollback(model, _who(request), body.reason)
        return {"model": model, "champion": event.version, "previous": event.previous, "at": event.at,
                "deployment": f"{model}:{event.sequence}"}  # fmt: skip

    # -- audit -----------------------------------------------------------------------------------
    @app.get("/audit", tags=["audit"], summary="The audit log, latest last (admin)")
    def audit(
        model: Annotated[str | None, Query(max_length=100)] = None,
        action: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        return [e.as_dict() for e in plane.audit.entries(model=model, action=action, limit=limit)]

    # -- features --------------------------------------------------------------------------------
    def feast() -> tuple[Any, FolderPath]:
        if plane.feast is None:
            raise HTTPException(503, "no Feast repository is configured for this service")
        try:
            return plane.feast()
        except Exception as error:  # noqa: BLE001 - a registry that cannot be opened
            raise HTTPException(
                503, f"the Feast registry cannot be opened ({type(error).__name__}: {error}); run feast_apply first"
            ) from None

    def feature_call(function: Callable[[], Any]) -> Any:
        from tracseq_dagster.feature_repo.queries import UnknownFeature

        try:
            return function()
        except UnknownFeature as error:
            raise HTTPException(404, str(error)) from None
        except (ValueError, KeyError, TypeError) as error:
            raise HTTPException(422, f"{type(error).__name__}: {error}") from None

    @app.get("/features", tags=["features"], summary="Feature views and services: descriptions, owners, versions (any role)")
    def features() -> dict[str, Any]:
        from tracseq_dagster.feature_repo.queries import list_feature_services, list_feature_views

        store, _ = feast()
        return {"views": list_feature_views(store), "services": list_feature_services(store)}

    @app.get(
        "/features/{name}/stats", tags=["features"], summary="A feature's statistics at its latest or a given version (any role)"
    )
    def feature_stats(
        name: Annotated[str, Path(min_length=1, max_length=200)],
        version: Annotated[str | None, Query(pattern=r"^v\d+$")] = None,
    ) -> dict[str, Any]:
        from tracseq_dagster.feature_repo.queries import feature_statistics

        store, folder = feast()
        return feature_call(lambda: feature_statistics(store, folder, name, version))

    @app.post("/features/online", tags=["features"], summary="The latest features of many entities (any role)")
    def features_online(body: OnlineBody) -> list[dict[str, Any]]:
        from tracseq_dagster.feature_repo.queries import online_features

        store, _ = feast()
        return feature_call(lambda: online_features(store, body.features, body.entities))

    @app.post("/features/historical", tags=["features"], summary="Features as they stood at a timestamp (time travel; any role)")
    def features_historical(body: HistoricalBody) -> list[dict[str, Any]]:
        from tracseq_dagster.feature_repo.queries import historical_features

        store, _ = feast()
        return feature_call(lambda: historical_features(store, body.features, body.entities, body.as_of))

    # Outermost first: auth decides who, then the limit counts that token.
    if plane.rate_limit:
        app.add_middleware(RateLimitMiddleware, limit=plane.rate_limit, redis_url=plane.redis_url, open_paths=API_OPEN_PATHS)
    app.add_middleware(RoleAuthMiddleware, tokens=plane.tokens, open_paths=API_OPEN_PATHS, enabled=plane.auth)
    return app


def app_from_environment() -> FastAPI:
    """The app ``tracseq management serve`` runs (uvicorn factory)."""
    return create_app(ControlPlane.from_environment())
