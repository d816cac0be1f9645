"""Recall and latency of the embedded vector index (Qdrant Edge) across HNSW and quantization
settings, on realistic CLAP vectors and on the random worst case.

Data sets ("kind:N"): `clap` is the compact CLAP's audio embeddings of corpus clips, grown to N
by mixing and perturbing real embeddings (`bench.ann_data`), queried by the text embeddings of
captions of held-out clips; `random` is isotropic Gaussian directions (512-d, the official
CLAP's width), queried by random directions. Ground truth is exact (numpy, float32).

For each data set and each build setting (m, ef_construct, quantization) one index is built
through `EdgeVectorIndex`; then every search setting (hnsw_ef, oversampling, exact) is timed
on the same index: warm-up queries first, then each query alone, p50/p95 in ms. `baseline` is
Foley's setting before tuning (m 16, ef_construct 100, ef 256, no quantization).

    python -m bench.ann [--data clap:100000,random:100000] [--builds baseline,m16-int8]
                        [--efs 64,128,256] [--queries 500] [--clips 5000]

Prints a markdown table and writes bench/results/ann.json (one row per search setting).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.ann_data import DEFAULT_CORPUS, grow, random_vectors, real_vectors, unit_rows
from core.config import DEFAULT_MODELS_DIR
from core.vector_index import AnnParams, EdgeVectorIndex, IndexedPoint

log = logging.getLogger("bench.ann")

RESULTS = Path(__file__).resolve().parent / "results" / "ann.json"
K = 10
RANDOM_DIM = 512
WARMUP = 50
SOURCES = ("library", "upload", "generated")

BASELINE = AnnParams(m=16, ef_construct=100, hnsw_ef=256, quantization="none", exact_below=20_000)
BUILDS = {
    "baseline": BASELINE,
    "m16-int8": replace(BASELINE, quantization="int8"),
    "m32-ef200": replace(BASELINE, m=32, ef_construct=200),
    "m32-ef200-int8": replace(BASELINE, m=32, ef_construct=200, quantization="int8"),
    "m16-ef200-int8": replace(BASELINE, ef_construct=200, quantization="int8"),
    "m24-ef200-int8": replace(BASELINE, m=24, ef_construct=200, quantization="int8"),
    "m16-binary": replace(BASELINE, quantization="binary"),
}
OVERSAMPLING = (1.0, 2.0)

Row = dict[str, Any]


@dataclass(frozen=True)
class Dataset:
    kind: str
    vectors: np.ndarray  # (N, D) unit float32
    queries: np.ndarray  # (Q, D) unit float32
    truth: np.ndarray  # (Q, K) ids of the exact top-K by cosine

    @property
    def n(self) -> int:
        return len(self.vectors)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """(Q, k) ids of the best cosine for unit rows, best first, in blocks to bound memory."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ vectors.T  # (q, D) @ (D, N) -> (q, N)
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start : start + 64] = np.take_along_axis(top, order, axis=1)
    return out


def make_dataset(spec: str, n_queries: int, clips: int, seed: int) -> Dataset:
    kind, n = spec.split(":")[0], int(spec.split(":")[1])
    if kind == "clap":
        real = real_vectors(DEFAULT_CORPUS, DEFAULT_MODELS_DIR / "clap-compact", clips, seed)
        vectors, queries = grow(real.audio, n, seed), real.queries[:n_queries]
    elif kind == "random":
        vectors = random_vectors(n, RANDOM_DIM, seed)
        queries = random_vectors(n_queries, RANDOM_DIM, seed + 1)
    else:
        raise ValueError(f"unknown data set {kind!r}: clap or random")
    started = time.perf_counter()
    truth = exact_top_k(vectors, queries)
    log.info("%s: %d x %d, exact answers in %.1f s", spec, *vectors.shape,
             time.perf_counter() - started)  # fmt: skip
    return Dataset(kind, vectors, unit_rows(queries), truth)


def timed_queries(search: Callable[[np.ndarray], Sequence[int]], data: Dataset) -> Row:
    """Warm-up, then each query alone: p50/p95 in ms and recall@K against the exact answer.

    Wall time is what a caller waits on this (shared) machine; the process CPU time of the
    query (every thread of it) is what the query costs on an idle one."""
    for query in data.queries[:WARMUP]:
        search(query)
    latencies, cpu, recalls = [], [], []
    for query, truth in zip(data.queries, data.truth, strict=True):
        started, started_cpu = time.perf_counter(), time.process_time()
        found = search(query)
        cpu.append((time.process_time() - started_cpu) * 1e3)
        latencies.append((time.perf_counter() - started) * 1e3)
        recalls.append(len(set(found) & set(truth.tolist())) / K)
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p95_ms": round(float(np.percentile(latencies, 95)), 3),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
        "cpu_p95_ms": round(float(np.percentile(cpu, 95)), 3),
        f"recall_at_{K}": round(float(np.mean(recalls)), 4),
    }


def numpy_row(data: Dataset) -> Row:
    vectors = data.vectors

    def search(query: np.ndarray) -> list[int]:
        scores = vectors @ query  # (N, D) @ (D,) -> (N,)
        top = np.argpartition(-scores, K)[:K]
        return top[np.argsort(-scores[top])].tolist()

    return {"data": data.kind, "n": data.n, "build": "numpy", "search": "exact"} | timed_queries(
        search, data
    )


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def search_settings(params: AnnParams, efs: Sequence[int]) -> list[tuple[str, AnnParams, bool]]:
    """(label, params, exact) for every search setting worth timing on an index of `params`."""
    settings = [("exact", params, True)]
    oversampling = OVERSAMPLING if params.quantization != "none" else (1.0,)
    for ef in efs:
        for over in oversampling:
            label = f"ef {ef}" + (f" os {over:g}" if params.quantization != "none" else "")
            settings.append((label, replace(params, hnsw_ef=ef, oversampling=over), False))
    return settings


def edge_rows(data: Dataset, build: str, params: AnnParams, efs: Sequence[int]) -> list[Row]:
    points = [
        IndexedPoint(i, vector, {"duration": 1.0 + i % 30, "source": SOURCES[i % 3], "tags": []})
        for i, vector in enumerate(data.vectors)
    ]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="foley-bench-ann-") as folder:
        index = EdgeVectorIndex(Path(folder) / "index", data.vectors.shape[1], params)
        try:
            rss_before = _rss_mb()
            started = time.perf_counter()
            index.upsert(points)
            insert_s = time.perf_counter() - started
            del points
            started, started_cpu = time.perf_counter(), time.process_time()
            index.optimize()
            build_s = time.perf_counter() - started
            build_cpu_s = time.process_time() - started_cpu
            cost = {
                "insert_s": round(insert_s, 1),
                "build_s": round(build_s, 1),
                "build_cpu_s": round(build_cpu_s, 1),
                "build_cpu_us_per_point": round(build_cpu_s / data.n * 1e6, 1),
                "rss_delta_mb": round(_rss_mb() - rss_before, 1),
                "disk_mb": round(_folder_mb(Path(folder)), 1),
            }
            log.info("%s n=%d %s: %s", data.kind, data.n, build, cost)
            for label, search_params, exact in search_settings(params, efs):
                # An exact setting: every point counts as "small"; else never exact.
                index.ann = replace(search_params, exact_below=data.n if exact else 0)
                measured = timed_queries(lambda q: [h.id for h in index.search(q, K)], data)
                row = {"data": data.kind, "n": data.n, "build": build, "search": label}
                rows.append(row | measured | cost)
                log.info("  %s: %s", label, measured)
        finally:
            index.close()
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


COLUMNS = ["data", "n", "build", "search", "p50_ms", "p95_ms", "cpu_p50_ms", "cpu_p95_ms",
           f"recall_at_{K}", "build_s", "build_cpu_s", "rss_delta_mb", "disk_mb"]  # fmt: skip


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="clap:100000,random:100000", help="kind:N, ...")
    parser.add_argument("--builds", default="baseline,m16-int8,m32-ef200-int8",
                        help=f"comma-separated, of: {', '.join(BUILDS)}")  # fmt: skip
    parser.add_argument("--efs", default="64,128,256")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--clips", type=int, default=5000, help="corpus clips drawn (clap data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = _parse_args(argv)
    efs = [int(ef) for ef in args.efs.split(",")]
    builds = [b.strip() for b in args.builds.split(",") if b.strip()]
    rows: list[Row] = []
    for spec in [s.strip() for s in args.data.split(",") if s.strip()]:
        data = make_dataset(spec, args.queries, args.clips, args.seed)
        rows.append(numpy_row(data))
        for build in builds:
            rows += edge_rows(data, build, BUILDS[build], efs)
        print(markdown_table(rows), flush=True)  # the table so far, in case a later run dies
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "load_avg": os.getloadavg(), "max_rss_mb":
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    machine |= {pkg: metadata.version(pkg) for pkg in ("qdrant-edge-py", "numpy")}
    setup = vars(args) | {"out": str(args.out), "k": K, "warmup": WARMUP}
    builds_used = {b: asdict(BUILDS[b]) for b in builds}
    results = {"setup": setup, "machine": machine, "builds": builds_used, "rows": rows}
    args.out.write_text(json.dumps(results, indent=2))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
