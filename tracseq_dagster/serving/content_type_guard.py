"""Refuse request bodies that are not JSON before the framework tries to parse them.

BentoML picks a body parser by Content-Type and answers 500 when, say, a multipart body has
no boundary (found by the schema-driven fuzz test). Every API here takes JSON, so anything
else gets a clear 415 instead; the columnar routes (``columnar_paths``, or paths matching
``columnar_pattern``) take Arrow or Parquet
instead, and check their own bodies. A missing Content-Type is read as JSON, as BentoML does.
"""

from __future__ import annotations

import re
from typing import Any

from tracseq_dagster.serving.http_answers import send_json

JSON_TYPES = frozenset({"application/json"})


class JsonOnlyMiddleware:
    def __init__(self, app: Any, columnar_paths: tuple[str, ...] = (), columnar_pattern: str | None = None) -> None:
        self.app = app
        self.columnar_paths = frozenset(columnar_paths)
        self.columnar_pattern = re.compile(columnar_pattern) if columnar_pattern else None

    def _columnar(self, path: str | None) -> bool:
        return path in self.columnar_paths or bool(path and self.columnar_pattern and self.columnar_pattern.match(path))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH") and not self._columnar(scope.get("path")):
            raw = dict(scope.get("headers") or []).get(b"content-type")
            media_type = raw.decode("latin-1").split(";", 1)[0].strip().lower() if raw else "application/json"
            if media_type not in JSON_TYPES:
                await send_json(send, 415, {"error": f"unsupported Content-Type {media_type!r}: send application/json"})
                return
        await self.app(scope, receive, send)
