"""`tracseq --version` names the installed distribution's version; the package ships its type hints (PEP 561)."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from importlib.metadata import version
from pathlib import Path

TRACSEQ = Path(sys.executable).with_name("tracseq")


def test_version_is_the_installed_distributions() -> None:
    result = subprocess.run([str(TRACSEQ), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tracseq {version('tracseq-dagster')}"


def test_the_package_is_marked_typed() -> None:
    assert resources.files("tracseq_dagster").joinpath("py.typed").is_file()
