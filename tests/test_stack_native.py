"""The production stack, started natively against the local PostgreSQL server, and its faults.

One stack for the module (see tests/native_stack.py): MLflow server on PostgreSQL, gRPC code
server, webserver and daemon with the repository's dagster.yaml. The tests run in order:

1. a dropped export is picked up by the sensor on the daemon's tick, queued, launched, and
   declarative automation builds the features, with nobody clicking;
2. runs launched through the GraphQL API (dagster-graphql's client) sweep, register and
   promote a model in the MLflow server and package the Bento, which `tracseq bento serve`
   then serves;
3. the code server killed (with its run workers) in the middle of a run: run monitoring
   marks the run failed once the restarted server does not know it, and re-executing from
   failure completes without a second registry version;
4. the features, which nothing refreshed since 1., reported overdue by the daemon;
5. the daemon killed: the run in flight finishes, and a file dropped while it was down is
   picked up once, after it comes back;
6. PostgreSQL restarted under the running daemon: it reconnects and goes on.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster_graphql import DagsterGraphQLClient

from assets.models.partitions import AUTOML_PARTITIONS, MODEL_PARTITIONS, sweep_partition_key
from tests.conftest import fresh_postgres_database
from tests.native_stack import BIN, LOCATION, NativeStack
from tests.processes import free_port, stop, wait_until_ready
from tests.serving_support import recent_samples, request_records
from tracseq_dagster.generator import generate_exports
from tracseq_dagster.registry import CHAMPION, ModelRegistry
from tracseq_dagster.tracking import open_client

pytestmark = pytest.mark.slow

SWEEP = {"ops": {"automl_trials": {"config": {"time_budget_s": 8, "max_trials": 4, "cv_folds": 3}}}}
# The runs a person launches from the UI: sample_quality's LightGBM sweep, then its registration (partition tags as Dagster writes them).
SWEEP_TAGS = AUTOML_PARTITIONS.get_tags_for_partition_key(sweep_partition_key("sample_quality", "lightgbm"))
PROMOTE_TAGS = MODEL_PARTITIONS.get_tags_for_partition_key("sample_quality")
# A tiny training set is not well calibrated: the gate's calibration bound is relaxed here only.
GATE = {"ops": {"promotion_gate": {"config": {"max_ece": 0.3}}}}

_REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: FROM_FAILURE}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    with fresh_postgres_database() as dagster_db, fresh_postgres_database() as mlflow_db, fresh_postgres_database() as optuna_db:
        native = NativeStack(tmp_path_factory.mktemp("stack"), dagster_db, mlflow_db, optuna_db)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DAGSTER_PG_URL", dagster_db)  # the tests read the same instance
            try:
                native.start_all()
                yield native
            finally:
                native.stop_all()


@pytest.fixture(scope="module")
def graphql(stack: NativeStack) -> DagsterGraphQLClient:
    return DagsterGraphQLClient("127.0.0.1", port_number=stack.web_port)


def _drop_export(stack: NativeStack, name: str, rows: int, seed: int, id_offset: int) -> Path:
    (export,) = generate_exports(rows, "csv", stack.root / "outbox" / name, seed=seed, id_offset=id_offset)
    partial = stack.landing / f"{name}.csv.part"  # copied under a temporary name, then renamed
    partial.write_bytes(export.read_bytes())
    return partial.rename(stack.landing / f"{name}.csv")


def _ingest_runs(instance: dg.DagsterInstance, path: Path) -> list[dg.DagsterRun]:
    return [
        r
        for r in instance.get_runs(dg.RunsFilter(job_name="ingest_lab_export"))
        if r.tags.get("tracseq/source_path") == str(path)
    ]


def _finished_ingest(stack: NativeStack, path: Path) -> dg.DagsterRun:
    with stack.instance() as instance:
        return stack.wait_for(
            lambda: next((r for r in _ingest_runs(instance, path) if r.is_finished), None), f"the ingest run of {path.name}"
        )


def _wait_finished(stack: NativeStack, graphql: DagsterGraphQLClient, run_id: str, timeout_s: float = 300) -> dg.DagsterRunStatus:
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    return stack.wait_for(lambda: (s := graphql.get_run_status(run_id)) in finished and s, f"run {run_id}", timeout_s)


def _registry(stack: NativeStack) -> ModelRegistry:
    return ModelRegistry(open_client(stack.mlflow_url), "sample_quality")


def test_a_dropped_export_flows_through_sensor_queue_and_automation(stack: NativeStack) -> None:
    export = _drop_export(stack, "first", rows=3000, seed=4, id_offset=0)
    run = _finished_ingest(stack, export)
    assert run.is_success, stack.logs_tail()
    assert run.tags["dagster/sensor_name"] == "lab_export_sensor"
    with stack.instance() as instance:
        events = {e.dagster_event_type for e in instance.all_logs(run.run_id) if e.dagster_event_type}
        # Through the queue: the daemon's run coordinator dequeued and launched it.
        assert {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING, dg.DagsterEventType.RUN_SUCCESS} <= events
        features = stack.wait_for(
            lambda: instance.get_latest_materialization_event(dg.AssetKey("sample_features")), "sample_features by automation"
        )
        assert features.asset_materialization.metadata["dagster/row_count"].value == 3000
        assert instance.get_run_by_id(features.run_id).tags.get("dagster/from_automation_condition") == "true"
    assert stack.wait_for(lambda: stack.freshness("sample_features") == "PASS", "the daemon to judge the features fresh")
    with stack.instance() as instance:  # the stack's one-shot init set the pools' limits
        assert instance.event_log_storage.get_concurrency_info("automl").slot_count == 1


def test_graphql_runs_train_register_package_and_the_bento_serves(
    stack: NativeStack, graphql: DagsterGraphQLClient, tmp_path: Path
) -> None:
    sweep = graphql.submit_job_execution("automl_sweep", repository_location_name=LOCATION, run_config=SWEEP, tags=SWEEP_TAGS)
    assert _wait_finished(stack, graphql, sweep) == dg.DagsterRunStatus.SUCCESS, stack.logs_tail()
    promote = graphql.submit_job_execution(
        "register_and_promote", repository_location_name=LOCATION, run_config=GATE, tags=PROMOTE_TAGS
    )
    assert _wait_finished(stack, graphql, promote) == dg.DagsterRunStatus.SUCCESS, stack.logs_tail()
    registry = _registry(stack)
    champion = registry.version(CHAMPION)
    assert champion is not None and str(champion.version) == "1" and champion.tags["dagster_run_id"] == promote

    package = graphql.submit_job_execution("package_bento", repository_location_name=LOCATION)
    assert _wait_finished(stack, graphql, package) == dg.DagsterRunStatus.SUCCESS, stack.logs_tail()
    port, log = free_port(), tmp_path / "bento.log"
    with log.open("w") as out:
        bento = subprocess.Popen(
            [str(BIN / "tracseq"), "bento", "serve", "--port", str(port)], env=stack.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(bento, f"http://127.0.0.1:{port}/readyz", log, timeout_s=180)
        (record,) = request_records(recent_samples(1, seed=77, id_offset=900_000))
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json=record, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["version"] == "1" and 0.0 <= answer.json()["quality_probability"] <= 1.0
    finally:
        stop(bento)


def test_killing_the_code_server_mid_run_fails_the_run_and_reexecution_adds_no_version(
    stack: NativeStack, graphql: DagsterGraphQLClient
) -> None:
    versions_before = len(_registry(stack).versions())
    run_id = graphql.submit_job_execution(
        "register_and_promote", repository_location_name=LOCATION, run_config=GATE, tags=PROMOTE_TAGS
    )
    with stack.instance() as instance:

        def refit_started() -> bool:
            return any(
                e.dagster_event_type == dg.DagsterEventType.STEP_START and e.step_key == "registered_model"
                for e in instance.all_logs(run_id)
            )

        stack.wait_for(refit_started, "the refit step to start")
        time.sleep(1.0)
        stack.kill("code-server")  # and its run worker, as a crashed container
        stack.start("code-server")
        graphql.reload_repository_location(LOCATION)
        status = _wait_finished(stack, graphql, run_id, timeout_s=240)
        assert status == dg.DagsterRunStatus.FAILURE, stack.logs_tail()
        engine_messages = " ".join(e.message for e in instance.all_logs(run_id))
        assert "no longer holds its run worker" in engine_messages

    relaunch = stack.graphql(_REEXECUTE, {"parentRunId": run_id})["launchPipelineReexecution"]
    assert relaunch["__typename"] == "LaunchRunSuccess", relaunch
    child = relaunch["run"]["runId"]
    assert _wait_finished(stack, graphql, child) == dg.DagsterRunStatus.SUCCESS, stack.logs_tail()
    versions = _registry(stack).versions()
    assert len(versions) == versions_before + 1, [(v.version, v.tags.get("dagster_run_id")) for v in versions]


def test_features_nothing_refreshed_are_reported_overdue(stack: NativeStack) -> None:
    """Training, packaging and the crash above refreshed no features: past their (test-shortened)
    window the daemon records them overdue, which the UI shows on the asset. Asserted here, after
    the crash test, so that the window runs out while those tests work instead of being waited out."""
    assert stack.wait_for(lambda: stack.freshness("sample_features") == "FAIL", "the features to go overdue", timeout_s=180)
    with stack.instance() as instance:  # the overdue features are the first drop's, built once
        built = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("sample_features")), limit=10).records
        assert len(built) == 1, [r.run_id for r in built]


def test_killing_the_daemon_loses_no_run_and_no_file(stack: NativeStack) -> None:
    in_flight = _drop_export(stack, "second", rows=1500, seed=5, id_offset=100_000)
    with stack.instance() as instance:
        stack.wait_for(
            lambda: any(r.status == dg.DagsterRunStatus.STARTED for r in _ingest_runs(instance, in_flight)),
            "the second export's run to start",
        )
    stack.kill("daemon")
    assert _finished_ingest(stack, in_flight).is_success, stack.logs_tail()  # the run worker never needed the daemon

    while_down = _drop_export(stack, "third", rows=800, seed=6, id_offset=200_000)
    time.sleep(8)  # longer than two sensor intervals: nothing may happen without the daemon
    with stack.instance() as instance:
        assert _ingest_runs(instance, while_down) == []
    stack.start("daemon")
    assert _finished_ingest(stack, while_down).is_success, stack.logs_tail()
    with stack.instance() as instance:
        assert len(_ingest_runs(instance, in_flight)) == 1 and len(_ingest_runs(instance, while_down)) == 1


def test_postgres_restarted_under_the_daemon_reconnects(stack: NativeStack) -> None:
    (version,) = [p.name for p in Path("/etc/postgresql").iterdir()]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120)
    after = _drop_export(stack, "fourth", rows=600, seed=7, id_offset=300_000)
    assert _finished_ingest(stack, after).is_success, stack.logs_tail()
    assert stack.wait_for(stack.daemon_healthy, "the daemon's heartbeats after the restart", timeout_s=120)
    assert all(p.poll() is None for p in stack.processes.values()), stack.logs_tail()
