"""Feast's feature server (``feast serve``) over HTTP: the online store without the Feast SDK.

The prediction image installs only the serving lock (issue 20), which has no Feast; Feast's own
feature server answers ``POST /get-online-features`` with every requested feature per entity,
each with its event timestamp. What the service reads through it: the history aggregates
(:mod:`.online_history`) and the latest sample features of ``/features``
(:class:`~tracseq_dagster.serving.online_store.FeatureServerFeatureStore`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd


class FeatureServerError(RuntimeError):
    """The feature server did not answer, or answered something else than Feast's format."""


@dataclass(frozen=True)
class OnlineRows:
    """Feast's answer: per feature (the join key first), the values and the event times, aligned with the keys asked."""

    columns: dict[str, list[Any]]
    timestamps: dict[str, list[str]]

    def latest(self) -> pd.Timestamp | None:
        """The latest event time among the values found (None when Feast knew none)."""
        stamps = [
            pd.Timestamp(t)
            for name, times in self.timestamps.items()
            for t, v in zip(times, self.columns[name], strict=True)
            if v is not None
        ]
        return max(stamps) if stamps else None


class FeatureServer:
    """``POST /get-online-features`` of a Feast feature server, with a short timeout."""

    def __init__(self, url: str, timeout_s: float = 2.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)

    def online(self, features: list[str], join_key: str, values: list[str]) -> OnlineRows:
        """``features`` (``view:feature``) of the entities ``values`` of ``join_key``; None where Feast has nothing."""
        try:
            response = self._client.post("/get-online-features", json={"features": features, "entities": {join_key: values}})
            response.raise_for_status()
            body = response.json()
            names = body["metadata"]["feature_names"]
            results = body["results"]
            columns = {name: list(r["values"]) for name, r in zip(names, results, strict=True)}
            timestamps = {name: list(r["event_timestamps"]) for name, r in zip(names, results, strict=True) if name != join_key}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            raise FeatureServerError(f"{self.url}/get-online-features: {error}") from error
        return OnlineRows(columns, timestamps)

    def close(self) -> None:
        self._client.close()
