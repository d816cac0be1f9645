"""What DiffATR reranking adds to a text query, next to what the query already costs.

Per query, in one process: the compact CLAP's text embedding, the ANN search of the top N in a
Qdrant Edge index (`EdgeVectorIndex`, HNSW built) of random unit vectors, and the DiffATR rerank
of those N candidates (the denoiser run by DDIM at each step count, plus the final scores).
Reports p50/p95 latency in ms; the target is a rerank no slower than the query embedding.

    python bench/rerank.py [--checkpoint models/diffatr] [--clap models/clap-compact]
                           [--n 64] [--points 10000] [--queries 200] [--threads 1]

A missing checkpoint is replaced by random weights of the same architecture (the cost is the
same). Prints a markdown table and writes bench/results/rerank.json.
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
from pathlib import Path
from typing import Any

import numpy as np

from core.config import DEFAULT_MODELS_DIR

log = logging.getLogger("bench.rerank")

RESULTS = Path(__file__).resolve().parent / "results" / "rerank.json"
QUERIES = (
    "a dog barking in the distance",
    "heavy rain on a tin roof",
    "a door creaks shut",
    "a violin playing a slow melody",
    "a woman speaking french",
    "an electric hum",
)


def timed(fn: Callable[[int], Any], runs: int, warmup: int = 5) -> dict[str, float]:
    """p50/p95/mean of `fn(i)` in ms over `runs` calls, after `warmup` untimed ones."""
    for i in range(warmup):
        fn(i)
    latencies = []
    for i in range(runs):
        started = time.perf_counter()
        fn(i)
        latencies.append((time.perf_counter() - started) * 1e3)
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p95_ms": round(float(np.percentile(latencies, 95)), 3),
        "mean_ms": round(float(np.mean(latencies)), 3),
    }


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def load_models(checkpoint: Path, clap_dir: Path) -> tuple[Any, Any, str]:
    """(CLAP, DiffATR, what was loaded); random weights stand in for missing checkpoints."""
    from generative.clap.config import compact_clap_config
    from generative.clap.load import load_clap
    from generative.clap.model import build_random_clap, save_compact
    from generative.diffatr.model import DiffATRConfig, build_denoiser
    from generative.diffatr.pipeline import DiffATR, load_diffatr

    notes = []
    if not clap_dir.is_dir():
        clap_config = compact_clap_config()
        clap_dir = Path(tempfile.mkdtemp()) / "clap"
        save_compact(build_random_clap(clap_config, seed=0), clap_config, clap_dir)
        notes.append("random compact CLAP")
    clap = load_clap(clap_dir)
    if checkpoint.is_dir():
        reranker = load_diffatr(checkpoint)
        notes.append(f"DiffATR {reranker.model_id}")
    else:
        config = DiffATRConfig(feature_dim=clap.dim)
        reranker = DiffATR(build_denoiser(config), config)
        notes.append("random DiffATR")
    return clap, reranker, ", ".join(notes)


def bench_ann(dim: int, points: int, n: int, queries: int, rng: np.random.Generator) -> dict:
    from core.vector_index import EdgeVectorIndex, IndexedPoint

    vectors = unit_rows(rng, points, dim)
    probes = unit_rows(rng, queries, dim)
    with tempfile.TemporaryDirectory() as folder:
        index = EdgeVectorIndex(Path(folder) / "index", dim)
        try:
            payload = {"duration": 1.0, "source": "library", "tags": []}
            index.upsert([IndexedPoint(i, v, payload) for i, v in enumerate(vectors)])
            index.optimize()
            return timed(lambda i: index.search(probes[i % queries], n), queries)
        finally:
            index.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    clap, reranker, loaded = load_models(Path(args.checkpoint), Path(args.clap))
    steps = reranker.config.sample_steps
    rows: dict[str, dict[str, float]] = {}
    rows["CLAP text embedding (1 query)"] = timed(
        lambda i: clap.embed_text([QUERIES[i % len(QUERIES)]]), args.queries
    )
    if clap.expansion is not None:  # what search adds to a text query's embedding
        plain = clap.embed_text(QUERIES)
        rows[f"query expansion (1 query, {len(clap.expansion)} captions)"] = timed(
            lambda i: clap.expand(plain[i % len(QUERIES)][None]), args.queries
        )
    rows[f"ANN top {args.n} of {args.points} (Qdrant Edge)"] = bench_ann(
        clap.dim, args.points, args.n, args.queries, rng
    )
    audio = unit_rows(rng, args.n, clap.dim)
    query = unit_rows(rng, 1, clap.dim)[0]
    clap_scores = audio @ query  # (N, D) @ (D,) -> (N,)
    for count in sorted({1, 2, 5, 10, 20, steps}):

        def rerank(_: int, count: int = count) -> np.ndarray:
            return reranker.scores(clap_scores, reranker.generate(query, audio, count))

        mark = " (chosen)" if count == steps else ""
        rows[f"DiffATR rerank N={args.n}, {count} steps{mark}"] = timed(rerank, args.queries)
    chosen = rows[f"DiffATR rerank N={args.n}, {steps} steps (chosen)"]
    embed = rows["CLAP text embedding (1 query)"]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "models": loaded,
        "n": args.n,
        "steps": steps,
        "rows": rows,
        "rerank_over_embedding_p50": round(chosen["p50_ms"] / embed["p50_ms"], 3),
        "within_target": chosen["p50_ms"] <= embed["p50_ms"],
    }


def table(result: dict[str, Any]) -> str:
    lines = ["| stage | p50 ms | p95 ms | mean ms |", "|---|---:|---:|---:|"]
    for name, row in result["rows"].items():
        lines.append(
            f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['mean_ms']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_MODELS_DIR / "diffatr"))
    parser.add_argument("--clap", default=str(DEFAULT_MODELS_DIR / "clap-compact"))
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    print(f"{result['machine']}; {result['models']}")
    print(table(result))
    print(f"rerank / text embedding (p50): {result['rerank_over_embedding_p50']:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
