"""The prediction Bento's environment is the serving lock, and the service needs nothing heavier.

Built for real (``build_catalog_bento``, what ``tracseq bento build`` calls) into a BentoML store of
the test's own; the service loaded for real with fitted catalog models, in a fresh interpreter, to
see which modules it imports. benchmarks/serving_env.py goes further (a fresh venv with only the
serving lock, ``bentoml serve``, predictions over HTTP) and measures the sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from catalog_support import generated_lab, pack

from tracseq_dagster.features import compute_features
from tracseq_dagster.models import turnaround_hours
from tracseq_dagster.models.sample_quality import labelled_rows_from_features

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
#: Issue 20: none of these in the prediction service's environment (distribution names).
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
#: The same as the modules they are imported as, and Optuna (the pickled models' classes load without the AutoML engine).
FORBIDDEN_MODULES = ("torch", "transformers", "spacy", "unstructured", "playwright", "schemathesis", "flaml", "dagster", "feast",
                     "mlflow", "sentence_transformers", "lancedb", "great_expectations",
                     "optuna")  # fmt: skip


def pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two catalog models (logistic and LightGBM), packed as the Bento packs them."""
    samples, runs = generated_lab(600, seed=5)
    folder = tmp_path_factory.mktemp("bento-env") / "bundle"
    features = compute_features(samples, samples, as_of=None).reset_index()
    pack(folder, "sample_quality", labelled_rows_from_features(features), samples, None, ("logistic",))
    pack(folder, "turnaround_hours", turnaround_hours.labelled_rows_from_exports(samples, runs), samples, runs, ("lightgbm",))
    return folder


def test_the_built_bento_installs_exactly_the_serving_lock(bundle: Path, tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from tracseq_dagster.serving.bento_build import build_catalog_bento\n"
        "from tracseq_dagster.serving.catalog_bundle import CatalogBundle, ModelBundleInfo\n"
        "folder = Path(sys.argv[1])\n"
        "packed = {p.name: ModelBundleInfo.load(p / 'bundle.json') for p in (folder / 'models').iterdir() if p.is_dir()}\n"
        "print(build_catalog_bento(folder, None, CatalogBundle(served=packed)).path)\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "DO_NOT_TRACK": "1", "TRACSEQ_DATA_DIR": str(tmp_path)}
    built = subprocess.run([sys.executable, "-c", script, str(bundle)], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    bento = Path(built.stdout.strip().splitlines()[-1])
    installed = pins((bento / "env" / "python" / "requirements.txt").read_text())
    serving = pins((ROOT / "requirements" / "serving.txt").read_text())
    assert installed == serving  # every serving pin, at its version, and nothing else
    assert not [name for name in installed if name in FORBIDDEN or name.startswith("nvidia-cu")]
    assert "bentoml" in installed and "lightgbm" in installed
    # The image BentoML would build installs that file (no other requirements, no torch index).
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile
    assert "torch" not in dockerfile and "download.pytorch.org" not in dockerfile


LOAD = """
import json, sys
from pathlib import Path
import bentos.predictions.service
from tracseq_dagster.serving.catalog_predictor import ServedCatalog
catalog = ServedCatalog(Path(sys.argv[1]))
print(json.dumps({"served": sorted(catalog.models), "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def test_loading_the_service_and_its_models_imports_none_of_the_heavy_packages(bundle: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DO_NOT_TRACK": "1", "TRACSEQ_DATA_DIR": str(tmp_path), "BENTOML_HOME": str(tmp_path / "bentoml")}
    loaded = subprocess.run([sys.executable, "-c", LOAD, str(bundle)], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert answer["served"] == ["sample_quality", "turnaround_hours"]
    modules = set(answer["modules"])
    assert {"bentoml", "lightgbm", "sklearn"} <= modules  # the models were really unpickled
    assert modules & set(FORBIDDEN_MODULES) == set()
