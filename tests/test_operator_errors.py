"""An operator's mistake gives one line saying what is wrong and how to fix it, exit code 2.

Each case runs the real ``tracseq`` command (the installed console script) in its own
process, with one setting wrong and the others pointing at a clean temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.processes import free_port

TRACSEQ = str(Path(sys.executable).with_name("tracseq"))
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
#: Root writes anywhere whatever the modes: the unwritable cases run without the capabilities that allow it.
WITHOUT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"] if AS_ROOT else []


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A folder with a data folder, a landing folder and a HOME."""
    for name in ("data", "landing", "home"):
        (tmp_path / name).mkdir()
    return tmp_path


def run_cli(
    args: list[str], world: Path, *, unprivileged: bool = False, timeout_s: float = 120, **env: str
) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACSEQ_", "MLFLOW_", "DAGSTER_HOME", "BENTOML_", "PYTEST", "COV_"))
    }
    full = {
        **base,
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "TRACSEQ_DATA_DIR": str(world / "data"),
        "HOME": str(world / "home"),
        "COLUMNS": "80",
        **env,
    }
    full = {k: v for k, v in full.items() if v != "<unset>"}
    prefix = WITHOUT_OVERRIDE if unprivileged else []
    return subprocess.run([*prefix, TRACSEQ, *args], env=full, cwd=world, capture_output=True, text=True, timeout=timeout_s)


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, nothing but one line on stderr naming every one of ``names``, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output and "╭" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert not result.stdout.strip(), output
    line = lines[0]
    assert line.startswith("error: "), line
    for name in names:
        assert name in line, line
    return line


needs_setpriv = pytest.mark.skipif(
    AS_ROOT and shutil.which("setpriv") is None, reason="root needs setpriv to meet an unwritable folder"
)


def make_unwritable(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    path.chmod(0o555)
    return path


# -- DAGSTER_HOME --------------------------------------------------------------------------------
def test_dagster_home_that_does_not_exist(world: Path) -> None:
    missing = world / "no-such-home"
    line = assert_one_line_error(
        run_cli(["ingest", str(world / "landing")], world, DAGSTER_HOME=str(missing)), "DAGSTER_HOME", str(missing)
    )
    assert "does not exist" in line and "unset DAGSTER_HOME" in line


@needs_setpriv
def test_dagster_home_that_cannot_be_written(world: Path) -> None:
    home = make_unwritable(world / "readonly-home")
    line = assert_one_line_error(
        run_cli(["ingest", str(world / "landing")], world, unprivileged=True, DAGSTER_HOME=str(home)), "DAGSTER_HOME", str(home)
    )
    assert "not writable" in line


def test_dagster_home_with_a_relative_path(world: Path) -> None:
    line = assert_one_line_error(run_cli(["ingest", str(world / "landing")], world, DAGSTER_HOME="home"), "DAGSTER_HOME=home")
    assert "absolute" in line


# -- data and LanceDB folders -----------------------------------------------------------------------
def test_data_folder_that_does_not_exist(world: Path) -> None:
    missing = world / "typo" / "data"
    line = assert_one_line_error(
        run_cli(["ingest", str(world / "landing")], world, TRACSEQ_DATA_DIR=str(missing)), "TRACSEQ_DATA_DIR", str(missing)
    )
    assert f"mkdir -p {missing}" in line


@needs_setpriv
def test_data_folder_that_cannot_be_written(world: Path) -> None:
    data = make_unwritable(world / "readonly-data")
    line = assert_one_line_error(
        run_cli(["ingest", str(world / "landing")], world, unprivileged=True, TRACSEQ_DATA_DIR=str(data)),
        "TRACSEQ_DATA_DIR",
        str(data),
    )
    assert "not writable" in line


def test_data_folder_that_is_a_file(world: Path) -> None:
    file = world / "data.txt"
    file.write_text("not a folder")
    line = assert_one_line_error(
        run_cli(["ingest", str(world / "landing")], world, TRACSEQ_DATA_DIR=str(file)), "TRACSEQ_DATA_DIR"
    )
    assert "is a file" in line


def test_lancedb_folder_that_does_not_exist(world: Path) -> None:
    missing = world / "typo" / "lancedb"
    assert_one_line_error(
        run_cli(["ask", "--no-generate", "How long may RNA stay at room temperature?"], world, TRACSEQ_LANCEDB_DIR=str(missing)),
        "TRACSEQ_LANCEDB_DIR",
        str(missing),
    )


@needs_setpriv
def test_lancedb_folder_that_cannot_be_written(world: Path) -> None:
    lancedb = make_unwritable(world / "readonly-lancedb")
    documents = world / "documents"
    documents.mkdir()
    documents.chmod(0o755)
    line = assert_one_line_error(
        run_cli(["documents", "ingest", str(documents)], world, unprivileged=True, TRACSEQ_LANCEDB_DIR=str(lancedb)),
        "TRACSEQ_LANCEDB_DIR",
        str(lancedb),
    )
    assert "not writable" in line


def test_lancedb_option_that_does_not_exist(world: Path) -> None:
    missing = world / "typo" / "lancedb"
    assert_one_line_error(run_cli(["ask", "--no-generate", "--lancedb", str(missing), "RNA?"], world), "--lancedb", str(missing))


# -- malformed variables -----------------------------------------------------------------------------
def test_challenger_share_above_one(world: Path) -> None:
    line = assert_one_line_error(
        run_cli(["bento", "serve"], world, TRACSEQ_CHALLENGER_SHARE="1.5"), "TRACSEQ_CHALLENGER_SHARE=1.5"
    )
    assert "from 0 to 1" in line


def test_chunk_rows_that_is_not_a_number(world: Path) -> None:
    line = assert_one_line_error(
        run_cli(["ingest", str(world / "landing")], world, TRACSEQ_CHUNK_ROWS="abc"), "TRACSEQ_CHUNK_ROWS", "'abc'"
    )
    assert "whole number" in line


def test_url_whose_port_is_not_a_number(world: Path) -> None:
    line = assert_one_line_error(
        run_cli(["ingest", str(world / "landing")], world, TRACSEQ_REDIS_URL="redis://:s3cret@localhost:63x79/0"),
        "TRACSEQ_REDIS_URL",
        "63x79",
    )
    assert "s3cret" not in line  # a password in a URL stays out of the message
    assert "redis://host:6379/0" in line


def test_port_that_is_not_a_number(world: Path) -> None:
    assert_one_line_error(run_cli(["bento", "serve", "--port", "30o0"], world), "--port", "'30o0'", "1 to 65535")


def test_bento_workers_that_is_not_a_number(world: Path) -> None:
    assert_one_line_error(run_cli(["bento", "serve"], world, TRACSEQ_BENTO_WORKERS="two"), "TRACSEQ_BENTO_WORKERS", "'two'")


# -- things that do not exist or do not answer -------------------------------------------------------
def test_bento_tag_that_does_not_exist(world: Path) -> None:
    line = assert_one_line_error(
        run_cli(["bento", "serve", "--tag", "tracseq_predictions:nosuchbuild"], world), "tracseq_predictions:nosuchbuild"
    )
    assert "does not exist" in line and "tracseq bento build" in line


def test_mlflow_server_that_cannot_be_reached(world: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run_cli(["model", "history", "--model", "sample_quality"], world, MLFLOW_TRACKING_URI=uri)
    seconds = time.monotonic() - started
    line = assert_one_line_error(result, "MLFLOW_TRACKING_URI", uri)
    assert "cannot be reached" in line
    assert seconds < 30, f"took {seconds:.0f} s: MLflow's client retries must not run"


def test_mlflow_uri_where_something_else_listens(world: Path) -> None:
    """A port that accepts connections but closes them unanswered: MLflow's client fails, in one line, in seconds."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        started = time.monotonic()
        result = run_cli(["model", "history", "--model", "sample_quality"], world, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
        seconds = time.monotonic() - started
    finally:
        server.close()
    line = assert_one_line_error(result, "MLFLOW_TRACKING_URI", str(port))
    assert "does not answer" in line
    assert seconds < 60, f"took {seconds:.0f} s"
