"""An open-loop HTTP/1.1 load generator cheap enough to share 2 cores with the server it measures.

aiohttp spent ~0.35 ms of CPU per request here (a session, a request object, a response
parser, a task per request): at 1,000 requests/s a third of a core, and its scheduling jitter
showed as server latency (a constant-answer endpoint had p99 275 ms at 1,000 requests/s).
This one writes pre-encoded requests on kept-alive connections from plain asyncio protocols
(uvloop when installed) and only looks at a response's status line and Content-Length.

Open loop, as wrk2 does it: request *i* is due at ``start + i / rate``; it goes out on an idle
connection at that time, or waits for the first connection that frees up (or a new one, up to
``max_connections``), and its latency counts from the time it was due, so queueing in the
server or here shows in the percentiles instead of slowing the schedule down.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import numpy as np

try:  # the event loop uvicorn itself uses; plain asyncio works too, at about twice the CPU
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request in flight at a time, the response read by its framing."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.response_end: int | None = None  # where the response being read ends, once its head is in
        self.due = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, due: float) -> None:
        self.due = due
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.response_end is None:  # the head is parsed once, not again for every chunk of a large body
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.response_end = end + 4 + _content_length(bytes(self.buffer[:end]))
        if len(self.buffer) < self.response_end:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: self.response_end]
        self.response_end = None
        self.pool.finished(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)


def _content_length(head: bytes) -> int:
    """The body length a response head announces (the servers measured here always announce it)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError(f"a response without Content-Length: {head[:200]!r}")


class _Pool:
    """Idle connections, requests waiting for one, and the measurements."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, max_connections: int, expected: int) -> None:
        self.loop, self.host, self.port, self.max_connections = loop, host, port, max_connections
        self.expected = expected  # responses (or failures) after which the run is done
        self.idle: deque[_Connection] = deque()
        self.waiting: deque[tuple[bytes, float]] = deque()
        self.opened = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.done = asyncio.Event()

    async def open(self) -> None:
        self.opened += 1
        try:
            _, connection = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            self.opened -= 1
            raise
        self._next(connection)

    def submit(self, request: bytes, due: float) -> None:
        if self.idle:
            self.idle.popleft().send(request, due)
            return
        self.waiting.append((request, due))
        if self.opened < self.max_connections:
            self.loop.create_task(self.open())

    def finished(self, connection: _Connection, status: int) -> None:
        self._record(connection.due, failed=status != 200)
        self._next(connection)

    def lost(self, connection: _Connection) -> None:
        self.opened -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        elif connection.due:  # a request was in flight on it
            self._record(connection.due, failed=True)

    def _record(self, due: float, *, failed: bool) -> None:
        self.latencies.append(time.perf_counter() - due)
        self.errors += failed
        if len(self.latencies) >= self.expected:
            self.done.set()

    def _next(self, connection: _Connection) -> None:
        connection.due = 0.0
        if connection.closed:
            return
        if self.waiting:
            connection.send(*self.waiting.popleft())
        else:
            self.idle.append(connection)


def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """A complete HTTP/1.1 POST, encoded once before the clock starts."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _open_loop(host: str, port: int, requests: list[bytes], rate: float, connections: int, max_connections: int,
                     timeout_s: float) -> dict[str, Any]:  # fmt: skip
    loop = asyncio.get_running_loop()
    pool = _Pool(loop, host, port, max_connections, expected=len(requests))
    await asyncio.gather(*(pool.open() for _ in range(connections)))
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    start = time.perf_counter() + 0.05
    for i, request in enumerate(requests):
        due = start + i / rate
        lag = due - time.perf_counter()
        if lag > 0.0005:  # sleep to the next due time; everything already due goes out at once
            await asyncio.sleep(lag)
        pool.submit(request, due)
    try:
        await asyncio.wait_for(pool.done.wait(), timeout_s)
    except TimeoutError:
        pool.errors += len(requests) - len(pool.latencies)
    elapsed = time.perf_counter() - start
    for connection in list(pool.idle):
        assert connection.transport is not None
        connection.transport.close()
    lat = np.array(pool.latencies or [float("nan")]) * 1000
    return {"target_rps": rate, "achieved_rps": round(len(pool.latencies) / elapsed, 1), "requests": len(requests),
            "errors": pool.errors, "connections": pool.opened, "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "max_ms": round(float(np.max(lat)), 2), "elapsed_s": elapsed}  # fmt: skip


def open_loop(url: str, bodies: list[bytes], rate: float, headers: dict[str, str], *, connections: int = 32,
              max_connections: int = 512, timeout_s: float = 60.0) -> dict[str, Any]:  # fmt: skip
    """POST ``bodies`` to ``url`` at ``rate`` per second on schedule; latency percentiles from the due times.

    With ``rate=float("inf")`` and ``max_connections=connections`` it is a closed loop instead:
    every body is due at once, and ``connections`` of them are in flight at a time.
    """
    rest = url.split("://", 1)[1]
    authority, _, path = rest.partition("/")
    host, _, port = authority.partition(":")
    requests = [http_request(host, int(port), "/" + path, body, headers) for body in bodies]
    run = _open_loop(host, int(port), requests, rate, connections, max_connections, timeout_s)
    if uvloop is not None:
        return uvloop.run(run)
    return asyncio.run(run)
