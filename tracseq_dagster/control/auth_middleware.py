"""An ASGI middleware that lets a request through only with a token whose role may call the route.

Reusable by every service the project runs (the prediction Bento, ``/ask``, the management
API): wrap the ASGI app, or ``Service.add_asgi_middleware(RoleAuthMiddleware, tokens=…)``.

* no ``Authorization: Bearer <token>``, or an unknown or revoked token: 401 with
  ``WWW-Authenticate: Bearer``;
* a token whose role the policy (:class:`~tracseq_dagster.control.roles.Authorizer`) does not
  allow on this method and path: 403 naming the role and the route;
* probes and metrics (:data:`OPEN_PATHS`) stay open, so an orchestrator needs no secret;
* otherwise the request goes on with ``scope["state"]["principal"]`` set (a Starlette
  ``request.state.principal``), which the audit log and the rate limiter read.

With ``enabled=False`` (``TRACSEQ_AUTH=off``) every request goes on as :data:`ANONYMOUS`.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread

from tracseq_dagster.control.roles import Authorizer
from tracseq_dagster.control.tokens import Principal, TokenStore
from tracseq_dagster.serving.http_answers import send_json

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
ANONYMOUS = Principal("anonymous", "admin")


def principal_of(scope: dict[str, Any]) -> Principal | None:
    """The principal the middleware set on this request, if any."""
    return (scope.get("state") or {}).get("principal")


class RoleAuthMiddleware:
    def __init__(
        self,
        app: Any,
        tokens: TokenStore | None,
        authorizer: Authorizer | None = None,
        *,
        open_paths: frozenset[str] = OPEN_PATHS,
        enabled: bool = True,
    ) -> None:
        if enabled and tokens is None:
            raise ValueError("RoleAuthMiddleware needs a TokenStore when it is enabled")
        self.app = app
        self.tokens = tokens
        self.authorizer = authorizer or Authorizer()
        self.open_paths = open_paths
        self.enabled = enabled

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "") in self.open_paths:
            await self.app(scope, receive, send)
            return
        if not self.enabled:
            scope.setdefault("state", {})["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, secret = header.partition(" ")
        principal = None
        if scheme.lower() == "bearer" and secret.strip():
            assert self.tokens is not None
            # The store caches lookups; a miss reads the database, off the event loop.
            hit, principal = self.tokens.cached(secret.strip())
            if not hit:
                principal = await to_thread.run_sync(self.tokens.authenticate, secret.strip())
        if principal is None:
            error = "missing, unknown or revoked token: send Authorization: Bearer <token> (tracseq tokens create)"
            await send_json(send, 401, {"error": error}, [(b"www-authenticate", b"Bearer")])
            return
        method, path = scope.get("method", "GET"), scope.get("path", "")
        if not self.authorizer.allows(principal.role, method, path):
            error = f"token {principal.name!r} has the role {principal.role}, which may not call {method} {path}"
            await send_json(send, 403, {"error": error})
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
