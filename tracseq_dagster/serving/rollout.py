"""A running prediction service switches to a newly built model by itself, without dropping a request.

How a promotion reaches the replicas:

1. the champion moves in the registry (the Dagster gate, an approval, ``POST /models/{name}/promotions``,
   a rollback from the API or the CLI: they all move the same alias);
2. the ``champion_rollout_sensor`` sees the move and runs ``package_bento``, which builds the
   Bento and, last, *announces* its model here: ``<BENTOML_HOME>/tracseq_rollout.json`` names the
   model tag the services should serve (a rollback's older build is announced again, so "newest
   model in the store" would be the wrong rule);
3. every worker of every replica (they share the model store) polls that file every
   ``TRACSEQ_ROLLOUT_INTERVAL_S`` seconds; when it names another model, the worker verifies its
   files' digests, loads and warms it off the request path, and swaps its references in one
   assignment. A request holds the references it started with, so requests in flight finish on
   the old version and later ones get the new one: none fails.

A model that cannot be loaded (missing, tampered) is refused with an error in the log and the
``/model`` answer, and the worker keeps serving what it had; the next announcement is tried again.

The announcement also names the document index version the build packed its SOP citations
from (``document_index_version``; None when it found no index): new SOPs are a reason to
rebuild as a moved champion is (:func:`documents_rollout_needed`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROLLOUT_FILE = "tracseq_rollout.json"

log = logging.getLogger(__name__)


def rollout_file(bentoml_home: str | Path | None = None) -> Path:
    """The announcement file in the BentoML home the builds and the services share."""
    return Path(bentoml_home or os.environ["BENTOML_HOME"]) / ROLLOUT_FILE


def announce(model_tag: str, champions: dict[str, str], bentoml_home: str | Path | None = None, *,
             document_index_version: int | None = None) -> Path:  # fmt: skip
    """Tell every running service to serve ``model_tag``, which packs ``champions`` (model -> version)
    and the SOP citations of ``document_index_version`` (None: the build found no document index).

    Atomic: a reader sees the old file or the new one, never half of one.
    """
    path = rollout_file(bentoml_home)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    at = datetime.now(UTC).isoformat(timespec="seconds")
    scratch.write_text(json.dumps({"model_tag": model_tag, "champions": champions, "at": at,
                                   "document_index_version": document_index_version}))  # fmt: skip
    os.replace(scratch, path)
    return path


def _read(bentoml_home: str | Path | None) -> dict[str, object]:
    try:
        found = json.loads(rollout_file(bentoml_home).read_text())
    except (OSError, ValueError, KeyError):
        return {}
    return found if isinstance(found, dict) else {}


def announced(bentoml_home: str | Path | None = None) -> str | None:
    """The model tag announced last, or None when nothing was announced (or the file is unreadable)."""
    tag = _read(bentoml_home).get("model_tag")
    return str(tag) if tag else None


def announced_champions(bentoml_home: str | Path | None = None) -> dict[str, str]:
    """The champion version of each model the announced build packs ({} when nothing was announced)."""
    champions = _read(bentoml_home).get("champions")
    return {str(m): str(v) for m, v in champions.items()} if isinstance(champions, dict) else {}


def announced_document_index_version(bentoml_home: str | Path | None = None) -> int | None:
    """The document index version the announced build read its SOP citations from (None: none, or an older build)."""
    version = _read(bentoml_home).get("document_index_version")
    return int(version) if isinstance(version, int) else None


def documents_rollout_needed(current: int | None, built: int | None, *, announced_tag: str | None) -> str | None:
    """Why the announced build's SOP citations are stale ("documents: index v3 -> v5"), or None.

    ``current`` is the document index's version now, ``built`` the one the announced build read.
    Nothing is asked before any build was announced (the champions decide the first build; a
    build with no champion would fail), nor when neither saw an index.
    """
    if announced_tag is None or current == built:
        return None
    return f"documents: {'index v' + str(built) if built is not None else 'no index'} -> " + (
        f"index v{current}" if current is not None else "no index"
    )


def rollout_needed(desired: dict[str, str | None], built: dict[str, str]) -> list[str]:
    """The champions the announced build does not serve, as "model: v1 -> v2" (empty: nothing to roll out).

    ``desired`` is every catalog model's champion in the registry (None: none yet), ``built`` the
    champion versions the announced model packs.
    """
    return [
        f"{model}: {'v' + built[model] if model in built else 'not served'} -> v{version}"
        for model, version in sorted(desired.items())
        if version is not None and built.get(model) != version
    ]


class RolloutWatcher:
    """Polls the announcement and calls ``switch(tag)`` when it names a model other than the served one.

    ``switch`` loads the model and swaps it in; when it raises, the model is not served, the error
    is kept in :attr:`last_error`, and that tag is not tried again until another is announced.
    """

    def __init__(self, serving: str, switch: Callable[[str], None], *, interval_s: float = 5.0,
                 read: Callable[[], str | None] = announced) -> None:  # fmt: skip
        self.serving = serving
        self.switch = switch
        self.interval_s = interval_s
        self.read = read
        self.last_error: str | None = None
        self.switches = 0
        self._refused: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> bool:
        """Switch now if another model is announced; True when the service switched."""
        tag = self.read()
        if tag is None or tag == self.serving or tag == self._refused:
            return False
        try:
            self.switch(tag)
        except Exception as error:  # noqa: BLE001 - any failure keeps the served model; the log says why
            self._refused = tag
            self.last_error = f"{tag} was announced but not served: {error}"
            log.error("rollout: %s", self.last_error)
            return False
        log.info("rollout: switched from %s to %s", self.serving, tag)
        self.serving, self._refused, self.last_error = tag, None, None
        self.switches += 1
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_once()

    def start(self) -> RolloutWatcher:
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tracseq-rollout", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def status(self) -> dict[str, object]:
        return {"serving": self.serving, "switches": self.switches, "last_error": self.last_error,
                "interval_s": self.interval_s}  # fmt: skip
