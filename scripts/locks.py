"""The exact locks per role, derived from ``pyproject.toml`` and the environment they were tested in.

A role's direct dependencies are named in ``pyproject.toml``; its lock, ``requirements/<role>.txt``, pins
them and everything they need (their transitive closure, markers evaluated for this platform) at the
versions installed in the venv that ran the tests. Every lock is complete on its own (one ``pip install
-r`` per machine) and the roles nest, so one package has one version everywhere:

    serving    the prediction Bento         [project.optional-dependencies] serving
    core       platform + Dagster code location   [project.dependencies] + serving + [build-system] requires
               (the package is installed from the source tree, editable, with --no-build-isolation)
    documents  core + the documents pipeline (torch, unstructured, LanceDB, ...)   + documents
    dev        everything, tests and tools  + dev

    python scripts/locks.py write    re-pin every lock from the current venv (``make lock``)
    python scripts/locks.py check    the locks are what ``write`` would produce, nest, and agree

The closure is computed from installed metadata rather than by a resolver: the locks are by
construction the versions the test suite ran against (a resolver run here would also have to see
the local CPU build of torch, which uv does not; see requirements/README.md).
"""

from __future__ import annotations

import functools
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK_DIR = ROOT / "requirements"
#: role -> the pyproject groups it is made of ("project" = [project.dependencies], "build" = [build-system] requires).
ROLES: dict[str, tuple[str, ...]] = {
    "serving": ("serving",),
    "core": ("project", "serving", "build"),
    "documents": ("project", "serving", "build", "documents"),
    "dev": ("project", "serving", "build", "documents", "dev"),
}
#: Never pinned: pip itself (the Makefile pins it), and the project's own package.
UNPINNED = {"pip", "tracseq-dagster"}
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
HEADERS = {
    "serving": "The prediction Bento (bentos/predictions/bentofile.yaml installs only this): no torch, spaCy, unstructured,\n"
    "# Playwright, schemathesis, FLAML, Dagster, Feast or MLflow.",
    "core": "The platform and the Dagster code location without the documents pipeline (no torch): the CLI, the\n"
    "# spine, features, Feast, AutoML, MLflow, the Bento build, the management API. Includes serving.txt.",
    "documents": "core.txt plus the documents pipeline (unstructured, OCR, spaCy model, embeddings, LanceDB):\n"
    "# the Docker image of the stack and the /ask Bento.\n"
    f"# torch is the CPU build: on a machine without the local wheel, add --extra-index-url {TORCH_INDEX}",
    "dev": "Everything: documents.txt plus tests, type checker, benchmarks' comparisons, build tools (make venv).\n"
    f"# torch is the CPU build: on a machine without the local wheel, add --extra-index-url {TORCH_INDEX}",
}


def pyproject_groups() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = {"project": project["project"]["dependencies"], "build": project["build-system"]["requires"]}
    groups.update(project["project"].get("optional-dependencies", {}))
    return groups


@dataclass(frozen=True)
class Installed:
    name: str  # as the distribution spells it (as pip freeze does)
    version: str
    requires: tuple[str, ...]


def installed(path: list[str] | None = None) -> dict[str, Installed]:
    """canonical name -> the distribution installed (``path``: where to look, default sys.path)."""
    found: dict[str, Installed] = {}
    for dist in metadata.distributions(path=path) if path is not None else metadata.distributions():
        meta = dist.metadata  # parsed once: every .metadata / .version / .requires re-reads the file
        key = canonicalize_name(meta["Name"])
        if key not in found:
            found[key] = Installed(meta["Name"], meta["Version"], tuple(meta.get_all("Requires-Dist") or ()))
    return found


@functools.cache
def _requirement(line: str) -> Requirement:
    """Parsed once: the roles share most of their requirements, and parsing is most of a lock's cost."""
    return Requirement(line)


def closure(requirements: Iterable[str], dists: dict[str, Installed]) -> dict[str, str]:
    """name (as the distribution spells it) -> installed version, for ``requirements`` and all they need here."""
    pinned: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    missing: list[str] = []
    todo = [(_requirement(r), "pyproject.toml") for r in requirements]
    while todo:
        requirement, wanted_by = todo.pop()
        key = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if key in UNPINNED or (key, extras) in seen:
            continue
        seen.add((key, extras))
        dist = dists.get(key)
        if dist is None:
            missing.append(f"{requirement} (needed by {wanted_by})")
            continue
        version = dist.version
        if not SpecifierSet(str(requirement.specifier)).contains(version, prereleases=True):
            missing.append(f"{requirement}: {version} installed (needed by {wanted_by})")
        pinned[dist.name] = version
        for line in dist.requires:
            needed = _requirement(line)
            if needed.marker is not None and not any(needed.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            todo.append((needed, dist.name))
    if missing:
        raise SystemExit("Not installed as pyproject.toml asks (pip install it first):\n  " + "\n  ".join(sorted(missing)))
    return pinned


def render(role: str, pins: dict[str, str]) -> str:
    groups = ", ".join(ROLES[role])
    lines = [
        f"# requirements/{role}.txt: generated by `make lock` (scripts/locks.py) from pyproject.toml ({groups})",
        "# and the versions in the tested venv. Do not edit by hand: add a dependency to its role in pyproject.toml.",
        f"# {HEADERS[role]}",
    ]
    lines += [f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda item: item[0].lower())]
    return "\n".join(lines) + "\n"


def compute() -> dict[str, dict[str, str]]:
    groups, dists = pyproject_groups(), installed()
    return {role: closure([r for g in parts for r in groups[g]], dists) for role, parts in ROLES.items()}


def read_lock(path: Path) -> dict[str, str]:
    """name -> version of a lock file's ``name==version`` lines (comments and options skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pins[name.strip()] = version.strip()
    return pins


def lock_files() -> dict[str, Path]:
    return {role: LOCK_DIR / f"{role}.txt" for role in ROLES}


def problems(locks: dict[str, dict[str, str]]) -> list[str]:
    """One version per package across the locks, and the roles nest (serving < core < documents < dev)."""
    found = []
    versions: dict[str, set[str]] = {}
    for pins in locks.values():
        for name, version in pins.items():
            versions.setdefault(canonicalize_name(name), set()).add(version)
    found += [f"{name} has versions {sorted(v)} in different locks" for name, v in sorted(versions.items()) if len(v) > 1]
    order = list(ROLES)
    for smaller, larger in zip(order, order[1:]):
        left = {canonicalize_name(n) for n in locks[smaller]} - {canonicalize_name(n) for n in locks[larger]}
        found += [f"{name} is in {smaller}.txt but not in {larger}.txt" for name in sorted(left)]
    return found


def main(argv: list[str]) -> None:
    command = argv[1] if len(argv) > 1 else "check"
    if command == "write":
        LOCK_DIR.mkdir(exist_ok=True)
        for role, pins in compute().items():
            lock_files()[role].write_text(render(role, pins))
            print(f"requirements/{role}.txt: {len(pins)} pins")
    elif command == "check":
        on_disk = {role: read_lock(path) for role, path in lock_files().items()}
        wrong = problems(on_disk)
        expected = compute()
        for role, pins in expected.items():
            if pins != on_disk[role]:
                added = sorted(set(pins.items()) - set(on_disk[role].items()))
                removed = sorted(set(on_disk[role].items()) - set(pins.items()))
                wrong.append(f"requirements/{role}.txt is stale (make lock): would add {added}, remove {removed}")
        if wrong:
            sys.exit("Locks:\n  " + "\n  ".join(wrong))
        print("locks agree: " + ", ".join(f"{role} {len(pins)}" for role, pins in on_disk.items()))
    else:
        sys.exit(f"usage: {argv[0]} write|check")


if __name__ == "__main__":
    main(sys.argv)
