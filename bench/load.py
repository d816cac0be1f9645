"""Load benchmark: concurrent text searches against a real `foley serve`, 10,000 sounds.

The library is real audio (bench/library.py: synthesized clips indexed by `foley index`,
cached under ~/.cache/foley/bench). For each server setting (`FOLEY_SEARCH_BATCHING` off,
the baseline; on with one search worker; on as configured by default, two workers) one
`foley serve --no-worker` process answers `GET /api/search`
(default mode hybrid, k 10) while 1, 8, 32 and 128 clients, each with one keep-alive
connection, send one query after another for a fixed time, with and without DiffATR
reranking. A 503 (the bounded search queue was full, with Retry-After) is an answer, counted
apart; anything else that is not a 200, or no answer within 30 s, is an error.

    python -m bench.load [--sounds 10000] [--clients 1,8,32,128] [--seconds 8]

Prints a table and writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.library import library  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "load.json"
TIMEOUT_S = 30.0
QUERIES = [
    "a siren in a large hall", "rain on a window", "heavy wooden door creaking shut",
    "a dog barking far away", "footsteps on gravel", "a short electronic beep",
    "church bell ringing", "car engine starting", "glass breaking", "wind howling",
    "a helicopter overhead", "an alarm clock beeping", "a referee whistle", "thunder rumbling",
    "a motorcycle revving", "a harsh buzzer", "water dripping in a cave", "a steam train",
    "typing on a keyboard", "a laser zap", "a heartbeat", "birds chirping at dawn",
    "a car horn honking twice", "a crowd cheering", "a slow low drone",
    "a fast high pitched whistle", "a door knock", "a clock ticking", "fire crackling",
    "an engine idling far away",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A `foley serve` process over the benchmark's library."""

    def __init__(self, data_dir: Path, env: dict[str, str], worker: bool = False) -> None:
        self.port = _free_port()
        full = {
            **os.environ,
            "FOLEY_DATA_DIR": str(data_dir),
            "FOLEY_API_PORT": str(self.port),
            "FOLEY_RATE_LIMIT_SEARCH": "",  # the limiter is not what is measured
            **env,
        }
        self.log = (data_dir.parent / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "foley", "serve", "--worker" if worker else "--no-worker"],
            env=full,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}/api"
        try:
            self._wait()
        except BaseException:
            self.close()
            raise

    def _wait(self) -> None:
        # Start-up imports and loads the models; on a busy machine that takes minutes.
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"foley serve exited during start-up; see {self.log.name}")
            try:
                urllib.request.urlopen(self.base + "/health", timeout=5).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("foley serve did not start")

    def cpu_s(self) -> float:
        """CPU seconds the server process has used: what a query costs, whatever else the
        machine is running (wall-clock figures on a shared machine mostly measure the others)."""
        return _process_cpu_s(self.process.pid)

    def tree_cpu_s(self) -> dict[int, float]:
        """CPU seconds used so far by the server and each process under it (the job worker
        and its pool), by pid."""
        return {pid: _process_cpu_s(pid) for pid in _descendants(self.process.pid)}

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + "/health", timeout=TIMEOUT_S) as response:
            return dict(json.load(response))

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it has exited
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """`pid` and every process under it (Linux)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _descendants(int(child))
    return found


def search_path(query: str, rerank: bool) -> str:
    params = {"q": query, "k": 10, "rerank": str(rerank).lower()}
    return "/api/search?" + urllib.parse.urlencode(params)


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    """One HTTP/1.1 GET on a keep-alive connection: its status (the body is read and dropped)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _client(
    port: int, number: int, rerank: bool, until: float, out: dict[str, list[float] | int]
) -> None:
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    sent = 0
    while time.monotonic() < until:
        query = QUERIES[(number * 7 + sent) % len(QUERIES)]
        sent += 1
        started = time.monotonic()
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            status = await asyncio.wait_for(
                _get(*connection, search_path(query, rerank)), TIMEOUT_S
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            status = 0
            if connection is not None:
                connection[1].close()
            connection = None
        took_ms = (time.monotonic() - started) * 1000
        if status == 200:
            out["latencies"].append(took_ms)  # type: ignore[union-attr]
        elif status == 503:
            out["busy"] += 1  # type: ignore[operator]
            await asyncio.sleep(1.0)  # as Retry-After asks
        else:
            out["errors"] += 1  # type: ignore[operator]
    if connection is not None:
        connection[1].close()


async def _drive(port: int, clients: int, rerank: bool, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies": [], "busy": 0, "errors": 0}
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(*(_client(port, i, rerank, until, out) for i in range(clients)))
    elapsed = time.monotonic() - started  # the last answers may land after `until`
    lat = np.asarray(out["latencies"]) if out["latencies"] else np.asarray([np.nan])
    return {
        "clients": clients,
        "rerank": rerank,
        "answered": len(out["latencies"]),
        "qps": len(out["latencies"]) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": out["errors"],
        "busy_503": out["busy"],
    }


def measure(server: Server, clients: int, rerank: bool, seconds: float) -> dict[str, Any]:
    # Requests whose clients gave up may still be running; a row starts once they are done.
    deadline = time.monotonic() + 120
    while (before := server.health()["search"])["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.5)
    cpu = server.cpu_s()
    row = asyncio.run(_drive(server.port, clients, rerank, seconds))
    row["cpu_ms_per_query"] = (server.cpu_s() - cpu) * 1000 / max(row["answered"], 1)
    after = server.health()["search"]
    if after.get("batching"):
        calls = after["batched_calls"] - before["batched_calls"]
        batches = max(after["batches"] - before["batches"], 1)
        row["mean_batch"] = calls / batches
    return row


SETTINGS = {
    "baseline": {"FOLEY_SEARCH_BATCHING": "false"},
    "batched-1": {"FOLEY_SEARCH_BATCHING": "true", "FOLEY_SEARCH_WORKERS": "1"},
    "batched": {"FOLEY_SEARCH_BATCHING": "true"},
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    data_dir = library(args.sounds, seconds=1.0, partial=args.partial)
    rows = []
    for setting in args.settings.split(","):
        print(f"{setting}: starting foley serve ...", flush=True)
        server = Server(data_dir, SETTINGS[setting])
        try:
            sounds = server.health()["catalog"]["sounds"]
            asyncio.run(_drive(server.port, 4, True, 2.0))  # warm caches and the models
            for rerank in args.rerank:
                for clients in args.clients:
                    row = {"setting": setting, **measure(server, clients, rerank, args.seconds)}
                    rows.append(row)
                    print(_line(row), flush=True)
        finally:
            server.close()
    return {
        "sounds": sounds,
        "seconds_per_cell": args.seconds,
        "cpus": len(os.sched_getaffinity(0)),
        "machine": platform.platform(),
        "load_average": load_before,
        "rows": rows,
    }


HEADER = (
    f"{'setting':10} {'rerank':6} {'clients':>7} {'q/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
    f"{'p99 ms':>8} {'errors':>6} {'503s':>5} {'batch':>5} {'cpu ms/q':>8}"
)


def _line(row: dict[str, Any]) -> str:
    batch = f"{row['mean_batch']:5.1f}" if "mean_batch" in row else f"{'-':>5}"
    return (
        f"{row['setting']:10} {str(row['rerank']).lower():6} {row['clients']:7d} "
        f"{row['qps']:7.1f} {row['p50_ms']:8.0f} {row['p95_ms']:8.0f} {row['p99_ms']:8.0f} "
        f"{row['errors']:6d} {row['busy_503']:5d} {batch} {row['cpu_ms_per_query']:8.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sounds", type=int, default=10_000)
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=8.0, help="per table row")
    parser.add_argument("--settings", default="baseline,batched-1,batched")
    parser.add_argument("--rerank", default="true,false", help="with and/or without DiffATR")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--partial", action="store_true", help="use the library as far as its build got"
    )
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.rerank = [r.strip().lower() == "true" for r in args.rerank.split(",")]
    result = run(args)
    print()
    print(f"{result['sounds']} sounds, {result['cpus']} CPUs, load average before the run "
          f"{result['load_average'][0]:.1f}")  # fmt: skip
    print(HEADER)
    print("-" * len(HEADER))
    for row in result["rows"]:
        print(_line(row))
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
