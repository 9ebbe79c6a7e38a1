"""Fail the set-up loudly when the resolver picked something other than the locks.

pip silently falls back to ancient releases when a new one needs a certifi this
registry does not have (see DESIGN.md); comparing the venv with the locks catches it.

    python scripts/check_environment.py               the venv against every lock (make venv: dev = all)
    python scripts/check_environment.py documents     against requirements/documents.txt only (the image)

A pin matches as pip matches it (PEP 440): ``torchvision==0.28.0`` accepts the ``0.28.0+cpu``
build that the PyTorch CPU index serves, ``torch==2.13.0+cpu`` only that build.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.specifiers import SpecifierSet

LOCK_DIR = Path(__file__).resolve().parent.parent / "requirements"


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            found[name.strip()] = version.strip()
    return found


def mismatches(wanted: dict[str, str]) -> list[str]:
    wrong = []
    for name, version in sorted(wanted.items(), key=lambda item: item[0].lower()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed (lock says {version})")
            continue
        if not SpecifierSet(f"=={version}").contains(installed, prereleases=True):
            wrong.append(f"{name}: {installed} installed, lock says {version}")
    return wrong


def main(roles: list[str]) -> None:
    locks = [LOCK_DIR / f"{role}.txt" for role in roles] if roles else sorted(LOCK_DIR.glob("*.txt"))
    missing = [str(lock) for lock in locks if not lock.exists()]
    if missing:
        sys.exit(f"no such lock: {', '.join(missing)}")
    wanted: dict[str, str] = {}
    for lock in locks:
        wanted.update(pins(lock))
    wrong = mismatches(wanted)
    names = ", ".join(f"requirements/{lock.name}" for lock in locks)
    if wrong:
        sys.exit(f"The virtual environment does not match {names}:\n  " + "\n  ".join(wrong))
    print(f"environment matches {names} ({len(wanted)} pins)")


if __name__ == "__main__":
    main(sys.argv[1:])
