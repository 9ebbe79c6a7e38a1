"""Where things live by default, overridable from the environment.

The embedded defaults put everything under ``./data`` so that ``make demo`` needs no
set-up; a deployment points the variables at its own folders or URLs.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    return Path(os.getenv("TRACSEQ_DATA_DIR", "data")).resolve()


def landing_url() -> str:
    """Landing folder for LIMS exports: a local path or any fsspec URL (s3://…)."""
    return os.getenv("TRACSEQ_LANDING_URL", str(data_dir() / "landing"))


def lake_dir() -> str:
    return os.getenv("TRACSEQ_LAKE_DIR", str(data_dir() / "lake"))


def chunk_rows() -> int:
    """Rows parsed at a time: bounds the parser's memory whatever the file size."""
    return int(os.getenv("TRACSEQ_CHUNK_ROWS", "250000"))


def sensor_interval_s() -> int:
    """Seconds between sensor ticks (a file is picked up on its second sighting)."""
    return int(os.getenv("TRACSEQ_SENSOR_INTERVAL_S", "30"))


def mlflow_tracking_uri() -> str:
    """MLflow's own variable, else an embedded SQLite store under the data folder."""
    return os.getenv("MLFLOW_TRACKING_URI", f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}")


def mlflow_artifact_location() -> str | None:
    """Artifact root of experiments created here; with a tracking server, the server's default."""
    default = None if mlflow_tracking_uri().startswith("http") else (data_dir() / "mlflow" / "artifacts").as_uri()
    return os.getenv("TRACSEQ_MLFLOW_ARTIFACTS", default)


def optuna_storage_url() -> str:
    """Optuna's RDB storage: SQLite under the data folder by default, PostgreSQL in production."""
    return os.getenv("TRACSEQ_OPTUNA_STORAGE", f"sqlite:///{data_dir() / 'optuna.db'}")


def prediction_log_url() -> str:
    """Where the service logs every prediction: a folder of Parquet files, or postgresql://…"""
    return os.getenv("TRACSEQ_PREDICTION_LOG", str(data_dir() / "prediction_log"))


def redis_url() -> str | None:
    """Redis for the online feature store and the shared prediction cache; none = in process / offline."""
    return os.getenv("TRACSEQ_REDIS_URL") or None


def redis_prefix() -> str:
    """Prefix of every Redis key the project writes (features, cached answers), so deployments can share a server."""
    return os.getenv("TRACSEQ_REDIS_PREFIX", "tracseq:")


def monitoring_interval_s() -> int:
    """Seconds between ticks of the retraining sensor."""
    return int(os.getenv("TRACSEQ_MONITORING_INTERVAL_S", "300"))


def features_freshness_hours() -> float:
    """Hours after which sample_features without a refresh fails its freshness policy (warns at half)."""
    return float(os.getenv("TRACSEQ_FEATURES_FRESHNESS_H", "48"))


def monitoring_freshness_hours() -> float:
    """Hours after which the drift report without a refresh fails its freshness policy (it runs hourly)."""
    return float(os.getenv("TRACSEQ_MONITORING_FRESHNESS_H", "6"))


def retrain_min_new_labels() -> int:
    """Newly labelled samples (beyond the champion's training set) that start a retraining."""
    return int(os.getenv("TRACSEQ_RETRAIN_MIN_NEW_LABELS", "1000"))


def retrain_drift_cooldown_hours() -> float:
    """Least time between two retrainings started by drift."""
    return float(os.getenv("TRACSEQ_RETRAIN_DRIFT_COOLDOWN_H", "24"))


def retrain_cron() -> str:
    """When the retraining schedule sweeps every family (cron, UTC): Sundays at 03:00 by default."""
    return os.getenv("TRACSEQ_RETRAIN_CRON", "0 3 * * 0")


def retrain_families() -> tuple[str, ...] | None:
    """Model families a retraining sweeps (comma-separated); None: all of them."""
    value = os.getenv("TRACSEQ_RETRAIN_FAMILIES", "")
    return tuple(f.strip() for f in value.split(",") if f.strip()) or None
def documents_url() -> str:
    """Landing folder for lab documents (PDF, DOCX, HTML, Markdown, text): a path or fsspec URL."""
    return os.getenv("TRACSEQ_DOCUMENTS_URL", str(data_dir() / "documents"))


def lancedb_dir() -> str:
    """The embedded LanceDB database of document chunks (a folder, or s3://… for LanceDB on object storage)."""
    return os.getenv("TRACSEQ_LANCEDB_DIR", str(data_dir() / "lancedb"))


def embedder() -> str:
    """``minilm`` (offline all-MiniLM-L6-v2) or ``ollama:<model>``, e.g. ``ollama:nomic-embed-text``."""
    return os.getenv("TRACSEQ_EMBEDDER", "minilm")


def ollama_host() -> str:
    """Ollama's own variable, OLLAMA_HOST, else its default address."""
    from tracseq_dagster.documents.llm import default_host

    return default_host()


def ollama_model() -> str:
    return os.getenv("TRACSEQ_OLLAMA_MODEL", "llama3.2:3b")


def ollama_timeout_s() -> float:
    return float(os.getenv("TRACSEQ_OLLAMA_TIMEOUT_S", "120"))
