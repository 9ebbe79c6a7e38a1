"""Worker processes for one AutoML sweep, and the relay that brings their trials back as they end.

Why processes, one thread each: on the shared 2-core machine two OpenMP threads per fit made a
LightGBM fold several times *slower* (threads spin-waiting on cores that other work holds), while
two single-threaded fits in two processes each keep a core busy and never wait on one another.
The engine (:func:`~tracseq_dagster.automl.engine.run_automl`) keeps one group of families in its
own process and sends each other group to a worker here (see its module docstring).

Why ``forkserver``: a ``fork`` of a process that has already run OpenMP (LightGBM, XGBoost,
histogram boosting) can deadlock in the child, and ``spawn`` re-imports scikit-learn, LightGBM,
XGBoost and Optuna in every worker (seconds on a busy machine). The fork server is a fresh,
single-threaded process that imports the engine once (:data:`PRELOAD`, :mod:`.worker_boot`, which
also keeps the workers from re-running the caller's script) and forks each worker from there,
before any OpenMP runtime started. The pool is kept for the life of the process, so only the
first sweep pays for starting it: :func:`warm_up` starts it in a background thread (starting a
worker blocks until the server has imported the engine: seconds on a busy machine), and
:meth:`WorkerPool.wait_ready` says whether it is up.

Why a queue: the caller's ``on_trial`` (progress bars, logs) lives in the caller's process. A
worker puts every finished trial on a queue inherited at its start; a thread in the caller
(:func:`relay`) hands each record to the callback, tagged with the run it belongs to so that a
late record of an earlier, abandoned run is dropped.

Why each worker watches its caller: a caller killed outright (SIGKILL, or SIGTERM without
handlers) runs no ``atexit``. A worker busy in a fit would finish it and wait on its call queue
forever, and the fork server lives as long as any worker does (each worker holds the server's
"alive" pipe so that it could fork more). So every worker opens a pidfd on the caller and a
daemon thread ends the worker when the caller exits (``os.pidfd_open``: Linux 5.3+, exact even
if the PID is reused); the last worker's end then ends the fork server.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import queue
import select
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

#: Modules the fork server imports once, so that workers forked from it start in milliseconds.
PRELOAD = ["tracseq_dagster.automl.worker_boot"]
#: How long a warm-up task holds its worker (seconds).
READY_PAUSE_S = 0.05
#: How often the relay thread checks whether its run ended (seconds).
RELAY_POLL_S = 0.05

_QUEUE: Any = None  # in a worker: the queue its records go to (set by _init_worker)
_POOLS: dict[int, WorkerPool] = {}
_LOCK = threading.Lock()


class WorkerPool:
    """``size`` single-threaded worker processes (forkserver) and the queue they report trials on."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        self.size = size
        self.queue: Any = context.Queue()
        self.executor = ProcessPoolExecutor(
            max_workers=size, mp_context=context, initializer=_init_worker, initargs=(self.queue, os.getpid())
        )
        self.started: list[Future[Any]] = []  # the warm-up's tasks: done once every worker runs
        self._starter: threading.Thread | None = None

    def start(self) -> None:
        """Start the workers in a background thread (once), see :func:`warm_up`."""
        with _LOCK:
            if self._starter is None:
                self._starter = threading.Thread(target=self._start, name="automl-workers-start", daemon=True)
                self._starter.start()

    def _start(self) -> None:
        self.started = [self.submit(_ready) for _ in range(self.size)]

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the workers to run; True when they all do."""
        self.start()
        deadline = time.monotonic() + max(timeout_s, 0.0)
        assert self._starter is not None
        self._starter.join(max(timeout_s, 0.0))
        if self._starter.is_alive():
            return False
        done, _ = wait(self.started, timeout=max(deadline - time.monotonic(), 0.0))
        return len(done) == len(self.started)

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``function(*args)`` in a worker (both must pickle: module-level functions, plain data)."""
        return self.executor.submit(function, *args)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.queue.close()


def pool(size: int) -> WorkerPool:
    """The process's pool of ``size`` workers, started on first use and kept (a broken one is replaced)."""
    with _LOCK:
        existing = _POOLS.get(size)
        if existing is not None and not getattr(existing.executor, "_broken", False):
            return existing
        if existing is not None:
            existing.shutdown()
        made = _POOLS[size] = WorkerPool(size)
        return made


def warm_up(size: int) -> None:
    """Start ``size`` workers now, in the background, so that they are ready when the sweep begins."""
    pool(size).start()


def _ready() -> bool:
    time.sleep(READY_PAUSE_S)  # keep this worker busy a moment, so that every warm-up task starts its own worker
    return True


def _init_worker(records: Any, caller: int) -> None:
    global _QUEUE
    _QUEUE = records
    _end_with_caller(caller)


def _end_with_caller(caller: int) -> None:
    """End this worker when process ``caller`` exits (see the module docstring)."""
    if not hasattr(os, "pidfd_open"):
        return  # not Linux: the worker still ends at the caller's clean exit (atexit)
    try:
        handle = os.pidfd_open(caller)
    except ProcessLookupError:
        os._exit(1)  # the caller is already gone

    def watch() -> None:
        select.select([handle], [], [])  # readable once the caller has exited
        os._exit(1)

    threading.Thread(target=watch, name="automl-caller-watch", daemon=True).start()


def sender(run: str) -> Callable[[Any], None]:
    """In a worker: a callback that puts ``record`` on the caller's queue, tagged with ``run``."""
    return _Sender(run)


class _Sender:
    """Picklable (a worker builds it from the run's tag); puts nothing when not in a worker."""

    def __init__(self, run: str) -> None:
        self.run = run

    def __call__(self, record: Any) -> None:
        if _QUEUE is not None:
            _QUEUE.put((self.run, record))


@contextmanager
def relay(workers: WorkerPool, callback: Callable[[Any], None] | None) -> Iterator[str]:
    """A run tag for the workers' records; while the block runs, a thread passes each of this
    run's records to ``callback``. On leaving, the records already queued are delivered too."""
    run = uuid.uuid4().hex
    stop = threading.Event()

    def deliver(timeout: float) -> bool:
        try:
            tag, record = workers.queue.get(timeout=timeout)
        except queue.Empty:
            return False
        if tag == run and callback is not None:
            callback(record)
        return True

    def loop() -> None:
        while not stop.is_set():
            deliver(RELAY_POLL_S)

    thread = threading.Thread(target=loop, name=f"automl-relay-{run[:8]}", daemon=True)
    thread.start()
    try:
        yield run
    finally:
        stop.set()
        thread.join()
        while deliver(RELAY_POLL_S):  # what the workers put before their results came back
            pass


@atexit.register
def _shutdown_all() -> None:
    for workers in _POOLS.values():
        workers.shutdown()
    _POOLS.clear()
