"""Where things live by default, overridable from the environment.

The embedded defaults put everything under ``./data`` so that ``make demo`` needs no
set-up; a deployment points the variables at its own folders or URLs.

Every getter validates what it reads: a malformed value (``TRACSEQ_CHUNK_ROWS=abc``, a share
of 1.5, a URL whose port is not a number, a folder that does not exist or cannot be written)
raises :class:`ConfigurationError`, whose message is one line naming the variable, the bad
value and how to fix it. The CLI prints that line and exits with code 2 (``tracseq bento
serve`` checks the prediction service's variables, :func:`check_service_settings`, before it
starts the service); a Dagster code location fails to load with the same sentence.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class ConfigurationError(ValueError):
    """An operator's setting is wrong. ``str(error)`` is one line: what is wrong and how to fix it."""


# -- typed readers -----------------------------------------------------------------------------
def _raw(name: str) -> str | None:
    """The variable's value, None when unset or blank (blank means "use the default")."""
    value = os.getenv(name)
    return value.strip() if value is not None and value.strip() else None


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"of at least {minimum:g}"
    if maximum is not None:
        return f"of at most {maximum:g}"
    return ""


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None, meaning: str = "") -> int:
    """An integer variable within ``[minimum, maximum]``, else :class:`ConfigurationError`."""
    raw = _raw(name)
    if raw is None:
        return default
    fix = f"set it to a whole number {_bounds(minimum, maximum)}".rstrip() + _what(meaning, default)
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number: {fix}, or unset it") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigurationError(f"{name}={raw} is out of range: {fix}, or unset it")
    return value


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    meaning: str = "",
    above_minimum: bool = False,
) -> float:
    """A finite number within ``[minimum, maximum]`` (``(minimum, …`` with ``above_minimum``)."""
    raw = _raw(name)
    if raw is None:
        return default
    bounds = (
        (f"above {minimum:g}" + (f" and at most {maximum:g}" if maximum is not None else ""))
        if above_minimum
        else _bounds(minimum, maximum)
    )
    fix = f"set it to a number {bounds}".rstrip() + _what(meaning, default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number: {fix}, or unset it") from None
    low_ok = minimum is None or (value > minimum if above_minimum else value >= minimum)
    if not math.isfinite(value) or not low_ok or (maximum is not None and value > maximum):
        raise ConfigurationError(f"{name}={raw} is out of range: {fix}, or unset it")
    return value


def _what(meaning: str, default: object) -> str:
    return f" ({meaning}; default {default})" if meaning else f" (default {default})"


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return url


def checked_url(name: str, url: str, *, example: str) -> str:
    """``url`` if its host part is well formed (a port, when given, is a number from 1 to 65535)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or out of range
    except ValueError as error:
        raise ConfigurationError(f"{name}={redact(url)!r} is not a valid URL ({error}): write it as {example}") from None
    if parts.scheme in ("http", "https", "redis", "rediss", "postgresql", "postgres") and not parts.hostname:
        raise ConfigurationError(f"{name}={redact(url)!r} names no host: write it as {example}")
    return url


def local_folder(name: str, value: str | Path, *, purpose: str, default_note: str = "") -> Path:
    """A local folder that exists (or can be created in an existing parent) and can be written.

    Only its last level may be missing: a folder whose parent does not exist is much more often
    a typing mistake than a wish for a new tree, and would silently start an empty store.
    """
    path = Path(value).expanduser()
    shown = f"{name}={value}" + default_note
    if path.exists():
        if not path.is_dir():
            raise ConfigurationError(f"{shown} is a file, not a folder: point {name} at a folder for {purpose}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigurationError(
                f"{shown} is not writable by this user: make it writable (chown/chmod) or point {name} at a writable folder for {purpose}"
            )
        return path.resolve()
    parent = path.resolve().parent
    if not parent.is_dir():
        raise ConfigurationError(
            f"{shown} does not exist (nor does {parent}): create it (mkdir -p {path}) or point {name} at an existing folder for {purpose}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"{shown} does not exist and {parent} is not writable, so it cannot be created: create it, or point {name} at a writable folder for {purpose}"
        )
    return path.resolve()


def port_number(name: str, value: str | int) -> int:
    """A TCP port (1-65535), else :class:`ConfigurationError` naming ``name``."""
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ConfigurationError(
            f"{name} {value!r} is not a port number: give a whole number from 1 to 65535, e.g. 3000"
        ) from None
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"{name} {value} is out of range: give a port from 1 to 65535, e.g. 3000")
    return port


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def require_reachable(name: str, url: str, *, what: str, fix: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with one line, when the server of ``url`` does not accept a connection.

    A TCP connection with a short timeout, no retries: clients such as MLflow's retry an
    unreachable server for minutes before they give up.
    """
    parts = urlsplit(checked_url(name, url, example="http://host:port"))
    if not parts.hostname:
        return  # a local store (sqlite:///…, file:…): nothing to reach
    default_ports = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379}
    port = parts.port or default_ports.get(parts.scheme.split("+")[0])
    if port is None:
        return
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as error:
        reason = (
            error.strerror or type(error).__name__ if not isinstance(error, TimeoutError) else f"no answer within {timeout_s:g} s"
        )
        raise ConfigurationError(f"{what} at {name}={redact(url)} cannot be reached ({reason}): {fix}") from None


# -- the settings --------------------------------------------------------------------------------
def data_dir() -> Path:
    """Root of the embedded defaults (a writable folder; only its last level may be missing)."""
    value = _raw("TRACSEQ_DATA_DIR")
    note = "" if value is not None else " (the default, TRACSEQ_DATA_DIR being unset)"
    return local_folder("TRACSEQ_DATA_DIR", value or "data", purpose="the platform's data", default_note=note)


def landing_url() -> str:
    """Landing folder for LIMS exports: a local path or any fsspec URL (s3://…)."""
    return _raw("TRACSEQ_LANDING_URL") or str(data_dir() / "landing")


def lake_dir() -> str:
    return _raw("TRACSEQ_LAKE_DIR") or str(data_dir() / "lake")


def chunk_rows() -> int:
    """Rows parsed at a time: bounds the parser's memory whatever the file size."""
    return env_int("TRACSEQ_CHUNK_ROWS", 250_000, minimum=1, meaning="rows parsed at a time")


def sensor_interval_s() -> int:
    """Seconds between sensor ticks (a file is picked up on its second sighting)."""
    return env_int("TRACSEQ_SENSOR_INTERVAL_S", 30, minimum=1, meaning="seconds between sensor ticks")


def mlflow_tracking_uri() -> str:
    """MLflow's own variable, else an embedded SQLite store under the data folder."""
    uri = _raw("MLFLOW_TRACKING_URI")
    if uri is None:
        return f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}"
    return checked_url(
        "MLFLOW_TRACKING_URI", uri, example="http://mlflow:5000, postgresql://user@host:5432/mlflow or sqlite:////path/mlflow.db"
    )


def mlflow_artifact_location() -> str | None:
    """Artifact root of experiments created here; with a tracking server, the server's default."""
    uri = mlflow_tracking_uri()
    default = None if uri.startswith("http") else (data_dir() / "mlflow" / "artifacts").as_uri()
    return _raw("TRACSEQ_MLFLOW_ARTIFACTS") or default


def optuna_storage_url() -> str:
    """Optuna's RDB storage: SQLite under the data folder by default, PostgreSQL in production."""
    url = _raw("TRACSEQ_OPTUNA_STORAGE")
    if url is None:
        return f"sqlite:///{data_dir() / 'optuna.db'}"
    return checked_url("TRACSEQ_OPTUNA_STORAGE", url, example="postgresql://user@host:5432/optuna or sqlite:////path/optuna.db")


def prediction_log_url() -> str:
    """Where the service logs every prediction: a folder of Parquet files, or postgresql://…"""
    url = _raw("TRACSEQ_PREDICTION_LOG")
    if url is None:
        return str(data_dir() / "prediction_log")
    return checked_url("TRACSEQ_PREDICTION_LOG", url, example="a folder or postgresql://user@host:5432/predictions")


def redis_url() -> str | None:
    """Redis for the online feature store and the shared prediction cache; none = in process / offline."""
    url = _raw("TRACSEQ_REDIS_URL")
    return None if url is None else checked_url("TRACSEQ_REDIS_URL", url, example="redis://host:6379/0")


def redis_prefix() -> str:
    """Prefix of every Redis key the project writes (features, cached answers), so deployments can share a server."""
    return os.getenv("TRACSEQ_REDIS_PREFIX", "tracseq:")


def monitoring_interval_s() -> int:
    """Seconds between ticks of the retraining sensor."""
    return env_int("TRACSEQ_MONITORING_INTERVAL_S", 300, minimum=1, meaning="seconds between retraining sensor ticks")


def features_freshness_hours() -> float:
    """Hours after which sample_features without a refresh fails its freshness policy (warns at half)."""
    return env_float("TRACSEQ_FEATURES_FRESHNESS_H", 48, minimum=0, above_minimum=True, meaning="hours")


def monitoring_freshness_hours() -> float:
    """Hours after which the drift report without a refresh fails its freshness policy (it runs hourly)."""
    return env_float("TRACSEQ_MONITORING_FRESHNESS_H", 6, minimum=0, above_minimum=True, meaning="hours")


def retrain_min_new_labels() -> int:
    """Newly labelled samples (beyond the champion's training set) that start a retraining."""
    return env_int("TRACSEQ_RETRAIN_MIN_NEW_LABELS", 1000, minimum=1, meaning="new labels that start a retraining")


def retrain_drift_cooldown_hours() -> float:
    """Least time between two retrainings started by drift."""
    return env_float("TRACSEQ_RETRAIN_DRIFT_COOLDOWN_H", 24, minimum=0, meaning="hours")


def retrain_cron() -> str:
    """When the retraining schedule sweeps every family (cron, UTC): Sundays at 03:00 by default."""
    value = _raw("TRACSEQ_RETRAIN_CRON") or "0 3 * * 0"
    from dagster._utils.schedules import is_valid_cron_string  # noqa: PLC0415 - only where Dagster runs anyway

    if not is_valid_cron_string(value):
        raise ConfigurationError(
            f"TRACSEQ_RETRAIN_CRON={value!r} is not a cron expression: write five fields such as '0 3 * * 0' (Sundays 03:00 UTC), or unset it"
        )
    return value


def retrain_families() -> tuple[str, ...] | None:
    """Model families a retraining sweeps (comma-separated); None: all of them."""
    value = os.getenv("TRACSEQ_RETRAIN_FAMILIES", "")
    return tuple(f.strip() for f in value.split(",") if f.strip()) or None


def documents_url() -> str:
    """Landing folder for lab documents (PDF, DOCX, HTML, Markdown, text): a path or fsspec URL."""
    return _raw("TRACSEQ_DOCUMENTS_URL") or str(data_dir() / "documents")


def lancedb_dir() -> str:
    """The embedded LanceDB database of document chunks (a folder, or s3://… for LanceDB on object storage)."""
    value = _raw("TRACSEQ_LANCEDB_DIR")
    if value is None:
        return str(data_dir() / "lancedb")
    return lancedb_folder("TRACSEQ_LANCEDB_DIR", value)


def lancedb_folder(name: str, value: str) -> str:
    """A LanceDB location: object storage as given, a local folder checked (see :func:`local_folder`)."""
    if not _is_local(value):
        return value
    path = value[len("file://") :] if value.startswith("file://") else value
    return str(local_folder(name, path, purpose="the LanceDB index of documents"))


def embedder() -> str:
    """``minilm-onnx`` (offline all-MiniLM-L6-v2 on onnxruntime, the default: torch's vectors at less than half
    the CPU, BENCHMARKS.md), ``minilm`` (on torch), ``minilm-onnx-int8``, or ``ollama:<model>``, e.g.
    ``ollama:nomic-embed-text``."""
    return os.getenv("TRACSEQ_EMBEDDER", "minilm-onnx")


def ollama_host() -> str:
    """Ollama's own variable, OLLAMA_HOST, else its default address."""
    from tracseq_dagster.documents.llm import default_host

    return checked_url("OLLAMA_HOST", default_host(), example="http://127.0.0.1:11434 or 127.0.0.1:11434")


def ollama_model() -> str:
    return os.getenv("TRACSEQ_OLLAMA_MODEL", "llama3.2:3b")


def ollama_timeout_s() -> float:
    return env_float("TRACSEQ_OLLAMA_TIMEOUT_S", 120, minimum=0, above_minimum=True, meaning="seconds to wait for Ollama")


# -- the prediction service (read by the Bento; checked by `tracseq bento serve` before it starts) --
def challenger_share() -> float:
    """Share of requests the challenger answers in the A/B split (0: champion only)."""
    return env_float("TRACSEQ_CHALLENGER_SHARE", 0.0, minimum=0, maximum=1, meaning="share of requests the challenger answers")


def ab_salt() -> str:
    """Salt of the A/B split's hash: a new salt reshuffles which samples go to the challenger."""
    return os.getenv("TRACSEQ_AB_SALT", "ab-1")


def bento_workers() -> int:
    """Worker processes of the prediction service."""
    return env_int("TRACSEQ_BENTO_WORKERS", 1, minimum=1, maximum=256, meaning="worker processes of the prediction service")


def max_batch() -> int:
    """Most requests the micro-batcher scores together."""
    return env_int("TRACSEQ_MAX_BATCH", 64, minimum=1, meaning="requests scored together")


def max_wait_ms() -> float:
    """Longest a request waits for others to fill a micro-batch."""
    return env_float("TRACSEQ_MAX_WAIT_MS", 5.0, minimum=0, meaning="milliseconds a request waits for a batch")


def feature_server_url() -> str | None:
    """Feast's feature server (``feast serve``) the prediction service refreshes its history aggregates from; none = the packed history."""
    url = _raw("TRACSEQ_FEATURE_SERVER_URL")
    return None if url is None else checked_url("TRACSEQ_FEATURE_SERVER_URL", url, example="http://feature-server:6566")


def history_refresh_s() -> float:
    """Seconds between a prediction worker's refreshes of the history aggregates from the feature server."""
    return env_float("TRACSEQ_HISTORY_REFRESH_S", 30.0, minimum=1, meaning="seconds between refreshes of the history aggregates")


def rollout_interval_s() -> float:
    """Seconds between a prediction worker's looks at the rollout announcement (0: never switch while running)."""
    return env_float("TRACSEQ_ROLLOUT_INTERVAL_S", 5.0, minimum=0, meaning="seconds between checks for a newly built model")


def rollout_sensor_interval_s() -> int:
    """Seconds between the rollout sensor's looks at the registry's champions."""
    return int(
        env_float("TRACSEQ_ROLLOUT_SENSOR_INTERVAL_S", 60, minimum=5, meaning="seconds between checks for a moved champion")
    )


def dependency_retry_s() -> float:
    """Seconds between trial calls to a dependency that is down (an outage costs requests nothing meanwhile)."""
    return env_float(
        "TRACSEQ_DEPENDENCY_RETRY_S",
        2.0,
        minimum=0,
        above_minimum=True,
        meaning="seconds between trial calls to a down dependency",
    )


def redis_timeout_s() -> float:
    """Connect and read timeout of the service's Redis calls: a hung Redis costs a request at most this."""
    return env_float("TRACSEQ_REDIS_TIMEOUT_S", 0.25, minimum=0, above_minimum=True, meaning="seconds a Redis call may take")


def prediction_log_queue_rows() -> int:
    """Prediction-log rows kept in memory while the log's store is down; beyond it rows are dropped and counted."""
    return env_int("TRACSEQ_PREDICTION_LOG_QUEUE_ROWS", 200_000, minimum=1, meaning="log rows kept while the log is down")


def check_service_settings() -> None:
    """Read every setting the prediction service reads, so that a bad one fails before it starts."""
    challenger_share()
    bento_workers()
    max_batch()
    max_wait_ms()
    dependency_retry_s()
    redis_timeout_s()
    prediction_log_queue_rows()
    redis_url()
    prediction_log_url()
    lake_dir()
