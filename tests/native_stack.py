"""The production stack started natively: the processes of docker-compose.yml, without Docker.

There is no Docker engine on these machines, so the stack's test starts what the Compose
services run, as local processes against the PostgreSQL server on 127.0.0.1:5432:

* ``mlflow server`` with its backend store in PostgreSQL and an artifact folder;
* the code location as a gRPC code server (``dagster code-server start``);
* ``dagster-webserver`` and ``dagster-daemon`` on a workspace that points at that server,
  with the repository's own ``dagster.yaml`` (PostgreSQL storage, queued runs, pools, the
  stack's run launcher, run monitoring).

Each process gets a session of its own, so killing one kills its children too: killing
the code server takes its run workers down with it, as a crashed container would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import yaml

from tests.processes import free_port, wait_until_ready

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOCATION = "tracseq_dagster"

#: Run monitoring polls every 120 s by default; the test's copy of dagster.yaml polls faster.
MONITORING_POLL_S = 5
FEATURES_FRESHNESS_S = 150

T = TypeVar("T")


@dataclass
class NativeStack:
    """The stack's processes, their environment and their logs, under ``root``."""

    root: Path
    dagster_pg_url: str
    mlflow_backend_url: str
    optuna_url: str
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    grpc_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    mlflow_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        home = self.root / "dagster_home"
        for folder in ("dagster_home", "landing", "lake", "logs", "mlflow-artifacts", "bentoml"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        instance_config = yaml.safe_load((REPO / "dagster.yaml").read_text())
        instance_config.setdefault("run_monitoring", {})["poll_interval_seconds"] = MONITORING_POLL_S
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config))
        (self.root / "workspace.yaml").write_text(
            yaml.safe_dump(
                {"load_from": [{"grpc_server": {"host": "127.0.0.1", "port": self.grpc_port, "location_name": LOCATION}}]}
            )
        )
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": self.dagster_pg_url,
            "TRACSEQ_DATA_DIR": str(self.root),
            "TRACSEQ_LANDING_URL": str(self.root / "landing"),
            "TRACSEQ_LAKE_DIR": str(self.root / "lake"),
            "TRACSEQ_SENSOR_INTERVAL_S": "3",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "TRACSEQ_OPTUNA_STORAGE": self.optuna_url,
            "BENTOML_HOME": str(self.root / "bentoml"),
            # Short enough that the features go stale during the test (fail after 150 s,
            # warn after 75 s; Dagster needs a warning window of a minute at least), evaluated every 5 s instead of every 30 s.
            "TRACSEQ_FEATURES_FRESHNESS_H": str(FEATURES_FRESHNESS_S / 3600),
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
        }

    # -- addresses -----------------------------------------------------------------------
    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def logs_tail(self, chars: int = 2500) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in sorted((self.root / "logs").glob("*.log")))

    # -- processes -----------------------------------------------------------------------
    def commands(self) -> dict[str, list[str]]:
        workspace = str(self.root / "workspace.yaml")
        return {
            "mlflow": [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                self.mlflow_backend_url,
                "--artifacts-destination",
                str(self.root / "mlflow-artifacts"),
                "--serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.mlflow_port),
                "--workers",
                "1",
            ],
            "code-server": [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.grpc_port),
                "-m",
                "tracseq_dagster.definitions",
                "--location-name",
                LOCATION,
            ],
            "webserver": [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.web_port), "-w", workspace],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", workspace],
        }

    def launch(self, name: str) -> None:
        """Start ``name`` without waiting for it to be ready (see :meth:`start`)."""
        with self.log(name).open("a") as out:
            self.processes[name] = subprocess.Popen(
                self.commands()[name], env=self.env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start(self, name: str) -> None:
        self.launch(name)
        self.wait_ready(name)

    def wait_ready(self, name: str) -> None:
        process = self.processes[name]
        if name == "mlflow":
            wait_until_ready(process, f"{self.mlflow_url}/health", self.log(name))
        elif name == "webserver":
            wait_until_ready(process, f"{self.web_url}/server_info", self.log(name))
        elif name == "code-server":
            self.wait_for(self._code_server_serving, "the gRPC code server to serve", timeout_s=180)
        elif name == "daemon":
            self.wait_for(lambda: self.daemon_healthy(), "the daemon's heartbeats", timeout_s=180)

    def _code_server_serving(self) -> bool:
        check = subprocess.run(
            [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.grpc_port), "-h", "127.0.0.1"],
            env=self.env,
            capture_output=True,
            timeout=60,
        )
        assert self.processes["code-server"].poll() is None, self.logs_tail()
        return check.returncode == 0

    def daemon_healthy(self) -> bool:
        check = subprocess.run([str(BIN / "dagster-daemon"), "liveness-check"], env=self.env, capture_output=True, timeout=60)
        return check.returncode == 0

    def start_all(self) -> None:
        """Each process starts as soon as what it needs is ready, not after all those before it:
        their start-ups (seconds of imports each) overlap, as the Compose services' do."""
        self.launch("mlflow")
        # What the Compose stack's one-shot dagster-init service does before the daemon starts.
        subprocess.run([sys.executable, "-m", "tracseq_dagster.pool_limits"], env=self.env, check=True, timeout=300)
        self.launch("code-server")
        for name in ("mlflow", "code-server"):
            self.wait_ready(name)
        # Both read the workspace, which points at the code server: started once it serves.
        for name in ("webserver", "daemon"):
            self.launch(name)
        for name in ("webserver", "daemon"):
            self.wait_ready(name)

    def kill(self, name: str) -> None:
        """SIGKILL the process and everything it started, as when its container dies."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self, grace_s: float = 30) -> None:
        """SIGTERM every process at once, then SIGKILL what is still running after ``grace_s``.

        At once, not one after another: each takes seconds to shut down, and the stack is
        being torn down, so nothing waits on the order."""
        stopping = [self.processes.pop(name) for name in list(self.processes)]
        for process in stopping:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        for process in stopping:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()

    # -- waiting -------------------------------------------------------------------------
    def wait_for(self, probe: Callable[[], T | None], what: str, timeout_s: float = 300) -> T:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            assert not dead, f"{dead} exited while waiting for {what}:\n{self.logs_tail()}"
            time.sleep(1)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{self.logs_tail()}")

    def instance(self) -> dg.DagsterInstance:
        """The stack's instance, as the test reads it (use as a context manager)."""
        return dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"])

    def freshness(self, asset: str) -> str | None:
        """The freshness state the daemon last recorded for ``asset`` (PASS, WARN, FAIL…)."""
        with self.instance() as instance:
            record = instance.get_freshness_state_records([dg.AssetKey(asset)]).get(dg.AssetKey(asset))
        return record.freshness_state.value if record else None

    # -- GraphQL -------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """One GraphQL request to the webserver (for what dagster-graphql's client has no method for)."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.web_url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert "errors" not in answer, answer
        return answer["data"]
