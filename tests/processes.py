"""Real server processes for end-to-end tests: a free port, and waiting until one answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(process: subprocess.Popen, url: str, log: Path, timeout_s: float = 120.0) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{url} did not come up:\n" + log.read_text()[-4000:])
        time.sleep(0.5)


def stop(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Terminate ``process``; when it leads a session of its own, also kill what it left in that session.

    A ``dagster-webserver`` starts a ``dagster api grpc`` code server; if the webserver exits before
    shutting it down, the code server outlives the test suite unless its process group is killed.
    """
    leads_its_group = _leads_its_group(process)
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if leads_its_group:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing was left behind


def _leads_its_group(process: subprocess.Popen) -> bool:
    try:
        return os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return False
