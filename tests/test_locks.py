"""The locks per role (requirements/*.txt): consistent, current, and the serving one lean.

scripts/locks.py derives them from pyproject.toml and the installed venv; scripts/check_environment.py
compares a venv with them. Both are tested here on the real files and on small hand-made distributions.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: What issue 20 keeps out of the prediction service's environment.
NOT_IN_SERVING = {"torch", "transformers", "spacy", "unstructured", "playwright", "schemathesis", "flaml", "dagster",
                  "feast", "mlflow", "sentence-transformers", "lancedb", "great-expectations"}  # fmt: skip


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_scripts_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


locks = _script("locks")
check_environment = _script("check_environment")


def on_disk() -> dict[str, dict[str, str]]:
    return {role: locks.read_lock(path) for role, path in locks.lock_files().items()}


def test_every_role_has_a_lock_and_one_package_has_one_version_everywhere() -> None:
    found = on_disk()
    assert set(found) == {"serving", "core", "documents", "dev"}
    assert all(found.values())
    assert locks.problems(found) == []


def test_the_locks_are_what_pyproject_and_the_tested_venv_give() -> None:
    """Stale when a dependency was added to a role in pyproject.toml (or upgraded) without `make lock`."""
    assert locks.compute() == on_disk()


def test_the_serving_lock_has_none_of_the_heavy_packages_and_the_documents_lock_has_the_cpu_torch() -> None:
    found = on_disk()
    serving = {canonicalize_name(name) for name in found["serving"]}
    assert serving & NOT_IN_SERVING == set()
    assert {"bentoml", "lightgbm", "xgboost-cpu", "numba", "fastapi", "redis"} <= serving
    assert found["documents"]["torch"].endswith("+cpu")
    assert "torch" not in found["core"]
    text = (ROOT / "requirements" / "documents.txt").read_text()
    assert f"--extra-index-url {locks.TORCH_INDEX}" in text  # documented, as a comment
    assert not any(line.startswith("--") for line in text.splitlines())  # not an option: pip would ask it for everything


def test_the_problems_found_name_the_package_and_the_locks() -> None:
    found = locks.problems({"serving": {"numpy": "2.0"}, "core": {"numpy": "2.1"}, "documents": {"numpy": "2.1"}, "dev": {}})
    assert "numpy has versions ['2.0', '2.1'] in different locks" in found
    assert "numpy is in documents.txt but not in dev.txt" in found


def _dist(site: Path, name: str, version: str, *requires: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path: Path) -> dict[str, object]:
    _dist(tmp_path, "Alpha", "1.0", "beta>=2", 'gamma; extra == "fast"', 'delta; python_version < "3"')
    _dist(tmp_path, "beta", "2.5", "epsilon")
    _dist(tmp_path, "gamma", "0.1")
    _dist(tmp_path, "delta", "9")
    _dist(tmp_path, "epsilon", "1.0+cpu")
    return locks.installed([str(tmp_path)])


def test_the_closure_follows_requirements_extras_and_markers(site: dict[str, object]) -> None:
    assert locks.closure(["alpha"], site) == {"Alpha": "1.0", "beta": "2.5", "epsilon": "1.0+cpu"}
    assert locks.closure(["alpha[fast]"], site) == {"Alpha": "1.0", "beta": "2.5", "epsilon": "1.0+cpu", "gamma": "0.1"}


def test_the_closure_refuses_what_is_not_installed_as_asked(site: dict[str, object]) -> None:
    with pytest.raises(SystemExit, match=r"zeta \(needed by pyproject.toml\)"):
        locks.closure(["alpha", "zeta"], site)
    with pytest.raises(SystemExit, match=r"beta>3: 2.5 installed"):
        locks.closure(["beta>3"], site)


def test_the_environment_check_matches_pins_as_pip_does() -> None:
    version = metadata.version("packaging")
    assert check_environment.mismatches({"packaging": version}) == []
    assert check_environment.mismatches({"packaging": "0.0.1"}) == [f"packaging: {version} installed, lock says 0.0.1"]
    assert check_environment.mismatches({"no-such-package-x": "1"}) == ["no-such-package-x: not installed (lock says 1)"]
    torch = metadata.version("torch")  # 2.13.0+cpu: a pin without the local label accepts it, another label does not
    assert check_environment.mismatches({"torch": torch.split("+")[0]}) == []
    assert check_environment.mismatches({"torch": torch.split("+")[0] + "+cu121"}) != []


def test_the_environment_check_reads_a_lock_and_exits_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "serving.txt").write_text("# comment\npackaging==0.0.1\n")
    monkeypatch.setattr(check_environment, "LOCK_DIR", tmp_path)
    with pytest.raises(SystemExit, match=r"does not match requirements/serving.txt:\n  packaging: .* lock says 0.0.1"):
        check_environment.main(["serving"])
    with pytest.raises(SystemExit, match="no such lock"):
        check_environment.main(["nope"])


def test_this_venv_matches_every_lock(capsys: pytest.CaptureFixture[str]) -> None:
    check_environment.main([])
    assert "environment matches" in capsys.readouterr().out
    assert sys.prefix != sys.base_prefix  # a virtual environment, as make venv makes it
