"""Load on the real controller: status and compare of a finished experiment at 1, 8, 32 clients.

Builds a SQLite store holding one finished, finalized experiment (``bench/compare.py``'s planted
view: every variant x seed finished, with 8 metrics and a learning curve each), starts the
controller as ``ablate serve`` does (``uvicorn service.api:create_app_from_env --factory``, a
subprocess on 127.0.0.1, a free port; Ray and MLflow pointed at a closed port, the reconciler
at startup only, which finds nothing to do), then drives, for a fixed time per cell,

* ``GET /experiments/{id}``                   (status, what ``ablate watch`` polls),
* ``GET /experiments/{id}/compare?format=json``,
* ``GET /experiments/{id}/compare?format=<heavy>`` (html by default: table + inline PNGs),

with closed-loop clients (each sends its next request when the last answer is read) over
HTTP/1.1 keep-alive, from one asyncio process that speaks raw HTTP: the cheapest honest
generator that needs nothing beyond the venv. It shares the machine's cores with the
controller, so on a small box the figures are a floor, not the server's ceiling.

Loopback only, bounded (``--duration`` per cell, a 60 s timeout per request), stops by itself
and stops the controller it started. Prints one table and whether each goal is met.

    .venv/bin/python bench/load.py [--duration 5] [--clients 1,8,32] [--heavy html] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compare import plant_store, planted_view  # noqa: E402

if TYPE_CHECKING:
    from service.stack.embedded import Stack
    from service.store import Store

STATUS_GOAL = (500.0, 100.0, 8)
"""Status: at least 500 req/s with p99 under 100 ms at 8 clients."""
COMPARE_GOAL = (200.0, 8)
"""Compare (json): at least 200 req/s at 8 clients."""
REQUEST_TIMEOUT_S = 60.0


@dataclass
class Cell:
    """One endpoint at one concurrency."""

    name: str
    clients: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_ms: float
    """The controller's CPU time per answered request (user + system): what the server costs,
    whoever else shares the cores."""
    client_cpu_ms: float
    """The generator's CPU time per answered request."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# ---- the generator: raw HTTP/1.1 keep-alive ------------------------------------------------

async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length or chunked body); returns its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _client(port: int, path: str, deadline: float, latencies: list[float],
                  errors: list[int], limit: int | None = None) -> None:
    """Requests one after another until ``deadline`` (or ``limit`` tries); 200s' latencies
    go to ``latencies``, anything else (a status, or 0 for a broken connection) to ``errors``."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Accept: */*\r\n\r\n").encode()
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    tries = 0
    while time.perf_counter() < deadline and (limit is None or tries < limit):
        tries += 1
        start = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = conn
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError):
            errors.append(0)
            if conn is not None:
                conn[1].close()
            conn = None
            continue
        if status == 200:
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(status)
    if conn is not None:
        conn[1].close()


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _drive(port: int, path: str, clients: int, duration: float) -> tuple[
        list[float], list[int], float]:
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, path, start + duration, latencies, errors)
                           for _ in range(clients)))
    return latencies, errors, time.perf_counter() - start


def _cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def measure(server_pid: int, port: int, name: str, path: str, clients: int,
            duration: float) -> Cell:
    server, client = _cpu_s(server_pid), time.process_time()
    latencies, errors, seconds = asyncio.run(_drive(port, path, clients, duration))
    server, client = _cpu_s(server_pid) - server, time.process_time() - client
    ms = sorted(x * 1000 for x in latencies)
    n = max(len(latencies), 1)
    return Cell(name=name, clients=clients, requests=len(latencies), errors=len(errors),
                seconds=seconds, p50_ms=_quantile(ms, 0.5), p99_ms=_quantile(ms, 0.99),
                max_ms=ms[-1] if ms else 0.0, server_cpu_ms=server * 1000 / n,
                client_cpu_ms=client * 1000 / n)


def once_ms(port: int, path: str) -> float:
    """One request on a fresh connection (the first, cold answer)."""
    latencies: list[float] = []
    errors: list[int] = []
    asyncio.run(_client(port, path, time.perf_counter() + REQUEST_TIMEOUT_S, latencies, errors,
                        limit=1))
    if errors or not latencies:
        raise RuntimeError(f"GET {path} failed: {errors}")
    return latencies[0] * 1000


# ---- the controller ------------------------------------------------------------------------

def finished_store(data_dir: Path, variants: int, seeds: int) -> tuple[str, str]:
    """The planted experiment in ``data_dir/bench.db``, every trial done and the experiment
    finalized (so the controller's reconciler leaves it alone); (its id, a description)."""
    planted, exp_id = plant_store(planted_view(variants, seeds), data_dir)
    store = cast("Store", planted)
    for t in store.runnable_trials(exp_id):  # planted_view leaves every 10th variant a seed
        store.mark_failed(t.id, "bench: left unfinished")
    store.mark_finalized(exp_id)
    exp = store.get_experiment(exp_id)
    store.close()
    return exp_id, (f"{len(exp.variants)} variants x {seeds} seeds = {len(exp.trials)} "
                    f"trials, {exp.status}")


def progress_writer(data_dir: Path, hz: float) -> tuple[threading.Event, threading.Thread]:
    """Another experiment with a running trial that reports progress ``hz`` times a second
    (as a job's trials do), from this process; set the event to stop it. Each commit moves the
    database on, so the controller cannot vouch for a cached answer without its revision query:
    the path a status poll takes while anything else in the store runs."""
    planted, exp_id = plant_store(planted_view(10, 1), data_dir)  # v009 seed 0 stays running
    store = cast("Store", planted)
    (trial,) = store.runnable_trials(exp_id)
    stop = threading.Event()

    def run() -> None:
        step = 0
        while not stop.wait(1 / hz):
            step += 1
            store.update_progress(trial.id, step, 10**9, {"loss": 1 / step})
        store.close()

    thread = threading.Thread(target=run, name="progress-writer", daemon=True)
    thread.start()
    return stop, thread


def start_controller(data_dir: Path) -> tuple[Stack, int]:
    from service.settings import Settings
    from service.stack.embedded import Stack, free_port

    port = free_port()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(
        data_dir=data_dir, port=port, db_url=f"sqlite:///{data_dir / 'bench.db'}",
        ray_address=closed, mlflow_tracking_uri=closed, mlflow_ui_url="http://mlflow:5000",
        reconcile_interval_s=0,
    )
    stack = Stack(settings, start_ray=False, start_mlflow=False)
    stack.start()
    return stack, port


# ---- report --------------------------------------------------------------------------------

def goals(cells: list[Cell]) -> list[tuple[str, bool | None]]:
    def at(name: str, clients: int) -> Cell | None:
        return next((c for c in cells if c.name == name and c.clients == clients), None)

    rps, p99, n = STATUS_GOAL
    status = at("status", n)
    crps, cn = COMPARE_GOAL
    compare = at("compare json", cn)
    return [
        (f"status >= {rps:.0f} req/s, p99 < {p99:.0f} ms at {n} clients",
         None if status is None else status.rps >= rps and status.p99_ms < p99
         and not status.errors),
        (f"compare json >= {crps:.0f} req/s at {cn} clients",
         None if compare is None else compare.rps >= crps and not compare.errors),
    ]


def print_report(cells: list[Cell], cold: dict[str, float], exp: str, duration: float,
                 load_before: float) -> None:
    print(f"controller: uvicorn, 1 process, SQLite; experiment {exp}; {duration:g} s per cell")
    print(f"{os.cpu_count()} CPUs, load average (1 min) {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; the generator (one asyncio process, raw HTTP/1.1 "
          "keep-alive) shares these cores")
    for name, ms in cold.items():
        print(f"first request (cold cache) {name}: {ms:.1f} ms")
    print(f"{'endpoint':<16} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'errors':>6} {'server CPU ms/req':>17} {'client CPU ms/req':>17}")
    for c in cells:
        print(f"{c.name:<16} {c.clients:>7} {c.rps:>9.1f} {c.p50_ms:>8.2f} {c.p99_ms:>8.2f} "
              f"{c.max_ms:>8.1f} {c.errors:>6} {c.server_cpu_ms:>17.2f} "
              f"{c.client_cpu_ms:>17.2f}")
    for goal, met in goals(cells):
        print(f"goal {goal}: {'not measured' if met is None else 'met' if met else 'MISSED'}")


def main(argv: list[str] | None = None) -> list[Cell]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--clients", default="1,8,32", help="concurrencies, comma-separated")
    parser.add_argument("--heavy", choices=["html", "png", "none"],
                        help="the heavier compare format measured besides json (default html; "
                        "none with --quick)")
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 variants x 2 seeds, 1 client, 0.3 s per cell, no "
                        "heavy format")
    parser.add_argument("--progress-writes", type=float, default=0.0, metavar="HZ",
                        help="meanwhile another experiment's running trial reports progress HZ "
                        "times a second (a store that is not idle)")
    parser.add_argument("--json", type=Path, help="also write the cells here")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.clients, args.variants, args.seeds = 0.3, "1", 2, 2
    args.heavy = args.heavy or ("none" if args.quick else "html")
    clients = [int(c) for c in args.clients.split(",")]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ablate-load-") as tmp:
        data_dir = Path(tmp)
        exp_id, described = finished_store(data_dir, args.variants, args.seeds)
        writer = progress_writer(data_dir, args.progress_writes) if args.progress_writes else None
        stack, port = start_controller(data_dir)
        try:
            paths = {"status": f"/experiments/{exp_id}",
                     "compare json": f"/experiments/{exp_id}/compare?format=json"}
            if args.heavy != "none":
                paths[f"compare {args.heavy}"] = (f"/experiments/{exp_id}/compare"
                                                  f"?format={args.heavy}")
            cold = {name: once_ms(port, path) for name, path in paths.items()}
            pid = stack.children["controller"].proc.pid
            cells = [measure(pid, port, name, path, n, args.duration)
                     for name, path in paths.items() for n in clients]
        finally:
            stack.stop()
            if writer is not None:
                writer[0].set()
                writer[1].join(10)
    if args.progress_writes:
        described += (f"; another experiment's trial reporting progress {args.progress_writes:g} "
                      "times a second")
    print_report(cells, cold, f"{exp_id}: {described}", args.duration, load_before)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(c), "rps": c.rps} for c in cells], indent=1))
    return cells


if __name__ == "__main__":
    main()
