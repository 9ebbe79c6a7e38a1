"""What the AutoML fork server imports before it forks any worker (:data:`.parallel.PRELOAD`).

Imported by that server process only, never by the caller's:

* the engine, so that every worker forked from the server starts with scikit-learn, LightGBM,
  XGBoost and Optuna already imported;
* a guard for the caller's script: ``multiprocessing`` makes each new process re-run the parent's
  ``__main__`` (as ``__mp_main__``), and a script without an ``if __name__ == "__main__":``
  guard would then start its work again inside the worker. The workers run engine functions
  only and need nothing of the caller's script, so in this server (and the workers it forks)
  re-running ``__main__`` is switched off. Python is pinned to 3.11 (pyproject), whose
  ``multiprocessing.spawn.prepare`` calls these two functions for it.
"""

from __future__ import annotations

import multiprocessing.spawn

import tracseq_dagster.automl.engine  # noqa: F401  (the workers' code, imported once here)


def _keep_main(_: str) -> None:
    """The worker keeps the server's bare ``__main__``: the caller's script is not run again."""


multiprocessing.spawn._fixup_main_from_path = _keep_main  # type: ignore[attr-defined]
multiprocessing.spawn._fixup_main_from_name = _keep_main  # type: ignore[attr-defined]
