"""Fail the set-up loudly when the resolver picked something other than the lock.

pip silently falls back to ancient releases when a new one needs a certifi this
registry does not have (see DESIGN.md); comparing the venv with the lock catches it.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

lock = Path(__file__).resolve().parent.parent / "requirements.lock"
wrong = []
for line in lock.read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if "==" not in line:
        continue
    name, version = line.split("==", 1)
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        wrong.append(f"{name}: not installed (lock says {version})")
        continue
    if installed != version:
        wrong.append(f"{name}: {installed} installed, lock says {version}")
if wrong:
    sys.exit("The virtual environment does not match requirements.lock:\n  " + "\n  ".join(wrong))
print(f"environment matches {lock.name}")
