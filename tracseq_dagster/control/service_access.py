"""Who may call the prediction service and ``/ask``: the management API's tokens, roles and rate
limits, or the single shared token of the first release, chosen by ``TRACSEQ_SERVICE_AUTH``.

* ``roles``: a token of the control database (``tracseq tokens create``) whose role the policy
  allows on the route (:class:`~tracseq_dagster.control.auth_middleware.RoleAuthMiddleware`:
  ``predictor`` may predict and ask, ``viewer`` may read), and, when ``TRACSEQ_RATE_LIMIT`` is
  set, that many requests per token (:class:`~tracseq_dagster.control.rate_limit.RateLimitMiddleware`,
  counted in Redis so every worker and replica shares the count).
* ``token``: every request but the probes carries ``TRACSEQ_API_TOKEN`` (the original check).
* ``off``: open (a service behind a gateway that authenticates).

Unset, it is ``token`` when ``TRACSEQ_API_TOKEN`` is set and ``off`` otherwise: what the services
did before roles existed, so an upgrade does not lock a running lab out of its own models.
The control database is opened lazily, so a service without ``roles`` never imports it.
"""

from __future__ import annotations

import os
from typing import Any

from tracseq_dagster.settings import ConfigurationError

VARIABLE = "TRACSEQ_SERVICE_AUTH"
MODES = ("roles", "token", "off")


def service_auth_mode() -> str:
    """The mode asked for by the environment (checked), with the default described above."""
    value = os.getenv(VARIABLE, "").strip().lower()
    if not value:
        return "token" if os.getenv("TRACSEQ_API_TOKEN") else "off"
    if value not in MODES:
        raise ConfigurationError(f"{VARIABLE}={value!r} is not one of {', '.join(MODES)}: set one of them, or unset it")
    if value == "token" and not os.getenv("TRACSEQ_API_TOKEN"):
        raise ConfigurationError(f"{VARIABLE}=token needs TRACSEQ_API_TOKEN: set the token, or choose roles or off")
    return value


def service_middlewares() -> list[tuple[type, dict[str, Any]]]:
    """The ASGI middlewares of the chosen mode, outermost first (authentication, then the limit)."""
    mode = service_auth_mode()
    if mode == "off":
        return []
    if mode == "token":
        from tracseq_dagster.serving.auth import BearerTokenMiddleware

        return [(BearerTokenMiddleware, {"token": os.environ["TRACSEQ_API_TOKEN"]})]
    from tracseq_dagster import settings
    from tracseq_dagster.control import config
    from tracseq_dagster.control.auth_middleware import RoleAuthMiddleware
    from tracseq_dagster.control.database import open_engine
    from tracseq_dagster.control.rate_limit import RateLimitMiddleware
    from tracseq_dagster.control.tokens import TokenStore

    layers: list[tuple[type, dict[str, Any]]] = [
        (RoleAuthMiddleware, {"tokens": TokenStore(open_engine(config.control_db_url()))})
    ]
    limit = config.rate_limit()
    if limit:
        prefix = f"{settings.redis_prefix()}ratelimit"  # the deployment's key prefix, as the online store's keys
        layers.append((RateLimitMiddleware, {"limit": limit, "redis_url": settings.redis_url(), "key_prefix": prefix}))
    return layers


def add_access_control(service: Any) -> str:
    """Add the chosen middlewares to a BentoML service (innermost of its middlewares); the mode."""
    for middleware, options in service_middlewares():
        service.add_asgi_middleware(middleware, **options)
    return service_auth_mode()
