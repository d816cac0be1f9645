"""How long Foley takes to generate a 5 s clip, and where the time goes.

For each of 10 prompts: retrieval (the prompt's CLAP text embedding and the k nearest of a
10,000-sound library in the embedded vector index), the UNet's sampler steps (classifier-free
guidance: three UNet passes a step in `both` mode), the VAE decoder and the vocoder. The whole
call's p50 over the prompts is the figure the target is about (at most 15 s for a 5 s clip on
a 2-core CPU). A second row samples with Griffin-Lim instead of the vocoder, the baseline the
vocoder replaces; a third without retrieval (one guidance pass less).

    python bench/generate.py [--checkpoint models/generator] [--clap models/clap-compact]
                             [--seconds 5] [--steps N] [--neighbours 5] [--threads 2]
                             [--device auto|cpu|cuda]

A missing checkpoint is replaced by seeded random weights of the default architecture: the time
a sampler step takes does not depend on what the weights learned. Prints a markdown table and
writes bench/results/generate.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.config import DEFAULT_MODELS_DIR

log = logging.getLogger("bench.generate")

RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"
TARGET_S = 15.0
LIBRARY = 10_000
PROMPTS = (
    "rain on a tin roof",
    "a dog barking twice",
    "footsteps on gravel",
    "a heavy wooden door creaking shut",
    "an explosion in the distance",
    "birds chirping in the morning",
    "a car engine starting",
    "glass breaking on a tiled floor",
    "wind howling through trees",
    "a bell ringing three times",
)


def device_for(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def load(checkpoint: Path, clap_dir: Path, device: str) -> tuple[Any, Any, str]:
    from generative.clap.config import compact_clap_config
    from generative.clap.load import load_clap
    from generative.clap.model import build_random_clap, save_compact
    from generative.generator.config import GeneratorConfig
    from generative.generator.pipeline import build_random_generator, load_generator

    if not clap_dir.is_dir():
        clap_config = compact_clap_config()
        clap_dir = Path(tempfile.mkdtemp()) / "clap"
        save_compact(build_random_clap(clap_config, seed=0), clap_config, clap_dir)
    clap = load_clap(clap_dir, device=device)
    if checkpoint.is_dir():
        generator = load_generator(checkpoint, clap=clap, device=device)
        return generator, clap, f"{generator.model_id} on {clap.model_id}"
    settings = GeneratorConfig()
    settings.unet.clap_dim = clap.dim
    generator = build_random_generator(settings, seed=0).to(device)
    generator.clap = clap
    return generator, clap, f"random generator (default architecture) on {clap.model_id}"


def library_index(dim: int, folder: Path) -> Any:
    """An embedded vector index of LIBRARY unit vectors (seeded): the size retrieval runs at."""
    from core.vector_index import EdgeVectorIndex, IndexedPoint

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((LIBRARY, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = EdgeVectorIndex(folder, dim)
    for start in range(0, LIBRARY, 1000):
        index.upsert([
            IndexedPoint(i + 1, vectors[i], {"duration": 5.0, "source": "library", "tags": []})
            for i in range(start, min(start + 1000, LIBRARY))
        ])  # fmt: skip
    return index, vectors


def one(generator: Any, clap: Any, index: Any, vectors: np.ndarray, prompt: str,
        args: argparse.Namespace, k: int, vocoder: bool) -> dict[str, float]:  # fmt: skip
    """One generation's seconds per stage; `total` is the whole call, retrieval included."""
    from generative.generator.pipeline import Neighbours

    started = time.perf_counter()
    query = clap.embed_text([prompt])[0]
    neighbours = None
    if k:
        hits = index.search(query, k, with_payload=False)
        rows = vectors[[hit.id - 1 for hit in hits]]
        neighbours = Neighbours(audio=rows, text=rows, ids=[hit.id for hit in hits])
    retrieval = time.perf_counter() - started
    saved = generator.vocoder
    if not vocoder:
        generator.vocoder = None
    try:
        made = generator(prompt, seconds=args.seconds, neighbours=neighbours, seed=0,
                         steps=args.steps, text_embedding=query)  # fmt: skip
    finally:
        generator.vocoder = saved
    taken = made.seconds_taken
    total = time.perf_counter() - started
    return {"retrieval": retrieval, "unet": taken["unet"], "vae": taken["vae"],
            "vocoder": taken["vocoder"], "total": total}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    device = device_for(args.device)
    generator, clap, loaded = load(Path(args.checkpoint), Path(args.clap), device)
    steps = args.steps or generator.config.unet.steps
    args.steps = steps
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        index, vectors = library_index(clap.dim, Path(tmp) / "index")
        try:
            cases = [(f"retrieval k={args.neighbours}, vocoder", args.neighbours, True),
                     (f"retrieval k={args.neighbours}, Griffin-Lim", args.neighbours, False),
                     ("no retrieval, vocoder", 0, True)]  # fmt: skip
            for name, k, vocoder in cases:
                if vocoder and generator.vocoder is None:
                    continue
                one(generator, clap, index, vectors, PROMPTS[0], args, k, vocoder)  # warm-up
                runs = []
                for prompt in PROMPTS[: args.prompts]:
                    runs.append(one(generator, clap, index, vectors, prompt, args, k, vocoder))
                    log.info("%s | %s: %.2f s", name, prompt, runs[-1]["total"])
                rows[name] = {
                    f"{stage}_p50_s": round(float(np.median([r[stage] for r in runs])), 3)
                    for stage in ("retrieval", "unet", "vae", "vocoder", "total")
                }
                rows[name]["total_p95_s"] = round(
                    float(np.percentile([r["total"] for r in runs], 95)), 3
                )
        finally:
            index.close()
    chosen = rows[next(iter(rows))]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "device": device,
        "models": loaded,
        "seconds": args.seconds,
        "steps": steps,
        "guidance_mode": generator.config.unet.guidance_mode,
        "library": LIBRARY,
        "prompts": args.prompts,
        "rows": rows,
        "target_s": TARGET_S,
        "within_target": chosen["total_p50_s"] <= TARGET_S,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['seconds']:g} s clip, {result['steps']} sampler steps, guidance "
        f"{result['guidance_mode']}, {result['prompts']} prompts, library of "
        f"{result['library']} ({result['machine']}, {result['device']}; {result['models']})",
        "",
        "| case | retrieval p50 s | UNet steps p50 s | VAE p50 s | vocoder p50 s "
        "| total p50 s | total p95 s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["rows"].items():
        lines.append(
            f"| {name} | {r['retrieval_p50_s']:.3f} | {r['unet_p50_s']:.2f} | "
            f"{r['vae_p50_s']:.2f} | {r['vocoder_p50_s']:.2f} | {r['total_p50_s']:.2f} | "
            f"{r['total_p95_s']:.2f} |"
        )
    verdict = "within" if result["within_target"] else "over"
    lines += ["", f"target: total p50 <= {result['target_s']:g} s ({verdict} it)"]
    return "\n".join(lines)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_MODELS_DIR / "generator"))
    parser.add_argument("--clap", default=str(DEFAULT_MODELS_DIR / "clap-compact"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument("--neighbours", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    result = run(args)
    print(table(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
