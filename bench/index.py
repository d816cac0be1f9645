"""Indexing speed for 5 s clips: decode and CLAP embedding apart, the library indexing path,
and uploads through `POST /api/uploads`, batched against one job per file.

Clips are rendered by the corpus's procedural synthesizer (bench/library.py), as WAV.

1. decode: `core.audio.decode` (header checks, ffmpeg or soundfile, resampling) per clip;
   embed: the configured CLAP (default the compact one) over the decoded waves, a batch of
   `--batch` clips at a time, as the indexing runner does; torch set as a serving process
   sets it (`FOLEY_TORCH_THREADS`, default one per core).
2. library: `index_library` (hash, decode, embed, catalog write) over a folder of the clips.
3. uploads: a real `foley serve` with its job worker on a fresh data dir, the clips posted
   in one request; clips/s from the post to the last job's success. Run with
   `FOLEY_UPLOAD_BATCH_SIZE=1` (a job task per file, the old path) and with the default, and
   the batched path with one worker pool process against the default (two on two cores).
   Besides clips/s it reports the CPU time per clip of the API and of the job worker (its
   main and pool processes), which a busy machine does not inflate the way it does wall time.

    python -m bench.index [--clips 64] [--upload-clips 96] [--seconds 5]

Prints a table and writes bench/results/index.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.library import SAMPLE_RATE, base_clip, vary  # noqa: E402
from bench.load import Server  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "index.json"


def wav_clips(count: int, seconds: float, seed: int) -> list[tuple[str, bytes]]:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    bases = [base_clip(i, seconds, rng) for i in range(min(count, 25))]
    out = []
    for i in range(count):
        folder, stem, wave = bases[i % len(bases)]
        buffer = io.BytesIO()
        sf.write(buffer, vary(wave, seconds, rng), SAMPLE_RATE, format="WAV", subtype="PCM_16")
        out.append((f"{stem}_{seed}_{i:04d}.wav", buffer.getvalue()))
    return out


def decode_and_embed(clips: list[tuple[str, bytes]], batch: int) -> dict[str, Any]:
    from core.audio import DecodeLimits
    from core.config import get_settings
    from generative.registry import configure_torch, get_clap
    from index_builder.embed import Decoded, decode_for

    settings = get_settings()
    threads = configure_torch(settings)
    clap = get_clap(settings)
    limits = DecodeLimits.from_settings(settings)
    clap.embed_audio([np.zeros(SAMPLE_RATE, dtype=np.float32)])  # warm up
    started = time.perf_counter()
    decoded = [decode_for(clap, data, name, limits) for name, data in clips]
    decode_s = time.perf_counter() - started
    waves = [d.wave for d in decoded if isinstance(d, Decoded)]
    assert len(waves) == len(clips), "a benchmark clip failed to decode"
    started = time.perf_counter()
    for start in range(0, len(waves), batch):
        clap.embed_audio(waves[start : start + batch])
    embed_s = time.perf_counter() - started
    return {
        "clap": clap.model_id,
        "torch_threads": threads,
        "decode_clips_per_s": len(clips) / decode_s,
        "embed_clips_per_s": len(clips) / embed_s,
        "decode_then_embed_clips_per_s": len(clips) / (decode_s + embed_s),
    }


def library_path(clips: list[tuple[str, bytes]], batch: int) -> dict[str, Any]:
    from core.audio import DecodeLimits
    from core.config import Settings
    from core.db import Catalog
    from generative.registry import get_clap
    from index_builder.runner import index_library

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "library"
        root.mkdir()
        for name, data in clips:
            (root / name).write_bytes(data)
        settings = Settings(data_dir=Path(tmp) / "data")
        settings.ensure_dirs()
        catalog = Catalog(settings.catalog_url)
        clap = get_clap(settings)
        started = time.perf_counter()
        summary = index_library(
            catalog, clap, root, DecodeLimits.from_settings(settings), batch_size=batch
        )
        elapsed = time.perf_counter() - started
        catalog.dispose()
    assert summary.counts.embedded == len(clips), summary
    return {"library_clips_per_s": len(clips) / elapsed}


def uploads(clips: list[tuple[str, bytes]], batch_size: int, processes: int) -> dict[str, Any]:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        env = {
            "FOLEY_UPLOAD_BATCH_SIZE": str(batch_size),
            "FOLEY_WORKER_CONCURRENCY": str(processes),
            "FOLEY_RATE_LIMIT_UPLOADS": "",
            "FOLEY_API_KEYS": "",
        }
        server = Server(data_dir, env, worker=True)
        try:
            with httpx.Client(base_url=server.base, timeout=300) as client:
                # Two tasks first, so that each pool process (two on two cores or more) has
                # loaded its models and run them once before the clock starts.
                _post_and_wait(client, wav_clips(2 * batch_size, 1.0, seed=99))
                cpu_before = server.tree_cpu_s()
                started = time.perf_counter()
                statuses = _post_and_wait(client, clips)
                elapsed = time.perf_counter() - started
                cpu_after = server.tree_cpu_s()
        finally:
            server.close()
    api = server.process.pid
    cpu = {pid: cpu_after.get(pid, 0.0) - cpu_before.get(pid, 0.0) for pid in cpu_after}
    return {
        "upload_batch_size": batch_size,
        "worker_processes": processes,
        "clips": len(clips),
        "succeeded": statuses.count("succeeded"),
        "total_s": elapsed,
        "clips_per_s": len(clips) / elapsed,
        # CPU time per clip, whatever else the machine runs: the API process, and the job
        # worker with its pool processes
        "api_cpu_ms_per_clip": 1000 * cpu.get(api, 0.0) / len(clips),
        "worker_cpu_ms_per_clip": 1000 * sum(v for p, v in cpu.items() if p != api) / len(clips),
    }


def _post_and_wait(client: Any, clips: list[tuple[str, bytes]]) -> list[str]:
    files = [("files", (name, data, "audio/wav")) for name, data in clips]
    response = client.post("/uploads", files=files)
    response.raise_for_status()
    statuses = []
    for job in response.json()["data"]:
        deadline = time.monotonic() + 900
        while (status := client.get(f"/jobs/{job['id']}").json()["status"]) in (
            "queued",
            "running",
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"upload job {job['id']} still {status}")
            time.sleep(0.05)
        statuses.append(status)
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--upload-clips", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=16, help="clips per embedding batch")
    parser.add_argument("--skip-uploads", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    clips = wav_clips(args.clips, args.seconds, seed=0)
    result: dict[str, Any] = {
        "clips": args.clips,
        "clip_seconds": args.seconds,
        "cpus": len(os.sched_getaffinity(0)),
        "machine": platform.platform(),
        "load_average": load_before,
    }
    result.update(decode_and_embed(clips, args.batch))
    result.update(library_path(clips, args.batch))
    result["uploads"] = []
    if not args.skip_uploads:
        from core.config import get_settings

        # A task per file, then batches of 16 with one pool process (the baseline) and with
        # the default (two on two cores or more).
        processes = get_settings().worker_processes
        for size, pool, seed in ((1, processes, 1), (16, 1, 2), (16, processes, 3)):
            upload_clips = wav_clips(args.upload_clips, args.seconds, seed=seed)
            result["uploads"].append(uploads(upload_clips, size, pool))
    print()
    print(f"{args.clips} clips of {args.seconds:g} s, {result['cpus']} CPUs, "
          f"torch threads {result['torch_threads']}, CLAP {result['clap']}, "
          f"load average before the run {load_before[0]:.1f}")  # fmt: skip
    print(f"{'stage':34} {'clips/s':>8}")
    print("-" * 43)
    for key in (
        "decode_clips_per_s",
        "embed_clips_per_s",
        "decode_then_embed_clips_per_s",
        "library_clips_per_s",
    ):
        print(f"{key.removesuffix('_clips_per_s'):34} {result[key]:8.1f}")
    for row in result["uploads"]:
        label = (f"uploads, batch {row['upload_batch_size']}, {row['worker_processes']} "
                 f"pool process{'es' if row['worker_processes'] > 1 else ''}")  # fmt: skip
        api, worker = row["api_cpu_ms_per_clip"], row["worker_cpu_ms_per_clip"]
        print(
            f"{label:34} {row['clips_per_s']:8.1f}  CPU ms/clip: API {api:.0f}, worker {worker:.0f}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
