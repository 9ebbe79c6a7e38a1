"""What the prediction service leans on, how it goes on without it, and how it reports that.

Every outside dependency of a serving process (Redis for the cache and the online store, the
prediction log's database, Ollama for the document service) sits behind a
:class:`CircuitBreaker`. A failed call marks the dependency down; while it is down, callers
skip it (``allow()`` is False) and answer without it, except for one trial call every
``retry_after_s``, so an outage costs each request nothing instead of a connect timeout, and
the first trial that succeeds brings the dependency back without a restart.

:class:`Dependencies` keeps a process's breakers, runs their probes for ``/readyz`` (only the
ones not heard from recently, within a time budget) and reports
``{"status": "ready" | "degraded", "dependencies": {name: "up" | "down: <why>"}}``.
:class:`ReadinessMiddleware` answers ``/readyz`` with that body: 200 while the service can
answer (degraded included), 503 only when a dependency marked ``required`` is down.

Its settings (:func:`settings.dependency_retry_s`, :func:`settings.redis_timeout_s`,
:func:`settings.prediction_log_queue_rows`) live with every other setting, checked the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tracseq_dagster import settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: (event, dependency, use): event is "failure", "bypass" or "recovery".
Listener = Callable[[str, str, str], None]

#: A dependency heard from (a call or a probe) this recently is not probed again by /readyz.
FRESH_S = 1.0


def describe(error: BaseException) -> str:
    """One line about a failure, for /readyz and the log."""
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text}"[:300]


class CircuitBreaker:
    """The state of one dependency, shared by every caller in a process.

    ``allow()`` before a call, then ``succeeded()`` or ``failed(error)``; or let ``call`` do the
    three. Thread-safe; ``clock`` is injectable so tests need no sleeping.
    """

    def __init__(self, name: str, *, retry_after_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.retry_after_s = settings.dependency_retry_s() if retry_after_s is None else retry_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._next_trial = 0.0
        self.last_error = ""
        self.last_heard = float("-inf")  # when a call or probe last got an answer, either way
        self.failures = 0  # failed calls
        self.bypassed = 0  # calls skipped while down
        self.recoveries = 0
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """``listener(event, name, use)`` on every failure, bypass and recovery (e.g. a Prometheus counter)."""
        self._listeners.append(listener)

    @property
    def up(self) -> bool:
        return not self._down

    def status(self) -> str:
        return f"down: {self.last_error}" if self._down else "up"

    def allow(self, use: str = "") -> bool:
        """May the caller use the dependency now? While down: one trial per ``retry_after_s``, others skip."""
        if not self._down:
            return True
        with self._lock:
            now = self._clock()
            if now >= self._next_trial:
                self._next_trial = now + self.retry_after_s  # one trial at a time per interval
                return True
            self.bypassed += 1
        self._notify("bypass", use)
        return False

    def succeeded(self) -> None:
        with self._lock:
            self.last_heard = self._clock()
            if not self._down:
                return
            self._down = False
            self.recoveries += 1
        logger.warning("%s is back: using it again", self.name)
        self._notify("recovery", "")

    def failed(self, error: BaseException | str, use: str = "", *, went_without: bool = True) -> None:
        """The dependency failed a call; ``went_without``: the caller answered without it (a bypass, too)."""
        message = error if isinstance(error, str) else describe(error)
        with self._lock:
            now = self._clock()
            self.last_heard = now
            self.failures += 1
            was_down, self._down = self._down, True
            self._next_trial = now + self.retry_after_s
            self.last_error = message
        if not was_down:
            logger.warning(
                "%s is down (%s): going on without it, trying again every %.1f s", self.name, message, self.retry_after_s
            )
        self._notify("failure", use)
        if went_without:
            self._notify("bypass", use)

    def call(self, fn: Callable[[], T], default: T, errors: tuple[type[BaseException], ...], use: str = "") -> T:
        """``fn()``, or ``default`` when the dependency is down or ``fn`` raises one of ``errors``."""
        if not self.allow(use):
            return default
        try:
            value = fn()
        except errors as error:
            self.failed(error, use)  # this call, too, went on without it
            return default
        self.succeeded()
        return value

    def fresh(self, within_s: float = FRESH_S) -> bool:
        return self._clock() - self.last_heard < within_s

    def _notify(self, event: str, use: str) -> None:
        for listener in self._listeners:
            try:
                listener(event, self.name, use)
            except Exception:  # metrics must never break a request
                logger.exception("dependency listener failed")


class Dependencies:
    """A process's breakers, each with an optional probe (a cheap call that raises when down)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._probes: dict[str, Callable[[], Any]] = {}
        self._required: set[str] = set()
        self._probing: set[str] = set()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def breaker(self, name: str, *, probe: Callable[[], Any] | None = None, required: bool = False,
                retry_after_s: float | None = None) -> CircuitBreaker:  # fmt: skip
        """The breaker called ``name`` (created once; several stores on one Redis share it)."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = self._breakers[name] = CircuitBreaker(name, retry_after_s=retry_after_s, clock=self._clock)
                for listener in self._listeners:
                    breaker.listen(listener)
            if probe is not None:
                self._probes.setdefault(name, probe)
            if required:
                self._required.add(name)
            return breaker

    def listen(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)
            for breaker in self._breakers.values():
                breaker.listen(listener)

    def __contains__(self, name: str) -> bool:
        return name in self._breakers

    def probe(self, name: str) -> None:
        """Run ``name``'s probe now (unless one is already running), through its breaker."""
        breaker, probe = self._breakers[name], self._probes.get(name)
        with self._lock:
            if probe is None or name in self._probing:
                return
            self._probing.add(name)
        try:
            probe()
        except Exception as error:
            breaker.failed(error, "probe", went_without=False)
        else:
            breaker.succeeded()
        finally:
            with self._lock:
                self._probing.discard(name)

    def due(self) -> list[str]:
        """Dependencies worth probing now: not heard from recently, and not waiting out a retry interval."""
        out = []
        for name, breaker in self._breakers.items():
            if name in self._probes and not breaker.fresh() and (breaker.up or self._clock() >= breaker._next_trial):
                out.append(name)
        return out

    def report(self) -> dict[str, Any]:
        """What ``/readyz`` answers (without probing)."""
        states = {name: breaker.status() for name, breaker in self._breakers.items()}
        down = [name for name, breaker in self._breakers.items() if not breaker.up]
        status = "not_ready" if set(down) & self._required else "degraded" if down else "ready"
        return {"status": status, "dependencies": states}

    async def check(self, budget_s: float = 0.5) -> dict[str, Any]:
        """Probe the dependencies that are due, in threads, for at most ``budget_s``; then report.

        A probe still running after the budget keeps going in its thread and counts next time.
        """
        tasks = [asyncio.ensure_future(asyncio.to_thread(self.probe, name)) for name in self.due()]
        if tasks:
            await asyncio.wait(tasks, timeout=budget_s)
        return self.report()


class ReadinessMiddleware:
    """Answers ``GET /readyz`` with the dependency report as JSON.

    The request first goes through the framework's own check (BentoML's ``/readyz``); when
    that says not ready, its answer stands. Otherwise ``report()`` decides: 200 for ready and
    degraded (the service answers, without some dependency), 503 for not_ready.
    """

    def __init__(self, app: Any, report: Callable[[], Awaitable[dict[str, Any]]], path: str = "/readyz") -> None:
        self.app = app
        self.report = report
        self.path = path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        held: list[dict[str, Any]] = []

        async def hold(message: dict[str, Any]) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = next((m for m in held if m["type"] == "http.response.start"), None)
        if start is None or start["status"] != 200:
            for message in held:
                await send(message)
            return
        try:
            body = await self.report()
        except Exception as error:  # a broken report must not turn a ready service into a 500
            logger.exception("readiness report failed")
            body = {"status": "ready", "dependencies": {}, "report_error": describe(error)}
        payload = json.dumps(body).encode()
        status = 503 if body.get("status") == "not_ready" else 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload if scope.get("method") == "GET" else b""})


# -- Redis ----------------------------------------------------------------------------------------


def redis_client(url: str, timeout_s: float | None = None) -> Any:
    """A Redis client for the request path: short timeouts and no retries of its own.

    redis-py retries a failed command three times with backoff by default; on the request path
    the breaker decides instead, so a Redis that is down costs one quick failure, then nothing.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout = settings.redis_timeout_s() if timeout_s is None else timeout_s
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0),
                                health_check_interval=0)  # fmt: skip


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when the server is down, slow or refusing (OSError for sockets below redis-py)."""
    import redis

    return (redis.RedisError, OSError)
