"""The prediction Bento's environment, measured: is ``requirements/serving.txt`` enough, and how big is it?

Steps (each reuses the previous one's output under ``--out``):

1. ``bundle``: a bundle with every catalog model (sample_quality through a real MLflow registry, the
   run models fitted quickly the way the serving tests pack them), with lightgbm, xgboost and logistic
   models, so that unpickling them imports what a real Bento's models import.
2. ``bento``: the bundle into a BentoML store and ``bentoml build`` of ``bentos/predictions/bentofile.yaml``;
   the size of the Bento (what ``bentoml containerize`` sends as its build context) and its requirements.
3. ``venv``: a fresh virtual environment with ``pip install -r requirements/serving.txt`` only; its size.
   ``bento-venv``: the same lock the way the Bento's own Dockerfile installs it (uv, bytecode compiled),
   then the Dockerfile's post-install steps (the Bento's setup_script, ``bentos/predictions/prune_env.sh``,
   run from the built Bento as the image runs it); the size and the per-package table before and after.
4. ``serve``: in the Bento's environment (``bento-venv``; the pip one when that step was not run), which
   modules loading the service and its models imports (none of the heavy ones may be among them), then
   ``bentoml serve`` of the built Bento, ``/readyz`` and one prediction per model over HTTP.

Run from the repository root with the project's venv: ``.venv/bin/python benchmarks/serving_env.py``.
Steps 1-2 run in the project's venv; 3-4 in the fresh one. Sizes are ``du`` of the folders.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVING_LOCK = ROOT / "requirements" / "serving.txt"
sys.path.insert(0, str(ROOT / "tests"))
from serving_env_support import FORBIDDEN_MODULES  # noqa: E402  (one list with tests/test_serving_bento_requirements.py)


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def per_package(venv: Path) -> dict[str, dict[str, float]]:
    """MB per installed distribution (files its RECORD lists, plus the bytecode compiled from them), and of that
    how much is bytecode and how much sits in test folders (``tests``/``test``)."""
    site = next((venv / "lib").glob("python*/site-packages"))
    script = (
        "import json, os, sys\n"
        "from importlib import metadata\n"
        "site = sys.argv[1]; owner = {}\n"
        "for dist in metadata.distributions(path=[site]):\n"
        "    for f in dist.files or []:\n"
        "        owner[os.path.realpath(os.path.join(site, str(f)))] = dist.metadata['Name']\n"
        "table = {}\n"
        "for root, dirs, files in os.walk(site):\n"
        "    for name in files:\n"
        "        path = os.path.join(root, name); size = os.lstat(path).st_size\n"
        "        pyc = os.path.basename(root) == '__pycache__'\n"
        "        key = owner.get(os.path.realpath(path))\n"
        "        if key is None and pyc:\n"
        "            key = owner.get(os.path.realpath(os.path.join(os.path.dirname(root), name.split('.')[0] + '.py')))\n"
        "        row = table.setdefault(key or '(unowned)', {'mb': 0, 'bytecode_mb': 0, 'tests_mb': 0})\n"
        "        row['mb'] += size; row['bytecode_mb'] += size if pyc else 0\n"
        "        parts = os.path.relpath(root, site).split(os.sep)\n"
        "        row['tests_mb'] += size if ('tests' in parts or 'test' in parts) else 0\n"
        "print(json.dumps({k: {f: round(v / 2**20, 1) for f, v in row.items()} for k, row in table.items()}))\n"
    )
    found = subprocess.run([sys.executable, "-c", script, str(site)], capture_output=True, text=True, check=True).stdout
    return dict(sorted(json.loads(found).items(), key=lambda item: -item[1]["mb"]))


def markdown_table(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], top: int = 15) -> str:
    rows = ["| package | installed MB (bytecode, tests) | after the setup_script MB |", "|---|---|---|"]
    for name, row in list(before.items())[:top]:
        rows.append(f"| {name} | {row['mb']} ({row['bytecode_mb']}, {row['tests_mb']}) | {after.get(name, {}).get('mb', 0.0)} |")
    rest = [name for name in before if name not in dict(list(before.items())[:top])]
    rows.append(f"| {len(rest)} others | {round(sum(before[n]['mb'] for n in rest), 1)} | "
                f"{round(sum(after.get(n, {}).get('mb', 0.0) for n in rest), 1)} |")  # fmt: skip
    return "\n".join(rows)


def make_bundle(out: Path) -> Path:
    """sample_quality from a real (SQLite) MLflow registry at the root; the catalog's models under models/."""
    from catalog_support import generated_lab, pack
    from serving_support import trained_registry

    from tracseq_dagster.features import compute_features
    from tracseq_dagster.models import sequencing_success, turnaround_hours
    from tracseq_dagster.models.sample_quality import labelled_rows_from_features
    from tracseq_dagster.serving.bundle import export_bundle

    bundle = out / "bundle"
    trained = trained_registry(out / "registry", rows=2000)
    trained.train("lightgbm", "run-1")
    export_bundle(trained.registry, trained.samples, trained.features, bundle)
    samples, runs = generated_lab(2000, seed=21)
    features = compute_features(samples, samples, as_of=None).reset_index()
    pack(bundle, "sample_quality", labelled_rows_from_features(features), samples, None, ("lightgbm", "logistic"))
    pack(bundle, "sequencing_success", sequencing_success.labelled_rows_from_exports(samples, runs), samples, runs, ("xgboost",))
    pack(bundle, "turnaround_hours", turnaround_hours.labelled_rows_from_exports(samples, runs), samples, runs, ("lightgbm",))
    return bundle


def build_bento(out: Path, bundle: Path) -> dict[str, object]:
    """The Bento as ``tracseq bento build`` makes it (BENTOML_HOME is read when bentoml is imported: a subprocess)."""
    script = (
        "import json, sys; from pathlib import Path\n"
        "from tracseq_dagster.serving.bento_build import build_catalog_bento\n"
        "from tracseq_dagster.serving.bundle import BundleInfo, ModelCard\n"
        "from tracseq_dagster.serving.catalog_bundle import CatalogBundle, ModelBundleInfo\n"
        "folder = Path(sys.argv[1]); raw = json.loads((folder / 'bundle.json').read_text())\n"
        "cards = {k: ModelCard(**raw[k]) if raw[k] else None for k in ('champion', 'challenger')}\n"
        "packed = {p.name: ModelBundleInfo.load(p / 'bundle.json') for p in (folder / 'models').iterdir() if (p / 'bundle.json').exists()}\n"
        "bento = build_catalog_bento(folder, BundleInfo(**{**raw, **cards}), CatalogBundle(served=packed))\n"
        # The build context `bentoml containerize` would send to Docker: the Bento plus its models, as
        # BentoML itself assembles it (no Docker engine is needed for that part).
        "from bentoml._internal.container import construct_containerfile\n"
        "import subprocess\n"
        "with construct_containerfile(bento) as (context, dockerfile):\n"
        "    context_kb = int(subprocess.run(['du', '-sk', context], capture_output=True, text=True).stdout.split()[0])\n"
        "print(json.dumps({'tag': str(bento.tag), 'path': bento.path, 'context_kb': context_kb}))\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(out / "bentoml"), "DO_NOT_TRACK": "1"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script, str(bundle)], env=env, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(result.stdout + result.stderr)
    built = json.loads(result.stdout.strip().splitlines()[-1])
    bento_dir = Path(built["path"])
    model_dirs = [p for p in (out / "bentoml" / "models").rglob("model.yaml")]
    return {
        "bento_tag": built["tag"],
        "bento_dir": str(bento_dir),
        "build_s": round(time.perf_counter() - started, 1),
        "bento_mb": round(du_mb(bento_dir), 2),
        "bento_src_mb": round(du_mb(bento_dir / "src"), 2),
        "models_mb": round(sum(du_mb(p.parent) for p in model_dirs), 2),
        "containerize_context_mb": round(built["context_kb"] / 1024, 2),
        "requirements": (bento_dir / "env" / "python" / "requirements.txt").read_text().splitlines(),
    }


def make_venv(out: Path) -> dict[str, object]:
    venv = out / "serving-venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "pip==25.3"], check=True)
    subprocess.run([*pip, "install", "-r", str(SERVING_LOCK)], check=True)
    wall = time.perf_counter() - started
    freeze = subprocess.run([*pip, "freeze", "--all"], capture_output=True, text=True, check=True).stdout.split()
    return {"venv": str(venv), "install_s": round(wall, 1), "venv_mb": round(du_mb(venv), 1), "packages": len(freeze)}


def post_install_commands(bento_dir: Path) -> list[str]:
    """The ``RUN`` steps the Bento's Dockerfile runs after installing the lock and before copying the Bento in:
    the setup_script (bentofile.yaml ``docker.setup_script``)."""
    lines = (bento_dir / "env" / "docker" / "Dockerfile").read_text().splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    copy_all = next(i for i, line in enumerate(lines) if line.startswith("COPY") and " . ./" in line)
    return [line.removeprefix("RUN ").strip() for line in lines[install + 1 : copy_all] if line.startswith("RUN ")]


def make_bento_venv(out: Path, facts: dict[str, object]) -> dict[str, object]:
    """The environment as the Bento's generated Dockerfile makes it: ``uv venv`` (no pip, no setuptools), then
    ``uv pip install -r requirements.txt`` with ``UV_COMPILE_BYTECODE=1``, then its post-install ``RUN`` steps
    (the setup_script), from the Bento's folder as the image's WORKDIR. Needs uv (``pip install uv``)."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        return {"bento_venv": "skipped: no uv (pip install uv)"}
    venv = out / "bento-venv"
    started = time.perf_counter()
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([uv, "venv", "--quiet", "--python", str(python), str(venv)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "UV_COMPILE_BYTECODE": "1", "UV_NO_PROGRESS": "1",
           "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}  # fmt: skip
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-r", str(SERVING_LOCK)],
                   env=env, check=True)  # fmt: skip
    installed_s = time.perf_counter() - started
    installed_mb, before = du_mb(venv), per_package(venv)
    bento_dir = Path(str(facts["bento_dir"]))
    commands = post_install_commands(bento_dir)
    started = time.perf_counter()
    for command in commands:
        ran = subprocess.run(["bash", "-c", command], cwd=bento_dir, env=env, capture_output=True, text=True)
        if ran.returncode != 0:
            raise SystemExit(f"{command} failed:\n{ran.stdout[-2000:]}{ran.stderr[-4000:]}")
    after = per_package(venv)
    return {"bento_venv": str(venv), "bento_venv_install_s": round(installed_s, 1),
            "bento_venv_installed_mb": round(installed_mb, 1), "post_install_commands": commands,
            "post_install_s": round(time.perf_counter() - started, 1), "bento_venv_mb": round(du_mb(venv), 1),
            "bento_venv_packages": {"installed": before, "after_setup_script": after},
            "bento_venv_table": markdown_table(before, after)}  # fmt: skip


LOAD_AND_TRACE = """
import json, os, sys
from collections.abc import Callable
from pathlib import Path
sys.path.insert(0, os.getcwd())
import bentos.predictions.service as service
from tracseq_dagster.serving.catalog_predictor import ServedCatalog
from tracseq_dagster.serving.predictor import SampleQualityPredictor
from tracseq_dagster.serving.traffic_split import TrafficSplit
bundle = Path(sys.argv[1])
SampleQualityPredictor(bundle, TrafficSplit(0.0, "s"), "tree_path")
catalog = ServedCatalog(bundle, TrafficSplit(0.0, "s"), "tree_path")
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def serve_and_call(out: Path, facts: dict[str, object]) -> dict[str, object]:
    bento_venv = Path(str(facts.get("bento_venv", "")))
    venv = bento_venv if (bento_venv / "bin" / "bentoml").exists() else Path(str(facts["venv"]))
    bento_dir = Path(str(facts["bento_dir"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env.update({"BENTOML_HOME": str(out / "bentoml"), "DO_NOT_TRACK": "1", "TRACSEQ_DATA_DIR": str(out / "data"),
                "TRACSEQ_BENTO_WORKERS": "1", "PATH": f"{venv / 'bin'}:{env['PATH']}"})  # fmt: skip
    env.pop("TRACSEQ_REDIS_URL", None)
    env.pop("TRACSEQ_PREDICTION_LOG", None)
    models_root = next(p.parent for p in (out / "bentoml" / "models").rglob("bundle.json") if p.parent.name != "models")
    loaded = subprocess.run([str(venv / "bin" / "python"), "-c", LOAD_AND_TRACE, str(models_root)], cwd=bento_dir / "src",
                            env=env, capture_output=True, text=True)  # fmt: skip
    if loaded.returncode != 0:
        raise SystemExit(loaded.stdout + loaded.stderr)
    modules = json.loads(loaded.stdout.strip().splitlines()[-1])
    heavy = sorted(set(modules) & set(FORBIDDEN_MODULES))

    port = 3000 + os.getpid() % 2000
    log = (out / "serve.log").open("w")
    server = subprocess.Popen([str(venv / "bin" / "bentoml"), "serve", str(facts["bento_tag"]), "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, object] = {}
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
                    answers["readyz"] = [response.status, json.loads(response.read())]
                    ready_s = time.monotonic() - started
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bentoml serve did not become ready: {(out / 'serve.log').read_text()[-3000:]}") from None
                time.sleep(1)
        from catalog_support import generated_lab, records_of

        from tracseq_dagster.models import get_model
        from tracseq_dagster.serving.catalog_schema import request_columns

        samples, runs = generated_lab(50, seed=99)
        # turnaround_hours is asked about a sample alone (before its first run), as the serving tests ask it.
        frames = {"sample_quality": samples, "sequencing_success": runs.merge(samples, on="sample_id"),
                  "turnaround_hours": samples}  # fmt: skip
        for name, frame in frames.items():
            record = records_of(frame, request_columns(get_model(name)))[-1]  # the latest: no run has ended yet
            request = urllib.request.Request(f"{base}/models/{name}/predict", data=json.dumps(record).encode(),
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answers[name] = [response.status, json.loads(response.read())]
            except urllib.error.HTTPError as error:
                answers[name] = [error.code, error.read().decode()[:500]]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    return {"served_from": str(venv), "forbidden_imported": heavy, "modules_imported": len(modules),
            "ready_s": round(ready_s, 1), "answers": answers}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/tracseq-serving-env"))
    parser.add_argument("steps", nargs="*", default=["bundle", "bento", "venv", "bento-venv", "serve"])
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    facts_file = out / "facts.json"
    facts: dict[str, object] = json.loads(facts_file.read_text()) if facts_file.exists() else {}
    steps: dict[str, Callable[[], dict[str, object]]] = {
        "bundle": lambda: {"bundle": str(make_bundle(out))},
        "bento": lambda: build_bento(out, Path(str(facts["bundle"]))),
        "venv": lambda: make_venv(out),
        "bento-venv": lambda: make_bento_venv(out, facts),
        "serve": lambda: serve_and_call(out, facts),
    }
    facts.setdefault("venv", str(out / "serving-venv"))
    for step in args.steps:
        facts.update(steps[step]())
        facts_file.write_text(json.dumps(facts, indent=2))  # after each step: a later one can be re-run alone
    shown = {k: v for k, v in facts.items() if k not in ("requirements", "bento_venv_packages", "bento_venv_table")}
    print(json.dumps(shown, indent=2))
    if "bento_venv_table" in facts:
        print(facts["bento_venv_table"])


if __name__ == "__main__":
    main()
