"""Load test of ``GET /predict``: a realistic model behind ``uvicorn serving.app:app``.

    .venv/bin/python benchmarks/predict_load.py [--concurrency 32] [--seconds 15] [--workers 2]
                                                [--rate 0] [--rows 200000] [--access-log]

1. Trains the model volume_model keeps (``hist_gbm_ratio``: a HistGradientBoostingRegressor of
   the ratio to the moving average, 100 trees of up to 31 leaves) on --rows synthetic rows with
   heavy-tailed volumes, and publishes it into a temp object store.
2. Times one prediction in-process: the compiled predictor vs ``estimator.predict``.
3. Starts uvicorn (--workers processes, OMP_NUM_THREADS=1, access log off unless --access-log)
   as a subprocess, waits for /health, and checks a few answers against in-process predictions.
4. Drives /predict over --concurrency keep-alive HTTP/1.1 connections (opened 2 ms apart, see
   open_connections) for --seconds, after a 2 s warm-up, with varied query values, from one
   asyncio process (raw streams, uvloop if installed) so the client costs little CPU. Closed loop by default: each connection sends its
   next request when the answer arrives (throughput at that concurrency). With --rate R the
   requests are scheduled at R/s in total and latency counts from the scheduled time, so a
   stalled server is not hidden by the client waiting for it (no coordinated omission).
Client and server share the machine. Target: >= 1,000 requests/s with p99 <= 50 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from market_assets.model_store import publish_model  # noqa: E402
from market_assets.schema import FEATURES  # noqa: E402
from resources.object_store import ObjectStore  # noqa: E402
from serving.predictor import make_predictor, to_volume  # noqa: E402


def synthetic_rows(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Features like the stock set's: lognormal price levels, Pareto-tailed volumes."""
    rng = np.random.default_rng(seed)
    vol_moving_avg = np.round(rng.pareto(1.3, n) * 40_000 + rng.lognormal(9, 1.2, n), 2)
    adj_close_rolling_med = np.round(rng.lognormal(3.2, 1.1, n), 4)
    liquidity = 1 + 0.35 * np.tanh(np.log(adj_close_rolling_med / 25))
    noise = rng.lognormal(0, 0.45, n) * np.where(rng.random(n) < 0.02, rng.pareto(1.5, n) + 1, 1)
    volume = np.round(vol_moving_avg * liquidity * noise)
    return np.column_stack([vol_moving_avg, adj_close_rolling_med]).astype(np.float64), volume


def train(rows: int):
    from threadpoolctl import threadpool_limits

    from market_assets.model import candidates

    X, y = synthetic_rows(rows)
    # The model volume_model keeps (market_assets/model.py): HGB of the ratio to the moving
    # average, 100 trees of at most 31 leaves, scaled back by max(vol_moving_avg, 1).
    model = candidates()["hist_gbm_ratio"]()
    t0 = time.perf_counter()
    # One OpenMP thread: on a shared, busy machine OpenMP's spinning threads turned this 3 s fit
    # into 55-220 s.
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(X, y)
    seconds = time.perf_counter() - t0
    trees = model.regressor_._predictors
    nodes = sum(len(p[0].nodes) for p in trees)
    depth = max(int(p[0].nodes["depth"].max()) for p in trees)
    print(
        f"model: hist_gbm_ratio (HGB absolute_error), {len(trees)} trees, {nodes:,} nodes, "
        f"max depth {depth}, trained on {rows:,} rows in {seconds:.1f} s"
    )
    return model, X


def time_predictions(model, X: np.ndarray) -> None:
    from threadpoolctl import threadpool_limits

    compiled = make_predictor(model)
    row = [float(v) for v in X[12]]
    one = np.array([row])
    assert compiled.predict_one(row) == model.predict(one)[0]

    def per_call(fn, number: int) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    fast = per_call(lambda: compiled.predict_one(row), 2000)
    slow = per_call(lambda: model.predict(one), 100)
    with threadpool_limits(limits=1, user_api="openmp"):
        slow_1 = per_call(lambda: model.predict(one), 100)
    print(
        f"one prediction in-process: compiled {fast:.0f} us, estimator.predict {slow:.0f} us "
        f"(default OpenMP threads) / {slow_1:.0f} us (1 thread) = {slow_1 / fast:.0f}x"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path, port: int, workers: int, access_log: bool) -> subprocess.Popen:
    env = {**os.environ, "DATA_DIR": str(work), "OMP_NUM_THREADS": "1"}
    for name in ("S3_BUCKET", "S3_PREFIX", "S3_ENDPOINT_URL"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "uvicorn", "serving.app:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    if not access_log:
        command.append("--no-access-log")
    log = (work / "uvicorn.log").open("wb")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_health(port: int, server: subprocess.Popen, log: Path, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"uvicorn exited with {server.returncode}:\n{tail}")
        try:
            status, body = get(port, "/health")
            health = json.loads(body)
            if status == 200 and health["status"] == "ok":
                return health
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"/health did not report a model within {timeout:.0f} s")


def process_tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid] + [p for child in children for p in process_tree(int(child))]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux /proc), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def queries(X: np.ndarray, n: int = 4096, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(0, len(X), n)]
    names = FEATURES
    return [f"/predict?{names[0]}={a!r}&{names[1]}={b!r}" for a, b in rows.tolist()]


def check_answers(port: int, model, paths: list[str]) -> None:
    predictor = make_predictor(model)
    for path in paths[:50]:
        status, body = get(port, path)
        query = dict(part.split("=") for part in path.split("?", 1)[1].split("&"))
        expected = to_volume(predictor.predict_one([float(query[f]) for f in FEATURES]))
        assert status == 200 and int(body) == expected, (path, status, body, expected)


async def open_connections(port: int, n: int) -> list[tuple]:
    """Opened one at a time, 2 ms apart. Opened all at once, they would all land on whichever
    uvicorn worker wakes first (it accepts the whole backlog in one go) and leave the others
    idle for the whole run, which real clients arriving over time do not do."""
    streams = []
    for _ in range(n):
        streams.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.002)
    return streams


async def connection(
    port: int,
    stream: tuple,
    requests: list[bytes],
    offset: int,
    stop: float,
    latencies: list[float],
    counts: dict,
    schedule: tuple[float, float, int] | None,
) -> None:
    """One keep-alive connection, one request in flight; reconnects after an error."""
    reader, writer = stream
    sent = 0
    while True:
        if schedule is not None:
            start, interval, stride = schedule
            due = start + (sent * stride + offset) * interval
            if due >= stop:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            due = time.perf_counter()
            if due >= stop:
                break
        request = requests[(offset + sent) % len(requests)]
        sent += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            ok = head.startswith(b"HTTP/1.1 200 ") and body.isdigit()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            ok = False
            if writer is not None:
                writer.close()
            reader = writer = None
        latencies.append(time.perf_counter() - due)
        counts["ok" if ok else "errors"] += 1
    if writer is not None:
        writer.close()


async def drive(
    port: int, paths: list[str], concurrency: int, seconds: float, rate: float
) -> tuple[list[float], dict, float]:
    requests = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() for p in paths]
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0}
    streams = await open_connections(port, concurrency)
    start = time.perf_counter()
    stop = start + seconds
    schedule = (start, 1 / rate, concurrency) if rate else None
    await asyncio.gather(
        *(
            connection(port, stream, requests, i, stop, latencies, counts, schedule)
            for i, stream in enumerate(streams)
        )
    )
    return latencies, counts, time.perf_counter() - start


def run_load(port: int, paths: list[str], concurrency: int, seconds: float, rate: float):
    try:
        import uvloop

        return uvloop.run(drive(port, paths, concurrency, seconds, rate))
    except ImportError:
        return asyncio.run(drive(port, paths, concurrency, seconds, rate))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rate", type=float, default=0, help="requests/s in total (0: closed loop)"
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--access-log", action="store_true", help="keep uvicorn's access log on")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, cores={cores}")
    work = Path(tempfile.mkdtemp(prefix="predict_load_"))
    server = None
    try:
        model, X = train(args.rows)
        time_predictions(model, X)
        published = publish_model(
            ObjectStore(local_dir=str(work / "objects")),
            model,
            metrics={"rows": args.rows},
            log_text="benchmarks/predict_load.py",
        )
        print(f"published {published.version} ({published.model_bytes / 1e6:.1f} MB pickle)")

        port = free_port()
        t0 = time.perf_counter()
        server = start_server(work, port, args.workers, args.access_log)
        health = wait_for_health(port, server, work / "uvicorn.log")
        paths = queries(X)
        check_answers(port, model, paths)
        print(
            f"uvicorn: {args.workers} workers, access log {'on' if args.access_log else 'off'}, "
            f"first /health ok after {time.perf_counter() - t0:.1f} s "
            f"(predictor {health['predictor']}); 50 answers match in-process predictions"
        )
        run_load(port, paths, args.concurrency, 2.0, 0)  # warm-up: every worker up and hot
        load_before = os.getloadavg()[0]
        server_pids = process_tree(server.pid)
        per_process_before = [cpu_seconds([pid]) for pid in server_pids]
        cpu_before = sum(per_process_before), time.process_time()
        latencies, counts, elapsed = run_load(
            port, paths, args.concurrency, args.seconds, args.rate
        )
        per_process = [
            cpu_seconds([pid]) - before
            for pid, before in zip(server_pids, per_process_before, strict=True)
        ]
        server_cpu = sum(per_process)
        client_cpu = time.process_time() - cpu_before[1]
        busiest = sorted((c / elapsed for c in per_process), reverse=True)[: args.workers]
        ms = np.percentile(np.array(latencies) * 1e3, [50, 90, 99, 100])
        total = counts["ok"] + counts["errors"]
        mode = f"open loop at {args.rate:,.0f}/s" if args.rate else "closed loop"
        print(
            f"load: {args.concurrency} connections, {mode}, {elapsed:.1f} s, "
            f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}"
        )
        print(
            f"requests: {total:,} = {total / elapsed:,.0f} requests/s, errors: {counts['errors']}"
        )
        print(f"latency ms: p50 {ms[0]:.2f}, p90 {ms[1]:.2f}, p99 {ms[2]:.2f}, max {ms[3]:.2f}")
        print(
            f"CPU per request: server {server_cpu / total * 1e6:.0f} us "
            f"({server_cpu / elapsed:.2f} cores; by worker "
            f"{', '.join(f'{c:.2f}' for c in busiest)}), "
            f"client {client_cpu / total * 1e6:.0f} us ({client_cpu / elapsed:.2f} cores)"
        )
        met = total / elapsed >= 1000 and ms[2] <= 50 and counts["errors"] == 0
        print(
            f"target (>= 1,000 requests/s, p99 <= 50 ms, no errors): {'met' if met else 'MISSED'}"
        )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
