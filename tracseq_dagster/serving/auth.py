"""Optional bearer-token authentication for the HTTP services.

When ``TRACSEQ_API_TOKEN`` is set, every request but the probes and the metrics must carry
``Authorization: Bearer <token>``; others get 401 with a ``WWW-Authenticate`` header. The
comparison is constant-time. Probes stay open so an orchestrator can check liveness without
the secret.
"""

from __future__ import annotations

import hmac
from typing import Any

from tracseq_dagster.serving.http_answers import send_json

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})


class BearerTokenMiddleware:
    def __init__(self, app: Any, token: str) -> None:
        if not token:
            raise ValueError("BearerTokenMiddleware needs a non-empty token")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        error = {"error": "missing or wrong bearer token (Authorization: Bearer <TRACSEQ_API_TOKEN>)"}
        await send_json(send, 401, error, [(b"www-authenticate", b"Bearer")])
