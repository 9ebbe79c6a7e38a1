"""What the prediction Bento's environment must not hold, and how its build prunes it (issue 20).

One list for tests/test_serving_bento_requirements.py and benchmarks/serving_env.py (which imports this
module through the tests folder, as it imports catalog_support).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The Bento's setup_script (bentofile.yaml ``docker.setup_script``): run in the image after the lock is installed.
PRUNE_SCRIPT = ROOT / "bentos" / "predictions" / "prune_env.sh"

#: Distributions the prediction service's environment must not contain (issue 20), as the lock spells them.
FORBIDDEN = (
    "torch",
    "transformers",
    "spacy",
    "unstructured",
    "playwright",
    "schemathesis",
    "flaml",
    "dagster",
    "feast",
    "mlflow",
)
#: The same as the modules they are imported as, and what else must never load in the service: the
#: documents pipeline's embedder and vector store, Great Expectations, and Optuna (the pickled models'
#: classes load without the AutoML engine).
FORBIDDEN_MODULES = (
    *FORBIDDEN,
    "sentence_transformers",
    "lancedb",
    "great_expectations",
    "optuna",
)


def pruned_copy(dest: Path, site_packages: Path | None = None) -> Path:
    """A virtual environment at ``dest`` whose site-packages is a hard-linked copy of ``site_packages`` (default:
    this interpreter's), pruned by the Bento's setup_script. Hard links: no data is copied, and removing a link
    in the copy leaves the original untouched. Returns the copy's python; raises if the script fails (it
    checks the service's imports itself)."""
    source = site_packages or Path(sysconfig.get_paths()["purelib"])
    base = Path(getattr(sys, "_base_executable", sys.executable))
    subprocess.run([str(base), "-m", "venv", "--without-pip", "--symlinks", str(dest)], check=True)
    python = dest / "bin" / "python"
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    shutil.rmtree(target)
    linked = subprocess.run(["cp", "-al", str(source), str(target)], capture_output=True, text=True)
    if linked.returncode != 0:  # another filesystem than the venv's (no hard links there): a real copy, slower
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(dest), "DO_NOT_TRACK": "1"}
    pruned = subprocess.run([str(PRUNE_SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    if pruned.returncode != 0:
        raise RuntimeError(f"{PRUNE_SCRIPT.name} failed on {target}:\n{pruned.stdout[-2000:]}{pruned.stderr[-4000:]}")
    return python
