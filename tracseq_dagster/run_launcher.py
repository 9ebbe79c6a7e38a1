"""The run launcher of the stack: Dagster's default one, plus a health check of the run worker.

Dagster's ``DefaultRunLauncher`` asks the gRPC code server to start each run worker as a
child process of the code server. When the code server dies (its container is killed,
the machine restarts) its run workers die with it, but the default launcher offers no
health check, so run monitoring never learns of it and the run stays STARTED for ever.

``CodeServerRunLauncher`` answers run monitoring's question by asking the code server
that launched the run (its address is in the run's ``dagster/grpc_info`` tag) whether it
still holds that run's worker:

* it does: the run is RUNNING;
* the server answers but does not know the run: the worker died with an earlier code
  server, so the run is FAILED and can be re-executed from failure;
* the server does not answer: it may be restarting, so nothing is decided yet (RUNNING);
  ``run_monitoring.max_runtime_seconds`` still bounds a run that never comes back.

Run monitoring re-reads the run before acting, so a run that finished between the two
reads is left alone.
"""

from __future__ import annotations

from dagster import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import deserialize_value

#: Seconds to wait for the code server's answer before calling it unreachable.
HEALTH_CHECK_TIMEOUT_S = 10


class CodeServerRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` whose run workers are checked through the code server that holds them."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:  # finished meanwhile, or launched without a code server
            # Without an address there is nothing to ask: behave like the default launcher.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no code server address on the run")
        try:
            answer = client.can_cancel_execution(CanCancelExecutionRequest(run_id=run.run_id), timeout=HEALTH_CHECK_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - any transport error means "cannot tell yet"
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, f"code server unreachable ({type(error).__name__}); checking again later", transient=True
            )
        if deserialize_value(answer, CanCancelExecutionResult).can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            "the code server that launched this run no longer holds its run worker "
            "(it was restarted or killed while the run was going); re-execute the run from failure",
        )
