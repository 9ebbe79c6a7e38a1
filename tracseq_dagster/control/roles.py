"""Roles and the route policy: which role may call which method on which path.

The decision is casbin's (an RBAC model with path patterns), not hand-written code, because
the policy is data a lab will want to read and change without touching Python: a role
hierarchy (``admin`` holds every other role, ``operator``, ``approver`` and ``predictor`` read
what a ``viewer`` reads) plus ``keyMatch2`` path patterns (``/models/:name/rollback``) and a
method regex per line. :data:`POLICY` is the default; ``TRACSEQ_POLICY_FILE`` may name a casbin
policy CSV that replaces it (same model, :data:`MODEL`).

One policy covers every service the project runs (predictions, ``/ask``, the management API):
their paths do not collide in meaning, so a token's role means the same everywhere.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import casbin
from cachetools import LRUCache
from casbin.persist.adapters import StringAdapter

#: Every role a token may hold, least to most powerful.
ROLES: tuple[str, ...] = ("viewer", "predictor", "operator", "approver", "admin")

#: The casbin model: a request (role, path, method) is allowed when a policy line of the role,
#: or of a role it inherits, matches the path pattern and the method.
MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && regexMatch(r.act, p.act)
"""

#: The default policy (casbin CSV). Reads are GET (and the feature queries, POST with a body);
#: the audit log is read by ``admin`` only (it names every token and what it did).
POLICY = """
p, viewer, /models, ^(GET|HEAD)$
p, viewer, /models/*, ^(GET|HEAD)$
p, viewer, /model, ^(GET|HEAD)$
p, viewer, /features, ^(GET|HEAD)$
p, viewer, /features/*, ^(GET|HEAD)$
p, viewer, /promotions, ^(GET|HEAD)$
p, viewer, /promotions/*, ^(GET|HEAD)$
p, viewer, /deployments, ^(GET|HEAD)$
p, viewer, /deployments/*, ^(GET|HEAD)$
p, viewer, /features/online, ^POST$
p, viewer, /features/historical, ^POST$
p, predictor, /predict, ^POST$
p, predictor, /batch_predict, ^POST$
p, predictor, /fast/*, ^POST$
p, predictor, /features, ^POST$
p, predictor, /models/:name/predict, ^POST$
p, predictor, /models/:name/batch_predict, ^POST$
p, predictor, /models/:name/fast/*, ^POST$
p, predictor, /ask, ^POST$
p, operator, /models/:name/retrain, ^POST$
p, operator, /models/:name/promotions, ^POST$
p, operator, /models/:name/rollback, ^POST$
p, operator, /deployments/:id/rollback, ^POST$
p, approver, /promotions/:id/approve, ^POST$
p, approver, /promotions/:id/reject, ^POST$
p, admin, /*, ^(GET|HEAD|POST|PUT|PATCH|DELETE)$
g, predictor, viewer
g, operator, viewer
g, approver, viewer
g, admin, operator
g, admin, approver
g, admin, predictor
"""

POLICY_FILE_VARIABLE = "TRACSEQ_POLICY_FILE"
DECISION_CACHE_SIZE = 10_000


class UnknownRole(ValueError):
    """A role that is not one of :data:`ROLES`."""


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UnknownRole(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


class Authorizer:
    """Decides whether a role may call ``method path`` (casbin enforcer over :data:`MODEL`)."""

    def __init__(self, policy_csv: str | None = None) -> None:
        model = casbin.model.Model()
        model.load_model_from_text(MODEL)
        text = policy_csv if policy_csv is not None else _policy_text()
        lines = [line.strip() for line in text.strip().splitlines() if line.strip() and not line.strip().startswith("#")]
        self._enforcer = casbin.Enforcer(model, StringAdapter("\n".join(lines)))
        # casbin's enforce costs 0.2-0.4 ms (regexes over every line); the policy is fixed for the
        # process, so a decision is cached exactly, bounded so that random paths cannot grow it.
        self._decisions: LRUCache[tuple[str, str, str], bool] = LRUCache(maxsize=DECISION_CACHE_SIZE)
        self._lock = threading.Lock()

    def allows(self, role: str, method: str, path: str) -> bool:
        """True when ``role`` may call ``method`` on ``path``."""
        key = (role, method.upper(), path)
        with self._lock:
            known = self._decisions.get(key)
        if known is not None:
            return known
        decision = bool(self._enforcer.enforce(role, path, key[1]))
        with self._lock:
            self._decisions[key] = decision
        return decision


def _policy_text() -> str:
    file = os.getenv(POLICY_FILE_VARIABLE, "").strip()
    return Path(file).read_text() if file else POLICY
