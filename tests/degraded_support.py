"""Real dependencies that a test can take away and give back: a Redis server, a TCP proxy in
front of PostgreSQL, a served prediction Bento, and an open-loop load generator.

Nothing here is a mock: ``RedisServer`` runs ``redis-server`` on a free port (stopped and
started again on the same port), ``TcpProxy`` forwards real connections to the machine's
PostgreSQL and refuses them while closed (the real server keeps running for everyone else).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from processes import free_port, stop, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class RedisServer:
    """``redis-server`` on a free loopback port, without persistence; ``stop()`` and ``start()`` again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = (self.folder / f"redis-{self.port}.log").open("a")
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(self.folder)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # an outage, not a clean shutdown
            self.process.wait()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; ``close()`` drops every connection and refuses new ones."""

    def __init__(self, upstream: tuple[str, int], port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            _close(connection)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # closed meanwhile
                    _close(client), _close(server)
                    return
                self._connections |= {client, server}
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                _close(s)
            with self._lock:
                self._connections -= {source, target}


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


# -- a served Bento ----------------------------------------------------------------------------


def save_bundle_in_store(bundle_dir: Path, bentoml_home: Path) -> str:
    """The bundle as a BentoML model in ``bentoml_home`` (a subprocess: BENTOML_HOME is read at import)."""
    script = (
        "import json, sys; from pathlib import Path\n"
        "from tracseq_dagster.serving.bundle import BundleInfo, ModelCard\n"
        "from tracseq_dagster.serving.bento_build import save_bundle_model\n"
        "raw = json.loads((Path(sys.argv[1]) / 'bundle.json').read_text())\n"
        "cards = {k: ModelCard(**raw[k]) if raw[k] else None for k in ('champion', 'challenger')}\n"
        "print(save_bundle_model(Path(sys.argv[1]), BundleInfo(**{**raw, **cards})))\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "DO_NOT_TRACK": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(bundle_dir)], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


class Bento:
    """``bentoml serve bentos.predictions.service:Predictions`` from the source tree."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"bento-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 240.0) -> Bento:
        command = [str(BIN / "bentoml"), "serve", "bentos.predictions.service:Predictions",
                   "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        wait_until_ready(self.process, f"{self.url}/readyz", self.log, timeout_s=timeout_s)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def get(self, path: str, timeout: float = 10) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def readyz(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"raw": body}

    def metric(self, name: str, **labels: str) -> float:
        """The sum over workers of a counter's samples matching ``labels`` on /metrics."""
        total = 0.0
        for line in self.get("/metrics")[1].splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


# -- load ----------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: list[tuple[float, str]] = field(default_factory=list)  # (time since start, what)
    answered: list[tuple[float, str, bool]] = field(default_factory=list)  # (time, request_id, cached)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (time, seconds) of every answer, errors too

    @property
    def ok(self) -> int:
        return self.statuses[200]

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(requests answered 200, errors) whose answer came in [start, end) seconds after the load began."""
        ok = sum(1 for t, *_ in self.answered if start <= t < end)
        return ok, sum(1 for t, _ in self.errors if start <= t < end)

    def latency_ms(self, start: float, end: float, quantile: float) -> float:
        """A quantile of the latencies of the answers that came in [start, end)."""
        values = sorted(s for t, s in self.latencies if start <= t < end)
        return 1000.0 * values[min(len(values) - 1, int(quantile * len(values)))] if values else float("nan")


class Load:
    """Posts records to ``url`` at ``rate`` requests per second from a few threads (open loop per thread).

    Each request carries a record from ``records`` in turn; the i-th request's time and answer
    are kept. ``marks`` notes moments (e.g. "redis down") against the load's clock.
    """

    def __init__(self, url: str, records: list[dict[str, Any]], rate: float = 50.0, threads: int = 8,
                 timeout_s: float = 10.0, headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.url = url
        self.records = records
        self.rate = rate
        self.threads = threads
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.result = LoadResult()
        self.marks: dict[str, float] = {}
        self.in_flight = 0  # requests sent and not yet answered
        self.modes: list[tuple[float, str]] = []  # (time, the answer's "mode"), for answers that have one
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.started = 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    def mark(self, name: str) -> float:
        self.marks[name] = self.now()
        return self.marks[name]

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for k in range(self.threads):
            thread = threading.Thread(target=self._run, args=(k,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(self.timeout_s + 5)

    def _run(self, k: int) -> None:
        interval = self.threads / self.rate
        i = k
        next_at = time.monotonic() + k * interval / self.threads
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
                if self._stop.is_set():
                    return
            next_at += interval
            body = json.dumps(self.records[i % len(self.records)]).encode()
            i += self.threads
            self._post(body)

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        with self._lock:
            self.in_flight += 1
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read())
                status = response.status
        except urllib.error.HTTPError as error:
            status, answer = error.code, {"error": error.read()[:300].decode(errors="replace")}
        except OSError as error:
            status, answer = 0, {"error": f"{type(error).__name__}: {error}"}
        moment = self.now()
        with self._lock:
            self.in_flight -= 1
            self.result.sent += 1
            self.result.latencies.append((moment, time.monotonic() - sent))
            self.result.statuses[status] += 1
            if status == 200:
                self.result.answered.append((moment, answer.get("request_id", ""), bool(answer.get("cached"))))
                if "mode" in answer:
                    self.modes.append((moment, answer["mode"]))
            else:
                self.result.errors.append((moment, f"{status}: {answer.get('error', '')}"))
