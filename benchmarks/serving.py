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

Per family (``--per-family``): one sample_quality champion of each family that can win (each
trained by ``tracseq train --families <one>`` on a copy of one ingested lake of 20,000
samples), its Bento served with two workers: ``/fast/batch_predict`` rows per second (four
100,000-row Arrow bodies, two in flight) and ``/fast/predict`` at 1,000 requests/s, plus the
champion's scorer alone in process (CPU µs per row; for a linear champion also the occlusion
it used before). Goals: ≥ 100,000 rows/s and p99 ≤ 50 ms.

Usage: python benchmarks/serving.py [--rates 100,300,600,1000] [--duration 15] [--servers bentoml-1w,bentoml-2w,starlette-1w]
                                    [--only-columnar] [--out benchmarks/out/serving.json]
       python benchmarks/serving.py --per-family [--families logistic,random_forest,...] [--family-budget-s 30]
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


def tracseq_command(env: dict[str, str]) -> Any:
    """``tracseq(*args)``: the CLI in ``env``, its stdout; a failure stops the benchmark."""

    def tracseq(*args: str) -> str:
        result = subprocess.run([str(BIN / "tracseq"), *args], env=env, capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            raise SystemExit(f"tracseq {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    return tracseq


def ingest_exports(work: Path, env: dict[str, str]) -> None:
    """20,000 generated samples in two exports, ingested into ``work``'s lake (once)."""
    tracseq = tracseq_command(env)
    tracseq("generate-exports", "--rows", "20000", "--files", "2", "--seed", "5", "--out", str(work / "landing"))
    tracseq("ingest", str(work / "landing"))


def build_bento(work: Path, env: dict[str, str]) -> tuple[str, Path]:
    """``tracseq bento build``: the Bento tag and sample_quality's bundle folder."""
    tag = re.search(r"built (tracseq_predictions:\S+)", tracseq_command(env)("bento", "build")).group(1)  # type: ignore[union-attr]
    return tag, work / "bentoml" / "models" / "tracseq_predictions" / tag.split(":", 1)[1]


def build_product(work: Path, env: dict[str, str]) -> tuple[str, Path]:
    """Exports → ingest → train (LightGBM) → Bento; returns the Bento tag and the bundle folder."""
    if not (work / "data" / "lake" / "features").exists():
        ingest_exports(work, env)
        tracseq_command(env)("train", "--model", "sample_quality", "--budget-s", "40", "--families", "lightgbm", "--workers", "1")
    return build_bento(work, env)


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
                result["columnar"].append(
                    with_cpu(
                        pid,
                        rows * count // 1000,
                        "1k_rows",
                        lambda: columnar_batches(base + "/fast/batch_predict", bodies, concurrency),
                    )
                )
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
                result["single"][route].append(
                    with_cpu(pid, len(bodies), "request", lambda: open_loop(base + route, bodies, rate, headers))
                )
                print(name, route, result["single"][route][-1], flush=True)
                if result["single"][route][-1]["p99_ms"] > 5000:
                    break  # saturated: higher rates only queue longer
            if name.startswith("bentoml"):
                same = request_bodies(int(args.cached_rate * args.duration), seed=1000 * r + 9, unique=False)
                result["cached"][route] = with_cpu(
                    pid, len(same), "request", lambda: open_loop(base + route, same, args.cached_rate, headers)
                )
                print(name, route, "cached", result["cached"][route], flush=True)
        result["batch"] = with_cpu(pid, 8, "1k_rows", lambda: asyncio.run(batches(base + "/batch_predict", 1000, 8, 2, headers)))
        print(name, result["batch"], flush=True)
        result["rss_mb"] = tree_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return result


def product_env(work: Path) -> dict[str, str]:
    """The CLI's and the server's environment for a product built in ``work``."""
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    (work / "dagster_home" / "dagster.yaml").touch()
    env = {**os.environ, "TRACSEQ_DATA_DIR": str(work / "data"), "DAGSTER_HOME": str(work / "dagster_home"),
           "BENTOML_HOME": str(work / "bentoml"), "DO_NOT_TRACK": "1", "TRACSEQ_PREDICTION_LOG": str(work / "prediction_log")}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("TRACSEQ_API_TOKEN", None)
    return env


def in_process_scoring(bundle: Path, rows: int = 20_000) -> dict[str, Any]:
    """The champion's scorer alone on ``rows`` generated feature rows: µs of CPU per row, and its method.

    For a linear champion also the occlusion it replaced (the same scorer with the linear
    attribution switched off, as every non-booster was scored before): the before/after.
    """
    from tracseq_dagster.features import compute_features
    from tracseq_dagster.generator import generate_samples
    from tracseq_dagster.serving.predictor import SampleQualityPredictor

    start = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=450)
    samples = generate_samples(rows, seed=77, start=start, id_offset=600_000)
    features = compute_features(samples, samples, as_of=pd.Timestamp.now(tz="UTC"))

    def cpu_us_per_row(scorer: Any) -> float:
        scorer.score(features.iloc[:2000])  # the one-time checks and compilations, not counted
        began = time.process_time()
        scorer.score(features)
        return round((time.process_time() - began) * 1e6 / len(features), 2)

    def fresh() -> Any:
        return SampleQualityPredictor(bundle).variants["champion"].scorer

    scorer = fresh()
    out = {"family": scorer.family, "method": scorer.method, "scorer_cpu_us_per_row": cpu_us_per_row(scorer)}
    if scorer.method == "linear":
        before = fresh()
        before._linear, before.method = None, "occlusion"  # the scorer as it was: occlusion for every non-booster
        out["occlusion_cpu_us_per_row"] = cpu_us_per_row(before)
    return out


def per_family(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """One champion per family (``tracseq train --families <one>`` on a copy of one ingested lake),
    its Bento served with two workers: columnar rows/s (100,000-row bodies, two in flight) and
    ``/fast/predict`` at 1,000 requests/s, plus the scorer alone in process."""
    import shutil

    lake = work / "lake"
    if not (lake / "data" / "lake" / "features").exists():
        ingest_exports(lake, product_env(lake))
    results = []
    for family in args.families.split(","):
        folder = work / f"family-{family}"
        if not (folder / "data").exists():
            shutil.copytree(lake / "data", folder / "data")
        env = product_env(folder)
        if not (folder / "trained").exists():
            try:  # trials on at most 5,000 rows, 3 folds: the slow families finish some within the budget
                tracseq_command(env)("train", "--model", "sample_quality", "--families", family, "--budget-s", str(args.family_budget_s),
                                     "--workers", "1", "--max-ece", "1", "--max-brier", "2", "--max-sweep-rows", "5000", "--cv-folds", "3")  # fmt: skip
            except SystemExit as failed:
                print(family, "not trained:", str(failed)[-400:], flush=True)
                continue
            (folder / "trained").touch()
        if args.train_only:
            continue
        tag, bundle = build_bento(folder, env)
        result: dict[str, Any] = {"family": family, "bento": tag, **in_process_scoring(bundle)}
        print(family, "in process", result, flush=True)
        port = free_port()
        process, startup = serve(f"bentoml-2w-{family}", [str(BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
                                 {**env, "TRACSEQ_BENTO_WORKERS": "2"}, port, folder / "server.log")  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            result["startup_s"] = round(startup, 2)
            columnar_batches(base + "/fast/batch_predict", [arrow_body(10_000, seed=950 + j) for j in range(2)], 2)  # warm-up
            bodies = [arrow_body(100_000, seed=900 + j) for j in range(4)]
            result["columnar"] = with_cpu(
                process.pid, 400, "1k_rows", lambda: columnar_batches(base + "/fast/batch_predict", bodies, 2)
            )
            print(family, "columnar", result["columnar"], flush=True)
            if result["columnar"]["errors"]:  # a 100,000-row body outlived the service's 30 s timeout: 10,000-row bodies
                small = [arrow_body(10_000, seed=920 + j) for j in range(8)]
                result["columnar_10k"] = with_cpu(
                    process.pid, 80, "1k_rows", lambda: columnar_batches(base + "/fast/batch_predict", small, 2)
                )
                print(family, "columnar 10k", result["columnar_10k"], flush=True)
            headers = {"Content-Type": "application/json"}
            open_loop(base + "/fast/predict", request_bodies(int(args.warmup_s * 100), seed=7, unique=True), 100, headers)
            single = request_bodies(int(1000 * args.duration), seed=10, unique=True)
            result["single"] = with_cpu(
                process.pid, len(single), "request", lambda: open_loop(base + "/fast/predict", single, 1000, headers)
            )
            print(family, "single", result["single"], flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
        results.append(result)
        (folder / "result.json").write_text(json.dumps(result, indent=2))
    return results


def markdown_families(results: list[dict[str, Any]]) -> str:
    """The per-family table of BENCHMARKS.md."""
    lines = ["| family | attribution | scorer CPU µs/row (in process) | columnar rows/s (100k-row bodies, 2 in flight) | server CPU ms per 1k rows | "
             "`/fast/predict` at 1,000/s: achieved | p50 ms | p99 ms | errors | load avg |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        c, s = r.get("columnar_10k", r["columnar"]), r["single"]
        scorer = f"{r['scorer_cpu_us_per_row']}" + (
            f" (occlusion: {r['occlusion_cpu_us_per_row']})" if "occlusion_cpu_us_per_row" in r else ""
        )
        rows = f"{c['rows_per_s']:,}" + (" (10k-row bodies: 100k-row ones timed out)" if "columnar_10k" in r else "")
        lines.append(f"| {r['family']} | {r['method']} | {scorer} | {rows} | {c['server_cpu_ms_per_1k_rows']:.0f} | "
                     f"{s['achieved_rps']:.0f} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | {s['errors'] + c['errors']} | "
                     f"{c['load_avg_1m']}–{s['load_avg_1m']} |")  # fmt: skip
    return "\n".join(lines)


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
    parser.add_argument(
        "--per-family",
        action="store_true",
        help="one champion per family: columnar rows/s and /fast/predict p99 at 1,000/s, two workers each",
    )
    parser.add_argument("--families", default="logistic,random_forest,gradient_boosting,xgboost,lightgbm,mlp")
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="per-family mode: train the champions (kept in --work) and stop; a later run measures them",
    )
    parser.add_argument("--family-budget-s", type=float, default=30.0, help="each family's sweep budget (per-family mode)")
    args = parser.parse_args()
    servers = args.servers.split(",")
    args.rates = [float(r) for r in args.rates.split(",")]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.per_family:
        results = per_family(args, work / "families")
        if args.train_only:
            return
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_name(args.out.stem + "_families.json").write_text(json.dumps(results, indent=2))
        print(markdown_families(results))
        return
    env = product_env(work)
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
    lines += [
        "",
        "| server | body rows | bodies | in flight | rows/s | server CPU ms per 1k rows | errors | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
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
