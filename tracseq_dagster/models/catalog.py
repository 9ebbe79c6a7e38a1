"""The catalog: every module of this package that declares ``MODEL`` is a model of the lab.

Adding a model is adding one module here (see the README, "How to add a model"). A lab may
also keep its own models outside the package: ``TRACSEQ_MODEL_MODULES`` names extra modules
(comma-separated, importable from ``PYTHONPATH``), each declaring ``MODEL`` the same way.
The catalog is read once per process, in a fixed order (package modules by name, then the
extra modules in the order given), so partitions and listings are stable.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from functools import lru_cache

from tracseq_dagster.models.spec import ModelSpec

EXTRA_MODULES_VARIABLE = "TRACSEQ_MODEL_MODULES"
_NOT_MODELS = {"catalog", "spec"}


class UnknownModelError(KeyError):
    """A model name that is not in the catalog; the message lists the ones that are."""

    def __str__(self) -> str:
        return str(self.args[0])


@lru_cache(maxsize=1)
def catalog() -> dict[str, ModelSpec]:
    """Model name -> declaration, for every catalog module."""
    import tracseq_dagster.models as package

    modules = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__) if m.name not in _NOT_MODELS]
    extra = [m.strip() for m in os.getenv(EXTRA_MODULES_VARIABLE, "").split(",") if m.strip()]
    models: dict[str, ModelSpec] = {}
    for module_name in sorted(modules) + extra:
        spec = getattr(importlib.import_module(module_name), "MODEL", None)
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"{module_name} is in the model catalog but declares no MODEL = ModelSpec(...)")
        if spec.name in models:
            raise ValueError(f"two catalog modules declare the model {spec.name!r} ({module_name} is the second)")
        models[spec.name] = spec
    return models


def model_names() -> tuple[str, ...]:
    return tuple(catalog())


def get_model(name: str) -> ModelSpec:
    """The declaration of ``name``, or an error that lists the catalog."""
    try:
        return catalog()[name]
    except KeyError:
        raise UnknownModelError(f"no model {name!r} in the catalog; it has {', '.join(catalog())}") from None
