"""Outages and a worker kill under load: the numbers of BENCHMARKS.md's "Reliability" section.

Runs the slow tests that take each dependency away from a served Bento under a steady load
(tests/test_serving_degraded.py: Redis killed and restarted, the prediction log's PostgreSQL
behind a proxy closed and reopened, MLflow unreachable; tests/test_document_qa_degraded.py:
Ollama behind a proxy; tests/test_serving_worker_kill.py: SIGKILL of one of two workers at
50 requests per second), and prints the line each test measured: how long the dependency was
down, requests answered and errors during the outage, log rows kept and dropped, and the time
from the kill to the replacement worker. The tests assert the behaviour; this only collects.

Usage: python benchmarks/reliability_outages.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_serving_degraded.py", "tests/test_document_qa_degraded.py", "tests/test_serving_worker_kill.py"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of every scenario")
    args = parser.parse_args()
    env = {**os.environ, "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "False", "DAGSTER_DISABLE_TELEMETRY": "1"}
    failed = False
    for run in range(1, args.repeat + 1):
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pytest", *TESTS, "-q", "-s", "-p", "no:cacheprovider"],
                                cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
        lines = [line.removeprefix("RELIABILITY ") for line in result.stdout.splitlines() if line.startswith("RELIABILITY ")]
        print(f"run {run} ({time.monotonic() - started:.0f} s, pytest exit {result.returncode}):")
        for line in lines:
            print(f"- {line}")
        if result.returncode != 0:
            failed = True
            print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
