"""Load test of the sample_quality service on loopback: BentoML against bare Starlette.

Builds the product the way a lab would (generated exports → `tracseq ingest` → `tracseq train`
→ `tracseq bento build`), then for each server (``bentoml serve`` with 1 and 2 workers, and
the same predictor on bare Starlette/uvicorn, benchmarks/bare_serving_app.py) measures:

* start-up: process start to ``/readyz`` answering 200;
* single-record ``/predict`` at fixed arrival rates (open loop: each request is sent at its
  scheduled time and its latency counts from then, so a slow server cannot hide queueing);
  every request has its own sample id, so the prediction cache never answers;
* the same with every request repeated (cache hits), for the Bento;
* ``/batch_predict`` rows per second (batches of 1,000 distinct records, 2 at a time);
* ``/fast/batch_predict`` (the columnar contract: an Arrow IPC stream of records in, a table of
  answers out) rows per second at 1,000-, 10,000- and 100,000-row bodies, one and two at a time;
* for bare Starlette also a ``/hello`` route that does nothing: the ceiling of uvicorn plus the
  load generator on this machine;
* resident memory of the server's process tree after the load.

With every measurement: the server process tree's CPU seconds per request (or per 1,000 rows),
which the other engineers' load on this shared machine moves far less than wall-clock numbers,
and the load average. The load generator (benchmarks/load_generator.py) is one asyncio process
on the same 2-core machine.

Usage: python benchmarks/serving.py [--rates 100,300,600,1000] [--duration 15] [--servers bentoml-1w,bentoml-2w,starlette-1w]
                                    [--only-columnar] [--out benchmarks/out/serving.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd
import psutil
import pyarrow.ipc as ipc
from load_generator import open_loop  # benchmarks/ is on sys.path: this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_product(work: Path, env: dict[str, str]) -> tuple[str, Path]:
    """Exports → ingest → train (LightGBM) → Bento; returns the Bento tag and the bundle folder."""
    def tracseq(*args: str) -> str:
        result = subprocess.run([str(BIN / "tracseq"), *args], env=env, capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            raise SystemExit(f"tracseq {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    landing = work / "landing"
    if not (work / "data" / "lake" / "features").exists():
        tracseq("generate-exports", "--rows", "20000", "--files", "2", "--seed", "5", "--out", str(landing))
        tracseq("ingest", str(landing))
        tracseq("train", "--budget-s", "40", "--families", "lightgbm", "--workers", "1")
    tag = re.search(r"built (sample_quality:\S+)", tracseq("bento", "build")).group(1)  # type: ignore[union-attr]
    bundle = work / "bentoml" / "models" / "sample_quality" / tag.split(":", 1)[1]
    return tag, bundle


def request_bodies(n: int, seed: int, unique: bool) -> list[bytes]:
    """``n`` JSON records of recent generated samples; distinct sample ids unless ``unique`` is False."""
    from tracseq_dagster.generator import generate_samples

    start = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=450)  # the generator spans about a year
    pool = generate_samples(2000, seed=seed, start=start, id_offset=800_000).drop(columns=["qc_status"])
    records = json.loads(pool.to_json(orient="records", date_format="iso"))
    bodies = []
    for i in range(n):
        record = dict(records[i % len(records)])
        if unique:
            record["sample_id"] = f"TS-2026-{(i % 999_999) + 1:06d}"
        bodies.append(json.dumps(record).encode())
    return bodies


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (BentoML's workers are children)."""
    total = 0.0
    for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def with_cpu(pid: int, units: int, per: str, run: Any) -> dict[str, Any]:
    """``run()``'s result plus the server's and the load generator's CPU ms per ``per`` (``units`` of them) and the load average."""
    before, client = tree_cpu_s(pid), time.process_time()
    result = run()
    result[f"server_cpu_ms_per_{per}"] = round((tree_cpu_s(pid) - before) * 1000 / units, 3)
    result[f"client_cpu_ms_per_{per}"] = round((time.process_time() - client) * 1000 / units, 3)
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return result


def arrow_body(rows: int, seed: int) -> bytes:
    """``rows`` distinct generated records as an Arrow IPC stream (the columnar contract's body)."""
    import pyarrow as pa

    from tracseq_dagster.generator import generate_samples
    from tracseq_dagster.serving.columnar import ARROW_STREAM, write_table

    start = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=450)
    samples = generate_samples(rows, seed=seed, start=start, id_offset=100_000 * (1 + seed % 7)).drop(columns=["qc_status"])
    return write_table(pa.Table.from_pandas(samples, preserve_index=False), ARROW_STREAM)


def columnar_batches(url: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    """Rows per second through /fast/batch_predict: Arrow ``bodies`` (of equal rows), ``concurrency`` in flight.

    Sent by the load generator in a closed loop. Every body of a run must be new to the server:
    a body it has seen is answered from the prediction cache.
    """
    from tracseq_dagster.serving.columnar import ARROW_STREAM

    rows = ipc.open_stream(bodies[0]).read_all().num_rows
    result = open_loop(url, bodies, float("inf"), {"Content-Type": ARROW_STREAM}, connections=concurrency,
                       max_connections=concurrency, timeout_s=600)  # fmt: skip
    return {"batch_rows": rows, "batches": len(bodies), "concurrency": concurrency, "errors": result["errors"],
            "rows_per_s": round(rows * (len(bodies) - result["errors"]) / result["elapsed_s"])}  # fmt: skip


async def batches(url: str, rows: int, count: int, concurrency: int, headers: dict[str, str]) -> dict[str, Any]:
    """Rows per second through /batch_predict: ``count`` batches of ``rows`` distinct records."""
    payloads = [b'{"samples": [' + b",".join(request_bodies(rows, seed=40 + k, unique=True)) + b"]}" for k in range(count)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    errors = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    errors += response.status != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"batch_rows": rows, "batches": count, "errors": errors, "rows_per_s": round(rows * count / elapsed)}


def tree_rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return round(sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20, 1)


def serve(name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> tuple[subprocess.Popen, float]:
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    while True:
        try:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process, time.perf_counter() - started
        except OSError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"{name} died:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def measure(name: str, command: list[str], env: dict[str, str], port: int, work: Path, args: argparse.Namespace,
            routes: tuple[str, ...] = ("/predict",), columnar: bool = False) -> dict[str, Any]:  # fmt: skip
    process, startup = serve(name, command, env, port, work / f"{name}.log")
    base = f"http://127.0.0.1:{port}"
    headers = {"Content-Type": "application/json"}
    pid = process.pid
    result: dict[str, Any] = {"server": name, "startup_s": round(startup, 2), "single": {}, "cached": {}, "columnar": []}
    try:
        if columnar:
            runs = ((1_000, 20, 1), (10_000, 6, 1), (100_000, 3, 1), (10_000, 6, 2), (100_000, 4, 2))
            for k, (rows, count, concurrency) in enumerate(runs):
                seed = 100 * (k + 1)  # distinct bodies across runs and from the warm-up's
                warm_up = [arrow_body(rows, seed=seed + 50 + j) for j in range(2)]  # one per worker, not counted
                columnar_batches(base + "/fast/batch_predict", warm_up, 2)
                bodies = [arrow_body(rows, seed=seed + j) for j in range(count)]
                result["columnar"].append(with_cpu(pid, rows * count // 1000, "1k_rows",
                                                   lambda: columnar_batches(base + "/fast/batch_predict", bodies, concurrency)))
                print(name, "columnar", result["columnar"][-1], flush=True)
        if args.only_columnar:
            return result
        for r, route in enumerate(routes):
            # Seeds differ per route and per rate: the routes share the prediction cache, and a
            # record it has answered before would be a cache hit, not a prediction.
            # Warm-up, not counted: a fresh worker answers slowly for its first tens of seconds
            # (imports on first use, the log writer's first files, interpreter specialisation).
            open_loop(base + route, request_bodies(int(args.warmup_s * 100), seed=1000 * r + 7, unique=True), 100, headers)
            result["single"][route] = []
            for k, rate in enumerate(args.rates):
                bodies = request_bodies(int(rate * args.duration), seed=1000 * r + 10 + k, unique=True)
                result["single"][route].append(with_cpu(pid, len(bodies), "request",
                                                        lambda: open_loop(base + route, bodies, rate, headers)))
                print(name, route, result["single"][route][-1], flush=True)
                if result["single"][route][-1]["p99_ms"] > 5000:
                    break  # saturated: higher rates only queue longer
            if name.startswith("bentoml"):
                same = request_bodies(int(args.cached_rate * args.duration), seed=1000 * r + 9, unique=False)
                result["cached"][route] = with_cpu(pid, len(same), "request",
                                                   lambda: open_loop(base + route, same, args.cached_rate, headers))
                print(name, route, "cached", result["cached"][route], flush=True)
        result["batch"] = with_cpu(pid, 8, "1k_rows", lambda: asyncio.run(batches(base + "/batch_predict", 1000, 8, 2, headers)))
        print(name, result["batch"], flush=True)
        result["rss_mb"] = tree_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="100,300,600,1000")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup-s", type=float, default=25.0, help="seconds of uncounted load at 100/s per route")
    parser.add_argument("--cached-rate", type=float, default=600.0, help="rate of the run whose requests all repeat one record")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "serving")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "serving.json")
    parser.add_argument("--servers", default="bentoml-1w,bentoml-2w,starlette-1w")
    parser.add_argument("--only-columnar", action="store_true", help="only the columnar batch route, on the Bento servers")
    args = parser.parse_args()
    servers = args.servers.split(",")
    args.rates = [float(r) for r in args.rates.split(",")]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "dagster_home").mkdir(exist_ok=True)
    (work / "dagster_home" / "dagster.yaml").touch()
    env = {**os.environ, "TRACSEQ_DATA_DIR": str(work / "data"), "DAGSTER_HOME": str(work / "dagster_home"),
           "BENTOML_HOME": str(work / "bentoml"), "DO_NOT_TRACK": "1", "TRACSEQ_PREDICTION_LOG": str(work / "prediction_log")}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("TRACSEQ_API_TOKEN", None)
    tag, bundle = build_product(work, env)
    print("serving", tag, flush=True)
    results = []
    for workers in (1, 2):
        if f"bentoml-{workers}w" not in servers:
            continue
        port = free_port()
        results.append(measure(f"bentoml-{workers}w", [str(BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
                               {**env, "TRACSEQ_BENTO_WORKERS": str(workers)}, port, work, args,
                               routes=("/predict", "/fast/predict"), columnar=True))  # fmt: skip
    if "starlette-1w" in servers and not args.only_columnar:
        port = free_port()
        results.append(measure("starlette-1w", [str(BIN / "uvicorn"), "benchmarks.bare_serving_app:app", "--host", "127.0.0.1",
                                                "--port", str(port), "--log-level", "warning", "--no-access-log"],
                               {**env, "TRACSEQ_BUNDLE_DIR": str(bundle)}, port, work, args, routes=("/predict", "/hello")))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"bento": tag, "results": results}, indent=2))
    print(markdown(results))


def markdown(results: list[dict[str, Any]]) -> str:
    """The tables of BENCHMARKS.md."""
    lines = ["| server | route | target req/s | achieved req/s | p50 ms | p99 ms | errors | server CPU ms/request | load generator CPU ms/request | load avg |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        for route, runs in r["single"].items():
            labelled = [(f"`{route}`", run) for run in runs]
            if r["cached"].get(route):
                labelled.append((f"`{route}` (cache hits)", r["cached"][route]))
            for label, run in labelled:
                lines.append(f"| {r['server']} | {label} | {run['target_rps']:.0f} | {run['achieved_rps']:.0f} | {run['p50_ms']:.0f} | "
                             f"{run['p99_ms']:.0f} | {run['errors']} | {run['server_cpu_ms_per_request']:.2f} | {run['client_cpu_ms_per_request']:.2f} | "
                             f"{run['load_avg_1m']} |")  # fmt: skip
    lines += ["", "| server | body rows | bodies | in flight | rows/s | server CPU ms per 1k rows | errors | load avg |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for run in r.get("columnar", []):
            lines.append(f"| {r['server']} | {run['batch_rows']:,} | {run['batches']} | {run['concurrency']} | {run['rows_per_s']:,} | "
                         f"{run['server_cpu_ms_per_1k_rows']:.0f} | {run['errors']} | {run['load_avg_1m']} |")  # fmt: skip
    lines += ["", "| server | start-up to ready (s) | JSON batch rows/s (1,000-row batches, 2 at a time) | CPU ms per 1k rows | RSS after load (MB) |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['server']} | {r['startup_s']} | {r['batch']['rows_per_s']} | {r['batch']['server_cpu_ms_per_1k_rows']:.0f} | {r['rss_mb']} |"
              for r in results if "batch" in r]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
