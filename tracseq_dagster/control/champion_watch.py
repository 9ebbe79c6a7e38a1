"""Notices a move of ``champion`` in the registry and tells the service, so a rollout needs no restart.

A running prediction service reads which version of each model is champion every
``interval_s`` seconds (one alias lookup per model: cheap for the registry) and calls
``on_change(model, old, new)`` for each model whose champion moved — by a promotion, an
approval or a rollback, from the API, the CLI or the Dagster gate alike, since they all move the
same alias. The callback loads and warms the new version off the request path and then swaps
its reference to it; requests in flight finish on the version they started with, so none is
dropped (see ``tests/test_control_champion_watch.py`` for the swap under load).

Polling rather than a notification channel: it needs nothing beyond the registry the service
already reads, and survives a missed message by construction (the next poll sees the state).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

#: model -> champion version (None: no champion yet).
Champions = Mapping[str, "str | None"]
OnChange = Callable[[str, "str | None", "str | None"], None]

log = logging.getLogger(__name__)


class ChampionWatcher:
    def __init__(self, read: Callable[[], Champions], on_change: OnChange, *, interval_s: float = 5.0) -> None:
        self.read = read
        self.on_change = on_change
        self.interval_s = interval_s
        self.known: dict[str, str | None] = dict(read())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> list[tuple[str, str | None, str | None]]:
        """Compare with the registry now; call ``on_change`` for each move; return the moves."""
        moves = []
        for model, version in self.read().items():
            old = self.known.get(model)
            if version != old:
                self.on_change(model, old, version)  # only remembered once the service has switched
                self.known[model] = version
                moves.append((model, old, version))
        return moves

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - a registry hiccup or a failed load: keep serving, retry next time
                log.exception("champion watch: check failed; still serving the current versions")

    def start(self) -> ChampionWatcher:
        self._thread = threading.Thread(target=self._run, name="champion-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)


def registry_champions(client, models: list[str]) -> Callable[[], dict[str, str | None]]:  # type: ignore[no-untyped-def]
    """A reader of each model's champion version in the MLflow registry ``client``."""
    from tracseq_dagster.registry import CHAMPION, ModelRegistry

    def read() -> dict[str, str | None]:
        found = {m: ModelRegistry(client, m).version(CHAMPION) for m in models}
        return {m: (str(v.version) if v is not None else None) for m, v in found.items()}

    return read
