"""Job queue benchmark: round-trip latency of a trivial job, and upload throughput.

For each deployment (the embedded SQLite queue; Redis; Redis with a PostgreSQL catalog when
FOLEY_TEST_POSTGRES_URL is set) a real `foley worker` process (one pool process) serves
jobs while this process submits them:

- latency: a `ping` job, from the submission (row written, message sent) to the moment
  its row says succeeded, one job at a time;
- throughput: N distinct clips posted to `POST /api/uploads` in one request, until every
  job succeeded (decode + CLAP embedding + catalog write), in clips per second.

    python bench/jobs.py [--pings 50] [--clips 40] [--seconds 5] [--redis redis://...]

Prints a table and writes bench/results/jobs.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.services import drop_redis_keys  # noqa: E402  (after the path above)

RESULTS = ROOT / "bench" / "results" / "jobs.json"
SAMPLE_RATE = 16_000
FINISHED = ("succeeded", "failed", "cancelled")


def clip(kind: int, seconds: float) -> bytes:
    """A distinct WAV clip per `kind` (a tone with its own pitch and noise)."""
    rng = np.random.default_rng(kind)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = np.sin(2 * np.pi * (110.0 + 7.0 * kind) * t) + 0.1 * rng.standard_normal(t.size)
    buffer = io.BytesIO()
    sf.write(
        buffer, (0.4 * wave / np.abs(wave).max()).astype(np.float32), SAMPLE_RATE, format="WAV"
    )
    return buffer.getvalue()


def tiny_checkpoint(folder: Path) -> Path:
    from generative.clap.config import tiny_clap_config
    from generative.clap.model import build_random_clap, save_compact

    config = tiny_clap_config()
    save_compact(build_random_clap(config, seed=0), config, folder)
    return folder


class Deployment:
    """A data dir, a worker process, and the API in this process."""

    def __init__(self, name: str, env: dict[str, str], data_dir: Path) -> None:
        from fastapi.testclient import TestClient

        from core.config import Settings
        from core.db import Catalog
        from search.api.main import create_app
        from search.service import Foley

        self.name = name
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOLEY_")}
        full_env.update(env, FOLEY_DATA_DIR=str(data_dir), TOKENIZERS_PARALLELISM="false")
        self.settings = Settings(
            data_dir=data_dir,
            clap_checkpoint=Path(env["FOLEY_CLAP_CHECKPOINT"]),
            database_url=env.get("FOLEY_DATABASE_URL"),
            broker_url=env.get("FOLEY_BROKER_URL"),
            broker_key_prefix=env.get("FOLEY_BROKER_KEY_PREFIX", ""),
        )
        self.settings.ensure_dirs()
        Catalog(self.settings.catalog_url).dispose()
        self.log = (data_dir / "worker.log").open("wb")
        started = time.perf_counter()
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "foley", "worker", "--queues=cpu,gpu"],
            cwd=ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.foley = Foley.open(self.settings)
        self.foley.start_background_sync(0.2)
        self.client = TestClient(create_app(foley=self.foley))
        self.client.__enter__()
        self.queue = self.client.app.state.queue  # type: ignore[attr-defined]
        self.wait(self.submit_ping(), timeout=180)
        self.startup_s = time.perf_counter() - started

    def submit_ping(self) -> str:
        from core.jobs import new_job

        with self.foley.catalog.session() as session:
            job_id = new_job(session, "ping").id
        self.queue.send(job_id, "ping")
        return job_id

    def status(self, job_id: str) -> str:
        from core.catalog import Job

        with self.foley.catalog.session() as session:
            job = session.get(Job, job_id)
            return job.status if job is not None else "missing"

    def wait(self, job_id: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while (status := self.status(job_id)) not in FINISHED:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: job {job_id} still {status}")
            time.sleep(0.002)
        return status

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.foley.close()
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
        self.log.close()


def measure_latency(dep: Deployment, pings: int) -> dict[str, float]:
    times = []
    for _ in range(pings):
        started = time.perf_counter()
        job_id = dep.submit_ping()
        if dep.wait(job_id) != "succeeded":
            raise RuntimeError(f"{dep.name}: ping failed")
        times.append(time.perf_counter() - started)
    ms = sorted(t * 1000 for t in times)
    return {
        "pings": pings,
        "p50_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
        "mean_ms": statistics.fmean(ms),
    }


def measure_throughput(dep: Deployment, clips: int, seconds: float, offset: int) -> dict[str, Any]:
    files = [("files", (f"clip_{i:03d}.wav", clip(offset + i, seconds))) for i in range(clips)]
    headers = {"X-API-Key": "bench"} if dep.settings.api_key_set else {}
    started = time.perf_counter()
    response = dep.client.post("/api/uploads", files=files, headers=headers)
    response.raise_for_status()
    accepted = time.perf_counter() - started
    statuses = [dep.wait(job["id"], timeout=600) for job in response.json()["data"]]
    elapsed = time.perf_counter() - started
    if statuses.count("succeeded") != clips:
        raise RuntimeError(
            f"{dep.name}: {statuses.count('succeeded')} of {clips} uploads succeeded"
        )
    return {
        "clips": clips,
        "clip_seconds": seconds,
        "accept_s": accepted,
        "total_s": elapsed,
        "clips_per_s": clips / elapsed,
        "audio_s_per_s": clips * seconds / elapsed,
    }


def deployments(args: argparse.Namespace, clap_dir: Path) -> list[tuple[str, dict[str, str]]]:
    base = {"FOLEY_CLAP_CHECKPOINT": str(clap_dir)}
    found = [("embedded (SQLite queue + catalog)", dict(base))]
    if args.redis:
        prefix = f"foley-bench-{uuid.uuid4().hex[:8]}:"
        redis = {"FOLEY_BROKER_URL": args.redis, "FOLEY_BROKER_KEY_PREFIX": prefix}
        found.append(("Redis queue + SQLite catalog", {**base, **redis}))
        if args.postgres:
            found.append(("Redis queue + PostgreSQL catalog", {**base, **redis, "pg": "1"}))
    return found


def run_one(name: str, env: dict[str, str], args: argparse.Namespace, offset: int) -> dict:
    postgres = env.pop("pg", None)
    with tempfile.TemporaryDirectory(prefix="foley-bench-jobs-") as tmp:
        if postgres:
            from bench.services import fresh_postgres_database

            with fresh_postgres_database(args.postgres, "foley_bench") as url:
                return _measure(name, {**env, "FOLEY_DATABASE_URL": url}, Path(tmp), args, offset)
        return _measure(name, env, Path(tmp), args, offset)


def _measure(
    name: str, env: dict[str, str], data_dir: Path, args: argparse.Namespace, offset: int
) -> dict:
    print(f"{name}: starting a worker ...", flush=True)
    dep = Deployment(name, env, data_dir / "data")
    try:
        latency = measure_latency(dep, args.pings)
        throughput = measure_throughput(dep, args.clips, args.seconds, offset)
    finally:
        dep.close()
        if "FOLEY_BROKER_KEY_PREFIX" in env:
            drop_redis_keys(env["FOLEY_BROKER_URL"], env["FOLEY_BROKER_KEY_PREFIX"])
    return {"deployment": name, "worker_startup_s": dep.startup_s, **latency, **throughput}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pings", type=int, default=50)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    parser.add_argument(
        "--redis",
        default=os.environ.get("FOLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis URL for the scale-out rows ('' skips them)",
    )
    parser.add_argument("--postgres", default=os.environ.get("FOLEY_TEST_POSTGRES_URL", ""))
    parser.add_argument(
        "--clap", type=Path, help="CLAP checkpoint (default: a tiny random one, to time the queue)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="foley-bench-clap-") as clap_tmp:
        clap_dir = args.clap or tiny_checkpoint(Path(clap_tmp) / "tiny-clap")
        rows = [
            run_one(name, env, args, offset=1000 * i)
            for i, (name, env) in enumerate(deployments(args, clap_dir))
        ]

    print()
    print(f"worker: 1 pool process; CLAP: {args.clap or 'tiny random (queue overhead)'}")
    header = (
        f"{'deployment':<34} {'ping p50':>9} {'p95':>8} {'mean':>8} "
        f"{'uploads/s':>10} {'audio s/s':>10} {'startup':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['deployment']:<34} {r['p50_ms']:7.1f}ms {r['p95_ms']:6.1f}ms "
            f"{r['mean_ms']:6.1f}ms "
            f"{r['clips_per_s']:10.2f} {r['audio_s_per_s']:10.1f} {r['worker_startup_s']:7.1f}s"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "clap": str(args.clap) if args.clap else "tiny random checkpoint",
        "pings": args.pings,
        "clips": args.clips,
        "clip_seconds": args.seconds,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
