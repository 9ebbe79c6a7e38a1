"""Schema fuzz of the management API (schemathesis over its own OpenAPI document): whatever the
body, path or query, the answer is a 4xx naming what is wrong or a success, never a server error.

The only 5xx allowed is the documented 503 of a dependency this world lacks on purpose (no
Dagster webserver for retraining, no Feast registry for the feature routes)."""

from __future__ import annotations

import pytest
import schemathesis
from control_support import add_version, registry_copy, template_registry
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tracseq_dagster.control.api import ControlPlane, create_app
from tracseq_dagster.control.audit import ParquetAuditLog
from tracseq_dagster.control.database import open_engine
from tracseq_dagster.control.promotions import PromotionRequests
from tracseq_dagster.control.tokens import TokenStore
from tracseq_dagster.registry import ModelRegistry

MISSING_ON_PURPOSE = ("/retrain", "/features")
ADMIN: dict[str, str] = {}


@pytest.fixture(scope="module")
def management_schema(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "template").mkdir()
    client = registry_copy(template_registry(folder / "template"), folder)
    for gate in ("promote", "promote", "reject"):
        add_version(client, "sample_quality", folder, gate=gate, metrics={"holdout_score": 0.8})
    ModelRegistry(client, "sample_quality").promote("1", "first")
    engine = open_engine(f"sqlite:///{folder / 'control.db'}")
    tokens = TokenStore(engine)
    ADMIN["Authorization"] = f"Bearer {tokens.create('fuzzer', 'admin', created_by='test')}"
    plane = ControlPlane(
        tokens=tokens, audit=ParquetAuditLog(folder / "audit"), requests=PromotionRequests(engine), mlflow=lambda: client
    )
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(plane))


@pytest.mark.slow  # about 30 s of fuzzing on this machine, plus MLflow's migrations
def test_no_input_makes_a_server_error(management_schema) -> None:  # type: ignore[no-untyped-def]
    seen: set[int] = set()
    operations = [result.ok() for result in management_schema.get_all_operations()]
    assert len(operations) >= 15  # every route of the API is fuzzed
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:  # valid and invalid inputs

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=ADMIN)
            seen.add(response.status_code)
            if response.status_code == 503:
                assert any(part in case.path for part in MISSING_ON_PURPOSE), (case.method, case.path, response.text)
                return
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            if response.status_code == 422:
                assert response.json()["detail"], response.text  # says what is wrong

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # a route without input has no invalid one
    assert {200, 404, 422} <= seen  # the fuzz reached the routes' own answers, not only validation
