"""Distributed indexing benchmark: clips per second with 1, 2 and 4 worker processes.

A library of 5 s clips (generated once, cached in ~/.cache/foley/bench) is scanned as a job
that fans out into batch jobs (`FOLEY_SCAN_BATCH_FILES`), over Redis, into a fresh PostgreSQL
catalog, by N separate `foley worker` processes (one pool process each, as N machines would
run them). Timed from sending the scan job to the scan's row saying succeeded: every clip
decoded, embedded and written with its outbox entry. The index syncer's pass over the
outbox afterwards is timed on its own (one syncer, an embedded Qdrant Edge index).

    python -m bench.index_jobs [--workers 1,2,4] [--clips 300] [--batch-files 20]

Needs Redis and PostgreSQL (FOLEY_TEST_REDIS_URL, FOLEY_TEST_POSTGRES_URL, or the flags).
Prints a table and writes bench/results/index_jobs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bench.services import drop_redis_keys, fresh_postgres_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = ROOT / "bench" / "results" / "index_jobs.json"
CACHE = Path.home() / ".cache" / "foley" / "bench"
SAMPLE_RATE = 44_100
READY_TIMEOUT_S = 1200.0


def clip(kind: int, seconds: float) -> np.ndarray:
    """A distinct clip per `kind`: a tone, a chirp, filtered noise or a pulse train."""
    rng = np.random.default_rng(kind)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 80.0 * 2 ** ((kind % 48) / 8.0)
    family = kind % 4
    if family == 0:
        wave = np.sin(2 * np.pi * f0 * t)
    elif family == 1:
        wave = np.sin(2 * np.pi * (f0 + 300.0 * t) * t)
    elif family == 2:
        width = 1 + kind % 17
        wave = np.convolve(rng.standard_normal(t.size), np.ones(width) / width, mode="same")
    else:
        wave = np.sin(2 * np.pi * f0 * t) * (np.sin(2 * np.pi * (1 + kind % 7) * t) > 0)
    wave = wave + 0.05 * rng.standard_normal(t.size)
    return (0.5 * wave / (np.abs(wave).max() + 1e-9)).astype(np.float32)


def library(clips: int, seconds: float) -> Path:
    """The cached library of `clips` WAV files, built on first use."""
    folder = CACHE / f"library-{clips}x{seconds:g}s"
    if folder.is_dir():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for kind in range(clips):
        sub = partial / ["ambience", "impacts", "tones", "machines"][kind % 4]
        sub.mkdir(parents=True, exist_ok=True)
        sf.write(sub / f"clip_{kind:04d}.wav", clip(kind, seconds), SAMPLE_RATE)
    partial.rename(folder)
    return folder


class Workers:
    """N `foley worker` processes, each with one pool process, sharing a broker and catalog."""

    def __init__(self, count: int, env: dict[str, str], logs: Path) -> None:
        self.logs = [logs / f"worker-{i}.log" for i in range(count)]
        self.procs = []
        for i, log in enumerate(self.logs):
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "foley",
                            "worker",
                            "--queues=cpu",
                            "--concurrency=1",
                            f"--hostname=bench{i}-{uuid.uuid4().hex[:6]}@%h",
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def wait_ready(self) -> None:
        """Until every worker's consumer is up and its pool process has loaded CLAP."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            texts = [log.read_text(errors="replace") for log in self.logs]
            if all("ready with" in text and " ready." in text for text in texts):
                return
            for proc, log, text in zip(self.procs, self.logs, texts, strict=True):
                if proc.poll() is not None or "could not load its models" in text:
                    raise RuntimeError(f"a worker exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start in time")
            time.sleep(0.5)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_scan(settings: Any, root: Path, batch_files: int, batch_size: int) -> tuple[float, dict]:
    """Send a scan job for `root` and wait for it; (seconds, its result)."""
    from core.catalog import Job
    from core.db import Catalog
    from core.jobs import FINISHED, new_job
    from core.queue import JobQueue
    from index_builder.runner import register_library

    catalog = Catalog(settings.catalog_url)
    queue = JobQueue(settings)
    try:
        with catalog.session() as session:
            params = {
                "library_id": register_library(catalog, root),
                "batch_files": batch_files,
                "batch_size": batch_size,
                "from_command_line": True,
            }
            job_id = new_job(session, "scan", params).id
        started = time.perf_counter()
        queue.send(job_id, "scan")
        while True:
            with catalog.session() as session:
                job = session.get(Job, job_id)
                assert job is not None
                if job.status in FINISHED:
                    break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if job.status != "succeeded" or job.result is None:
            raise RuntimeError(f"scan {job.status}: {job.error}")
        return elapsed, dict(job.result)
    finally:
        queue.close()
        catalog.dispose()


def time_sync(settings: Any) -> tuple[float, int]:
    """Apply the whole outbox to a new embedded index, as the one syncer does."""
    from core.db import Catalog
    from core.vector_index import EdgeVectorIndex
    from generative.registry import get_clap
    from index_builder.syncer import IndexSyncer

    clap = get_clap(settings)
    catalog = Catalog(settings.catalog_url)
    index = EdgeVectorIndex(settings.index_path, clap.dim)
    try:
        started = time.perf_counter()
        applied = IndexSyncer(catalog, index, clap.model_id).sync()
        return time.perf_counter() - started, applied
    finally:
        index.close()
        catalog.dispose()


def measure(workers: int, args: argparse.Namespace, root: Path, clap: Path) -> dict[str, Any]:
    from core.config import Settings
    from core.db import Catalog

    threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    prefix = f"foley-bench-{uuid.uuid4().hex[:8]}:"
    with (
        tempfile.TemporaryDirectory(prefix="foley-bench-index-") as tmp,
        fresh_postgres_database(args.postgres, "foley_bench") as database_url,
    ):
        data = Path(tmp) / "data"
        values = {
            "FOLEY_DATA_DIR": str(data),
            "FOLEY_DATABASE_URL": database_url,
            "FOLEY_BROKER_URL": args.redis,
            "FOLEY_BROKER_KEY_PREFIX": prefix,
            "FOLEY_CLAP_CHECKPOINT": str(clap),
            "FOLEY_CAPTION_ON_SCAN": "false",
            "FOLEY_CAPTIONER_CHECKPOINT": str(Path(tmp) / "no-captioner"),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOLEY_")}
        env.update(
            values,
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
        )
        settings = Settings(
            data_dir=data,
            database_url=database_url,
            broker_url=args.redis,
            broker_key_prefix=prefix,
            clap_checkpoint=clap,
        )
        settings.ensure_dirs()
        Catalog(settings.catalog_url).dispose()  # migrated before the workers start
        print(f"{workers} worker(s), {threads} torch thread(s) each: starting ...", flush=True)
        started = time.perf_counter()
        pool = Workers(workers, env, data)
        try:
            pool.wait_ready()
            startup = time.perf_counter() - started
            load_before = os.getloadavg()[0]
            seconds, result = run_scan(settings, root, args.batch_files, args.batch_size)
            load_after = os.getloadavg()[0]
        finally:
            pool.stop()
            drop_redis_keys(args.redis, prefix)
        sync_s, applied = time_sync(settings)
    if result["added"] != args.clips:
        raise RuntimeError(f"{result['added']} of {args.clips} clips added: {result}")
    return {
        "workers": workers,
        "torch_threads_per_worker": threads,
        "clips": args.clips,
        "batches": result["batches"],
        "seconds": seconds,
        "clips_per_s": args.clips / seconds,
        "audio_s_per_s": args.clips * args.seconds / seconds,
        "worker_startup_s": startup,
        "sync_s": sync_s,
        "synced": applied,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


def main() -> None:
    from core.config import DEFAULT_MODELS_DIR

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="worker process counts to measure")
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    parser.add_argument("--batch-files", type=int, default=20, help="files per batch job")
    parser.add_argument("--batch-size", type=int, default=16, help="files per CLAP pass")
    parser.add_argument(
        "--threads", type=int, help="torch threads per worker (default: cores / workers)"
    )
    parser.add_argument("--clap", type=Path, default=DEFAULT_MODELS_DIR / "clap-compact")
    parser.add_argument(
        "--redis", default=os.environ.get("FOLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--postgres", default=os.environ.get("FOLEY_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    if not args.postgres:
        parser.error("needs PostgreSQL: --postgres or FOLEY_TEST_POSTGRES_URL")

    root = library(args.clips, args.seconds)
    rows = [measure(int(n), args, root, args.clap) for n in args.workers.split(",")]

    print()
    print(
        f"{args.clips} clips of {args.seconds:g} s, batch jobs of {args.batch_files} files, "
        f"CLAP {args.clap.name}; {os.cpu_count()} cores shared with other work"
    )
    header = (
        f"{'workers':>7} {'threads':>7} {'batches':>7} {'seconds':>8} {'clips/s':>8} "
        f"{'audio s/s':>9} {'startup':>8} {'sync':>7} {'load':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['workers']:>7} {r['torch_threads_per_worker']:>7} {r['batches']:>7} "
            f"{r['seconds']:8.1f} {r['clips_per_s']:8.2f} {r['audio_s_per_s']:9.1f} "
            f"{r['worker_startup_s']:7.1f}s {r['sync_s']:6.2f}s "
            f"{r['load_average_before']:4.1f}-{r['load_average_after']:<4.1f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "note": "shared with other work (training, benchmarks): see load averages",
        },
        "clap": str(args.clap),
        "clips": args.clips,
        "clip_seconds": args.seconds,
        "batch_files": args.batch_files,
        "batch_size": args.batch_size,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
