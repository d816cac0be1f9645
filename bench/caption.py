"""How long AutoCap takes to caption and tag a 10 s clip, at batch 1 and batch 16.

Per batch size: the whole `Captioner.caption` call (CLAP frames of the 10 s segment, beam
search at the checkpoint's beam, tags), and its two parts apart: the frozen CLAP's frames
(`segment_features`) and the captioner on those frames (`caption_features`). Reported as ms
per clip (the call's time divided by the batch size); the target is <= 100 ms per clip at
batch 16.

    python bench/caption.py [--checkpoint models/captioner] [--clap models/clap-compact]
                            [--repeats 5] [--threads 2]

A missing checkpoint is replaced by random weights of the default architecture (a random model
may write longer captions, so its decoding cost is an upper bound). Prints a markdown table and
writes bench/results/caption.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from core.config import DEFAULT_MODELS_DIR

log = logging.getLogger("bench.caption")

RESULTS = Path(__file__).resolve().parent / "results" / "caption.json"
SAMPLE_RATE = 16000
TARGET_MS = 100.0


def clips(count: int, seconds: float = 10.0) -> list[np.ndarray]:
    """Distinct 10 s test sounds: tones, chirps, noise, pulses."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = []
    for k in range(count):
        f0 = 110.0 * 2 ** (k / 5)
        wave = [
            np.sin(2 * np.pi * f0 * t),
            np.sin(2 * np.pi * (f0 + 50 * t) * t),
            rng.standard_normal(t.size),
            np.sin(2 * np.pi * f0 * t) * (np.sin(2 * np.pi * 3 * t) > 0),
        ][k % 4]
        out.append((0.3 * wave / np.abs(wave).max()).astype(np.float32))
    return out


def per_clip_ms(fn: Callable[[], Any], batch: int, repeats: int) -> dict[str, float]:
    """Wall-clock ms per clip, and the process's CPU ms per clip (all threads): on a machine
    shared with other work the wall clock includes waiting for a core, the CPU time does not,
    and with every thread busy the wall time on an idle machine is at most the CPU time."""
    fn()  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - started) * 1e3 / batch)
        cpu.append((time.process_time() - started_cpu) * 1e3 / batch)
    return {
        "p50_ms": round(float(np.median(times)), 2),
        "min_ms": round(float(min(times)), 2),
        "cpu_p50_ms": round(float(np.median(cpu)), 2),
    }


def load(checkpoint: Path, clap_dir: Path) -> tuple[Any, str]:
    from generative.captioner.model import CaptionerConfig, build_autocap
    from generative.captioner.pipeline import build_random_captioner, load_captioner
    from generative.clap.config import compact_clap_config
    from generative.clap.load import load_clap
    from generative.clap.model import build_random_clap, save_compact

    if not clap_dir.is_dir():
        config = compact_clap_config()
        clap_dir = Path(tempfile.mkdtemp()) / "clap"
        save_compact(build_random_clap(config, seed=0), config, clap_dir)
    clap = load_clap(clap_dir)
    if checkpoint.is_dir():
        captioner = load_captioner(checkpoint, clap=clap, check_clap=False)
        return captioner, f"{captioner.model_id} on {clap.model_id}"
    captioner = build_random_captioner(clap)
    full = CaptionerConfig(clap_dim=clap.dim, clap_model_id=clap.model_id)
    full.vocab_size = captioner.tokenizer.vocab_size
    captioner.model = build_autocap(full).eval()
    captioner.config = full
    return captioner, f"random captioner on {clap.model_id}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from generative.captioner.features import segment_features

    torch.set_num_threads(args.threads)
    captioner, loaded = load(Path(args.checkpoint), Path(args.clap))
    meta = {"title": "Door slam 03", "folder": "Foley/Doors"}
    rows: dict[str, dict[str, float]] = {}
    for batch in (1, 16):
        waves = clips(batch)
        metas = [meta] * batch
        feats = [seg for segs in segment_features(captioner.clap, waves) for seg in segs]
        frames = [s.frames for s in feats]
        pooled = np.stack([s.embedding for s in feats])
        texts = ["<title> door slam 03 <folder> foley / doors"] * batch
        rows[f"batch {batch}: caption + tags (whole call)"] = per_clip_ms(
            partial(captioner.caption, waves, metas), batch, args.repeats
        )
        rows[f"batch {batch}: CLAP frames only"] = per_clip_ms(
            partial(segment_features, captioner.clap, waves), batch, args.repeats
        )
        rows[f"batch {batch}: captioner on frames only"] = per_clip_ms(
            partial(captioner.caption_features, frames, pooled, texts), batch, args.repeats
        )
    whole = rows["batch 16: caption + tags (whole call)"]["p50_ms"]
    whole_cpu = rows["batch 16: caption + tags (whole call)"]["cpu_p50_ms"]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "models": loaded,
        "beam": captioner.config.num_beams,
        "clip_seconds": 10.0,
        "rows": rows,
        "target_ms_per_clip_batch16": TARGET_MS,
        "within_target": whole <= TARGET_MS,
        "cpu_within_target": whole_cpu <= TARGET_MS,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"ms per 10 s clip, beam {result['beam']} ({result['machine']}; {result['models']})",
        "",
        "| stage | p50 ms / clip | min ms / clip | CPU ms / clip (p50, all threads) |",
        "|---|---:|---:|---:|",
    ]
    for name, row in result["rows"].items():
        lines.append(
            f"| {name} | {row['p50_ms']:.1f} | {row['min_ms']:.1f} | {row['cpu_p50_ms']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_MODELS_DIR / "captioner"))
    parser.add_argument("--clap", default=str(DEFAULT_MODELS_DIR / "clap-compact"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    result = run(args)
    print(table(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
