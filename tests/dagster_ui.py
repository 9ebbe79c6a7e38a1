"""A real dagster-webserver on the project's workspace, and a headless Chromium to look at it.

Support for the browser test of the operator's view (tests/test_ui_browser.py). Chromium
is Debian's (`make system-deps`), driven by Playwright's Python package: nothing is
downloaded at run time (no `playwright install`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from processes import free_port, stop, wait_until_ready

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.getenv("TRACSEQ_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium dials out (component updates, sync,
# QUIC probes) and this closed network refuses it; --no-sandbox because tests run as root.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def artifacts_dir(test_name: str) -> Path:
    """Where a test's screenshots go: $TRACSEQ_TEST_ARTIFACTS or test-artifacts/ (gitignored)."""
    folder = Path(os.getenv("TRACSEQ_TEST_ARTIFACTS", REPO / "test-artifacts")) / test_name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_instance_config(home: Path) -> None:
    """The production dagster.yaml (PostgreSQL storage, pools, retention), with runs launched at once.

    Production queues runs (QueuedRunCoordinator) and the daemon dequeues them. Here the
    webserver launches a run itself, as a subprocess of the code location (the default
    coordinator and launcher), so no daemon is needed; without a daemon no sensor or
    automation starts a run of its own either, and the only run is the one clicked in the UI.
    """
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


@dataclass
class Webserver:
    url: str
    log: Path


@contextmanager
def dagster_webserver(env: dict[str, str], log: Path) -> Iterator[Webserver]:
    """`dagster-webserver` on the project's workspace.yaml on a free loopback port."""
    port = free_port()
    binary = Path(sys.executable).parent / "dagster-webserver"
    command = [str(binary), "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")]
    with log.open("w") as out:
        # a session of its own, so that stop() also ends the code server it starts
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/server_info", log, timeout_s=180)
        yield Webserver(url, log)
    finally:
        stop(process)


@contextmanager
def chromium_page(profile_dir: Path, viewport: tuple[int, int] = (1600, 1000)):  # type: ignore[no-untyped-def]
    """A Playwright page in Debian's headless Chromium with a fresh profile (a persistent context owns the dir)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
