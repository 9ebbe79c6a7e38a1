"""The production stack's files: docker-compose.yml, Dockerfile, .env.example, dagster.yaml.

No Docker engine here: Debian's docker-compose 1.29 (`make system-deps`) renders the file
without one, the Compose Specification's JSON schema (shipped by the same package) checks
its shape, and the rest are this project's rules, each of which a wrong edit would break.
dagster.yaml is loaded as a real instance on the local PostgreSQL server, and its queue is
asked whether it admits a second AutoML sweep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SPEC = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
PROJECT_SOURCES = ("tracseq_dagster", "assets", "resources", "bentos")

# Container paths that hold state: each must be a named volume wherever it is mounted.
STATEFUL_PATHS = {
    "/var/lib/postgresql/data",  # PostgreSQL
    "/data",  # Redis append-only file (redis image)
    "/mlflow/artifacts",
    "/opt/dagster/home/storage",  # compute logs
    "/data/landing",
    "/data/lake",
    "/data/feast",  # the Feast registry (file) and its statistics, shared by the code location and the feature server
    "/data/documents",
    "/data/lancedb",
    "/data/bentoml",
    "/root/.ollama",
}
# Settings holding a local folder: where a service sets one, the folder must be on a volume.
PATH_SETTINGS = ("TRACSEQ_LANDING_URL", "TRACSEQ_LAKE_DIR", "TRACSEQ_DOCUMENTS_URL", "TRACSEQ_LANCEDB_DIR", "BENTOML_HOME")

# Variables read by something other than this project's code: where each is read.
THIRD_PARTY_READERS = {
    "MLFLOW_SERVER_ALLOWED_HOSTS": ("mlflow", "environment_variables.py"),
    "BENTOML_HOME": ("bentoml", "_internal/configuration/containers.py"),
    "DAGSTER_HOME": ("dagster", "_core/instance/config.py"),
    "DAGSTER_DISABLE_TELEMETRY": ("dagster", "_core/telemetry_upload.py"),
}
# Read by the official images or by Python/pip themselves, documented there, not in code we have.
IMAGE_VARIABLES = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "ollama-pull": {"OLLAMA_HOST"},
}
INTERPRETER_VARIABLES = {"PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK"}

SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET")


def compose_lines() -> list[str]:
    """docker-compose.yml without its comments."""
    return [line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#")]


def env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {name.strip(): value.strip() for name, value in pairs}


def secret_names() -> list[str]:
    return [name for name in env_example() if SECRET_NAME.search(name)]


def filled_env_values() -> dict[str, str]:
    """.env.example with every empty value filled with a generated, URL-safe one."""
    return {name: value or f"gen-{name.lower()}-4f1c" for name, value in env_example().items()}


def filled_env(tmp_path: Path, omit: str | None = None) -> Path:
    """An env file of :func:`filled_env_values`, optionally with one variable left out."""
    lines = [f"{name}={value}" for name, value in filled_env_values().items() if name != omit]
    env_file = tmp_path / f"env-without-{omit}" if omit else tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    return env_file


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with only this env file (no variable of the caller's shell leaks in)."""
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make system-deps` installs Debian's docker-compose"
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(env_file.parent)},
        timeout=60,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack as docker-compose renders it: anchors merged, variables interpolated."""
    result = compose_config(filled_env(tmp_path_factory.mktemp("compose")))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return rendered["services"]


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, container path) of each of the service's volumes (1.29 renders the short form)."""
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        yield source, target


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in (service.get("environment") or {}).items()}


# --- docker-compose and the Compose Specification -------------------------------------------------


def test_compose_renders_with_a_filled_env_file(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "postgres", "redis", "mlflow", "dagster-init", "code-location", "webserver", "daemon",
        "ollama", "ollama-pull", "feature-server", "predictions", "predictions-gateway", "document-qa", "management",
    }  # fmt: skip
    # The secrets of the env file reached the services.
    assert environment(services["code-location"])["DAGSTER_PG_URL"] == (
        "postgresql://tracseq:gen-postgres_password-4f1c@postgres:5432/dagster"
    )
    assert environment(services["predictions"])["TRACSEQ_API_TOKEN"] == "gen-tracseq_api_token-4f1c"
    # The served models and /ask take the management API's tokens, kept in the control database.
    for name in ("predictions", "document-qa", "management"):
        assert environment(services[name])["TRACSEQ_SERVICE_AUTH"] == "roles"
        assert environment(services[name])["TRACSEQ_CONTROL_DB"].endswith("@postgres:5432/control")


@pytest.mark.parametrize("secret", secret_names())
def test_compose_refuses_to_render_without_a_secret(secret: str, tmp_path: Path) -> None:
    result = compose_config(filled_env(tmp_path, omit=secret))
    assert result.returncode != 0
    assert f"set {secret} in .env" in result.stderr


def test_compose_file_matches_the_compose_specification() -> None:
    from jsonschema import validators

    schema = json.loads(COMPOSE_SPEC.read_text())
    validator = validators.validator_for(schema)(schema)
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert [e.message for e in validator.iter_errors(document)] == []
    # The schema does catch a misspelt key (healthcheck "intervall").
    document["services"]["redis"]["healthcheck"]["intervall"] = "5s"
    assert any("intervall" in e.message for e in validator.iter_errors(document))


# --- the project's rules ---------------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck_and_one_network(
    rendered: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert list(rendered["networks"]) == ["tracseq"]
    for name, service in services.items():
        assert list(service["networks"]) == ["tracseq"], name
        if one_shot(service):
            assert "healthcheck" not in service, name
        else:
            assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name
            assert service["restart"] == "unless-stopped", name
    assert {n for n, s in services.items() if one_shot(s)} == {"dagster-init", "ollama-pull"}


def test_start_up_order_names_real_services_with_conditions_they_can_meet(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy: it has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert one_shot(services[dependency]), f"{name} waits for long-running {dependency} to complete"
            else:
                assert condition == "service_started", (name, dependency, condition)


def test_the_dagster_processes_start_after_schema_and_pool_limits(services: dict[str, dict[str, Any]]) -> None:
    def waits_for(name: str) -> set[str]:
        direct = set(services[name].get("depends_on", {}))
        return direct.union(*(waits_for(d) for d in direct))

    assert "python -m tracseq_dagster.pool_limits" in " ".join(services["dagster-init"]["command"])
    for name in ("code-location", "webserver", "daemon"):
        assert "dagster-init" in waits_for(name), name
    assert services["code-location"]["depends_on"]["dagster-init"]["condition"] == "service_completed_successfully"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code-location"]["condition"] == "service_healthy"


def test_state_lives_in_named_volumes(rendered: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(rendered["volumes"])
    used: set[str] = set()
    volume_of_path: dict[str, str] = {}
    for name, service in services.items():
        for entry in service.get("volumes", []):
            source, target = entry.split(":")[:2]
            if source.startswith("/"):  # a bind mount: read-only configuration from the repository only
                assert Path(source).is_relative_to(ROOT / "compose") and entry.endswith(":ro"), (name, entry)
                continue
            assert source in declared, (name, source)
            assert target in STATEFUL_PATHS, f"{name}: {target} is not a known stateful path"
            # The same folder is the same volume everywhere (the Bento reads what the code location built).
            assert volume_of_path.setdefault(target, source) == source, (name, target)
            used.add(source)
        mounted = {target for _, target in mounts(service)}
        for setting in PATH_SETTINGS:
            folder = environment(service).get(setting)
            if folder:
                assert folder in mounted, f"{name}: {setting}={folder} is not on a volume"
    assert used == declared, f"declared but never mounted: {declared - used}"
    for path in (
        "/var/lib/postgresql/data",
        "/mlflow/artifacts",
        "/data/lancedb",
        "/data/bentoml",
        "/data/feast",
        "/root/.ollama",
    ):
        assert path in volume_of_path, f"nothing keeps {path}"


def test_no_password_is_written_in_the_files(services: dict[str, dict[str, Any]]) -> None:
    # Rendered with the generated .env, every credential in a URL or on a command line is
    # one of that file's values: none was written into docker-compose.yml.
    generated = filled_env_values()
    rendered_text = json.dumps(services)
    credentials = re.findall(r"://([^:/@\s\"]*):([^@\s\"]+)@", rendered_text)
    assert len(credentials) >= 5, credentials
    for user, password in credentials:
        assert user in ("", generated["POSTGRES_USER"]) and password in {generated[n] for n in secret_names()}, (user, password)
    text = "\n".join(compose_lines())
    # Every secret variable is required (:?) wherever it is used, never given a default.
    for name, operator in re.findall(r"\$\{([A-Z_]+)(:[?-])?", text):
        if SECRET_NAME.search(name):
            assert operator == ":?", f"${{{name}}} must be written ${{{name}:?…}}"
    # Environment entries named like secrets hold a required reference, not a value.
    for line in text.splitlines():
        match = re.match(r"\s+([A-Z_]+):\s*(.+)", line)
        if match and SECRET_NAME.search(match.group(1)):
            assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", match.group(2).strip()), line
    assert not re.search(r"(?i)password|token|secret", (ROOT / "Dockerfile").read_text())
    # .env.example ships every secret empty.
    assert secret_names() and all(env_example()[name] == "" for name in secret_names())


def test_every_variable_of_the_compose_file_is_in_env_example() -> None:
    referenced = set(re.findall(r"\$\{([A-Z_]+)", "\n".join(compose_lines())))
    assert referenced == set(env_example())


def _project_reads(name: str) -> bool:
    needle = f'"{name}"'
    feast_yaml = (ROOT / "tracseq_dagster" / "feature_repo" / "feature_store.yaml").read_text()  # the feast CLI's
    return any(needle in path.read_text() for folder in PROJECT_SOURCES for path in (ROOT / folder).rglob("*.py")) or (
        f"${{{name}}}" in feast_yaml
    )


def _third_party_reads(name: str) -> bool:
    import importlib.util

    package, relative = THIRD_PARTY_READERS[name]
    spec = importlib.util.find_spec(package)
    assert spec and spec.submodule_search_locations
    return name in (Path(next(iter(spec.submodule_search_locations))) / relative).read_text()


def test_every_environment_variable_is_read_by_something(services: dict[str, dict[str, Any]]) -> None:
    dagster_yaml = (ROOT / "dagster.yaml").read_text()
    dockerfile_env = re.search(r"^ENV ((?:.*\\\n)*.*)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_env
    image_names = set(re.findall(r"([A-Z_]+)=", dockerfile_env.group(1)))
    used = [(name, variable) for name, service in services.items() for variable in environment(service)]
    used += [("Dockerfile", variable) for variable in image_names]
    for where, variable in used:
        if variable in IMAGE_VARIABLES.get(where, set()) or variable in INTERPRETER_VARIABLES:
            continue
        if where == "redis" and variable == "REDIS_PASSWORD":  # the service's own command line
            assert "$$REDIS_PASSWORD" in COMPOSE_FILE.read_text()
            continue
        read = (
            _project_reads(variable)
            or f"env: {variable}" in dagster_yaml
            or (variable in THIRD_PARTY_READERS and _third_party_reads(variable))
        )
        assert read, f"{where}: nothing reads {variable}"


def test_services_agree_on_shared_settings(services: dict[str, dict[str, Any]]) -> None:
    """One prediction log, one Redis, one model name…: the same variable has one value everywhere."""
    seen: dict[str, tuple[str, str]] = {}
    for name, service in services.items():
        for variable, value in environment(service).items():
            first = seen.setdefault(variable, (name, value))
            assert first[1] == value, f"{variable}: {first[0]} says {first[1]}, {name} says {value}"
    # Every host named in a URL is a service of the stack, on the port that service listens on.
    ports = {"postgres": 5432, "redis": 6379, "mlflow": 5000, "ollama": 11434, "code-location": 4000, "webserver": 3000,
             "predictions-gateway": 8080, "feature-server": 6566}  # fmt: skip
    for variable, (name, value) in seen.items():
        for host, port in re.findall(r"[@/]([a-z-]+):(\d+)", value):
            assert host in services and ports.get(host) == int(port), (name, variable, value)


def test_mlflow_server_serves_artifacts_from_postgresql(services: dict[str, dict[str, Any]]) -> None:
    command = services["mlflow"]["command"]
    command = command if isinstance(command, str) else " ".join(command)
    assert "--serve-artifacts" in command and "--artifacts-destination /mlflow/artifacts" in command
    assert re.search(r"--backend-store-uri postgresql://\S+@postgres:5432/mlflow\b", command)
    assert environment(services["code-location"])["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "mlflow:5000" in environment(services["mlflow"])["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


def test_postgres_init_script_creates_every_database_the_stack_uses(services: dict[str, dict[str, Any]]) -> None:
    used = {
        db for s in services.values() for value in environment(s).values() for db in re.findall(r"@postgres:5432/(\w+)", value)
    }
    used |= set(re.findall(r"@postgres:5432/(\w+)", str(services["mlflow"]["command"])))
    assert used == {"dagster", "mlflow", "optuna", "prediction_log", "control", "feast"}
    script = ROOT / "compose" / "postgres" / "10-tracseq-databases.sh"
    assert os.access(script, os.X_OK)
    created = set(re.search(r"for database in ([\w ]+);", script.read_text()).group(1).split())  # type: ignore[union-attr]
    assert created | {environment(services["postgres"])["POSTGRES_DB"]} == used
    assert any(target == "/docker-entrypoint-initdb.d" for _, target in mounts(services["postgres"]))


def test_the_gateway_balances_the_bento_replicas(services: dict[str, dict[str, Any]]) -> None:
    assert services["predictions"]["deploy"]["replicas"] == 2
    assert "ports" not in services["predictions"]  # reached only through the gateway
    conf = (ROOT / "compose" / "nginx" / "predictions.conf").read_text()
    assert re.search(r"server predictions:3000 resolve", conf)
    # The gateway limits too: per token (per address without one), 429 like the services.
    assert re.search(r"limit_req_zone \$rate_key zone=per_token:\S+ rate=\d+r/s;", conf) and "limit_req_status 429;" in conf
    assert re.search(r"location / \{\s*limit_req zone=per_token", conf)
    assert "/readyz" in " ".join(services["predictions"]["healthcheck"]["test"])
    host_ports = [port["published"] for s in services.values() for port in s.get("ports", [])]  # 1.29 renders the long form
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_the_image_is_built_from_the_lock_and_carries_what_the_stack_runs(services: dict[str, dict[str, Any]]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The documents role's lock: the core platform, serving and the documents pipeline (requirements/README.md).
    assert re.search(r"pip install [^\n]*-r requirements/documents\.txt", dockerfile)
    assert "grep -m1 '^torch==' requirements/documents.txt" in dockerfile  # torch's pin comes from the lock too
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert "python scripts/check_environment.py documents" in dockerfile
    assert re.search(r"pip install [^\n]*-e \.", dockerfile)  # the Bento build needs the source tree
    copied = set(re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE))
    copied = {part for line in copied for part in line.split()}
    for needed in ("tracseq_dagster", "assets", "resources", "bentos", "workspace.compose.yaml", "dagster.yaml",
                   "compose/serve-predictions.sh", "requirements"):  # fmt: skip
        assert needed in copied, needed
    assert services["predictions"]["command"] == ["/opt/tracseq/compose/serve-predictions.sh"]
    assert os.access(ROOT / "compose" / "serve-predictions.sh", os.X_OK)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "data", ".git"} <= set(ignored)


def test_workspace_points_at_the_code_server(services: dict[str, dict[str, Any]]) -> None:
    import tomllib

    workspace = yaml.safe_load((ROOT / "workspace.compose.yaml").read_text())
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    command = services["code-location"]["command"]
    assert server["host"] == "code-location" and str(server["port"]) == command[command.index("-p") + 1]
    assert (
        server["location_name"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["code_location_name"]
    )
    for name in ("webserver", "daemon"):
        assert "/opt/tracseq/workspace.compose.yaml" in services[name]["command"]


# --- dagster.yaml as a real instance on PostgreSQL ------------------------------------------------


@pytest.fixture(scope="module")
def definitions():
    from tracseq_dagster.definitions import defs

    return defs


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The repository's dagster.yaml in a temporary DAGSTER_HOME, on a fresh local database."""
    import dagster as dg

    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    with fresh_postgres_database() as url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_PG_URL", url)
        with dg.DagsterInstance.from_config(str(home)) as loaded:
            yield loaded


def test_dagster_yaml_is_a_postgres_instance_with_a_queue_and_pools(instance: Any) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    from tracseq_dagster.run_launcher import CodeServerRunLauncher

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert isinstance(instance.run_launcher, CodeServerRunLauncher)
    concurrency = instance.get_concurrency_config()
    assert concurrency.run_queue_config.max_concurrent_runs == 4
    assert concurrency.run_queue_config.should_block_op_concurrency_limited_runs
    assert concurrency.pool_config.pool_granularity.value == "run"
    assert concurrency.pool_config.default_pool_limit == 2
    assert instance.run_monitoring_enabled
    # Run monitoring asks the code server whether a run's worker is alive (tests/test_stack_native.py
    # kills one); the runtime limit is the backstop.
    assert instance.run_launcher.supports_check_run_worker_health
    assert instance.get_settings("freshness")["enabled"]
    assert instance.run_monitoring_max_runtime_seconds == 4 * 3600
    assert instance.get_settings("retention")["sensor"]["purge_after_days"]["skipped"] == 7


def test_pool_limits_cover_exactly_the_pools_of_the_code(definitions: Any) -> None:
    from tracseq_dagster.pool_limits import POOL_LIMITS

    graph = definitions.resolve_asset_graph()
    pools = {pool for assets_def in graph.assets_defs if assets_def.is_executable for pool in assets_def.node_def.pools}
    assert pools == set(POOL_LIMITS)


@pytest.mark.parametrize(
    ("job", "partitions", "admitted"),
    [
        ("automl_sweep", ["logistic", "lightgbm"], 1),  # one AutoML sweep at a time
        ("register_and_promote", [None, None], 1),  # the refit shares the automl pool
        ("ingest_document", ["doc-a", "doc-b"], 1),  # one document ingest at a time
        ("index_documents", [None, None], 1),
        ("ingest_lab_export", ["exp-a", "exp-b", "exp-c"], 2),
    ],
)
def test_the_queue_admits_as_many_runs_as_the_pool_allows(
    instance: Any, definitions: Any, job: str, partitions: list[str | None], admitted: int
) -> None:
    """The QueuedRunCoordinator daemon's own counter, fed the limits pool_limits stored."""
    from dagster._core.op_concurrency_limits_counter import GlobalOpConcurrencyLimitsCounter

    from tracseq_dagster.pool_limits import POOL_LIMITS, apply_pool_limits

    assert apply_pool_limits(instance) == dict(POOL_LIMITS)
    job_def = definitions.resolve_job_def(job)
    runs = [instance.create_run_for_job(job_def, run_config={}, tags={"dagster/partition": p} if p else {}) for p in partitions]
    counter = GlobalOpConcurrencyLimitsCounter(
        instance,
        runs,
        [],
        concurrency_keys=instance.event_log_storage.get_concurrency_keys(),
        pool_limits=instance.event_log_storage.get_pool_limits(),
        pool_granularity=instance.get_concurrency_config().pool_config.pool_granularity,
    )
    started = 0
    for run in runs:
        if not counter.is_blocked(run):
            counter.update_counters_with_launched_item(run)
            started += 1
    assert started == admitted
