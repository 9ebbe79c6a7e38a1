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
