"""The prediction Bento's environment is the serving lock, and the service needs nothing heavier.

Built for real (``build_catalog_bento``, what ``tracseq bento build`` calls) into a BentoML store of
the test's own; the service loaded for real with fitted catalog models, in a fresh interpreter, to
see which modules it imports. benchmarks/serving_env.py goes further (a fresh venv with only the
serving lock, ``bentoml serve``, predictions over HTTP) and measures the sizes.

The Bento's setup_script (``bentos/predictions/prune_env.sh``) prunes that environment in the image; it is
run here on a hard-linked copy of this venv, and the service must still load its models and answer there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from catalog_support import generated_lab, pack, records_of
from serving_env_support import FORBIDDEN, FORBIDDEN_MODULES, PRUNE_SCRIPT, pruned_copy

from tracseq_dagster.features import compute_features
from tracseq_dagster.models import get_model, turnaround_hours
from tracseq_dagster.models.sample_quality import labelled_rows_from_features
from tracseq_dagster.serving.catalog_schema import request_columns

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


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
    # ... and then runs the prune script (bentofile.yaml docker.setup_script), after the install, before the
    # Bento's files are copied in; the script in the build context is ours, unchanged.
    lines = dockerfile.splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    prune = next(i for i, line in enumerate(lines) if line.startswith("RUN") and "./env/docker/script__" in line)
    copy_all = next(i for i, line in enumerate(lines) if line.startswith("COPY") and " . ./" in line)
    assert install < prune < copy_all
    copied = bento / "env" / "docker" / lines[prune].rsplit("./env/docker/", 1)[1].strip()
    assert copied.read_text() == PRUNE_SCRIPT.read_text() and os.access(copied, os.X_OK)


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


SERVE_PRUNED = """
import json, sys
from pathlib import Path
import bentos.predictions.service
from tracseq_dagster.serving.catalog_predictor import ServedCatalog
from tracseq_dagster.serving.catalog_schema import request_model
catalog = ServedCatalog(Path(sys.argv[1]))
posted = json.loads(sys.stdin.read())  # as a LIMS posts them, validated as the service validates them
answers = {name: [a.response.get("probability", a.response.get("prediction"))
                  for a in predictor.predict([request_model(name).model_validate(r).model_dump() for r in posted[name]])]
           for name, predictor in catalog.models.items()}
print(json.dumps({"answers": answers, "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def test_the_pruned_environment_still_loads_the_models_and_answers(bundle: Path, tmp_path: Path) -> None:
    """The setup_script on a hard-linked copy of this venv (its own import check must pass), then the service,
    its models and one prediction per model in that copy."""
    python = pruned_copy(tmp_path / "pruned")
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    original = Path(next(p for p in sys.path if p.endswith("site-packages")))
    for pruned in ("pandas/tests", "numpy/_core/tests", "pyarrow/libarrow_flight.so*", "numpy/distutils", "numba/cuda"):
        assert list(original.glob(pruned)), pruned  # the rule still finds something to remove in this lock
        assert not list(site.glob(pruned)), pruned
    samples, _ = generated_lab(40, seed=8)
    requests = {
        name: records_of(samples, request_columns(get_model(name)))[-3:] for name in ("sample_quality", "turnaround_hours")
    }
    env = {**os.environ, "DO_NOT_TRACK": "1", "TRACSEQ_DATA_DIR": str(tmp_path), "BENTOML_HOME": str(tmp_path / "bentoml")}
    served = subprocess.run([str(python), "-c", SERVE_PRUNED, str(bundle)], input=json.dumps(requests), env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert served.returncode == 0, served.stderr[-4000:]
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    assert sorted(answer["answers"]) == ["sample_quality", "turnaround_hours"]
    for name, values in answer["answers"].items():
        assert len(values) == 3 and all(isinstance(v, float) for v in values), (name, values)
    assert {"bentoml", "lightgbm", "sklearn", "pyarrow"} <= set(answer["modules"])
    assert set(answer["modules"]) & set(FORBIDDEN_MODULES) == set()
