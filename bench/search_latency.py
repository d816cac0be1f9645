"""Search latency of the vector index back ends on random 512-d vectors.

For each size N: Foley's embedded index (Qdrant Edge, through `EdgeVectorIndex`), qdrant-client's
on-disk local mode as the baseline, and exact numpy brute force as the reference. Reports insert
time, index-build time, query p50/p95 and recall@10 against the exact answer. Random Gaussian
vectors have no cluster structure, the hard case for HNSW, so recall on CLAP embeddings is
expected to be at least as good.

    python -m bench.search_latency [--sizes 10000,100000] [--queries 200] [--api-sizes 10000]

Prints a markdown table and writes bench/results/search_latency.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.api_search import bench_api
from core.vector_index import VECTOR_NAME, EdgeVectorIndex, IndexedPoint

log = logging.getLogger("bench.search_latency")

RESULTS = Path(__file__).resolve().parent / "results" / "search_latency.json"
K = 10
SOURCES = ("library", "upload", "generated")
CLIENT_BATCH = 1000

Row = dict[str, Any]


@dataclass(frozen=True)
class Dataset:
    vectors: np.ndarray  # (N, D) float32
    queries: np.ndarray  # (Q, D) float32
    payloads: list[dict[str, Any]]
    truth: np.ndarray  # (Q, K) ids of the exact top-K by cosine

    @property
    def n(self) -> int:
        return len(self.vectors)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _top_k(unit_vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    scores = unit_vectors @ query  # (N, D) @ (D,) -> (N,)
    top = np.argpartition(-scores, K)[:K]
    return top[np.argsort(-scores[top])]


def make_dataset(n: int, n_queries: int, dim: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    payloads = [
        {"duration": float(d), "source": SOURCES[i % 3], "tags": ["bench"]}
        for i, d in enumerate(rng.uniform(0.5, 30.0, n))
    ]
    unit = _unit_rows(vectors)
    truth = np.stack([_top_k(unit, q) for q in _unit_rows(queries)])
    return Dataset(vectors, queries, payloads, truth)


def _measure_queries(search: Callable[[np.ndarray], Sequence[int]], data: Dataset) -> Row:
    """Times each query alone and scores its answer against the exact top-K."""
    latencies, recalls = [], []
    for query, truth in zip(data.queries, data.truth, strict=True):
        start = time.perf_counter()
        found = search(query)
        latencies.append((time.perf_counter() - start) * 1000.0)
        recalls.append(len(set(found) & set(truth.tolist())) / K)
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        f"recall_at_{K}": float(np.mean(recalls)),
    }


def bench_numpy(data: Dataset) -> Row:
    unit = _unit_rows(data.vectors)
    row: Row = {"backend": "numpy brute force", "n": data.n}
    row |= {"insert_s": None, "index_build_s": None}
    return row | _measure_queries(lambda q: _top_k(unit, q / np.linalg.norm(q)).tolist(), data)


def bench_edge(data: Dataset) -> Row:
    points = [
        IndexedPoint(i, vector, payload)
        for i, (vector, payload) in enumerate(zip(data.vectors, data.payloads, strict=True))
    ]
    with tempfile.TemporaryDirectory(prefix="foley-bench-edge-") as folder:
        index = EdgeVectorIndex(Path(folder) / "index", data.vectors.shape[1])
        try:
            start = time.perf_counter()
            index.upsert(points)
            insert_s = time.perf_counter() - start
            log.info("edge: inserted %d in %.1f s; building HNSW", data.n, insert_s)
            start = time.perf_counter()
            index.optimize()
            build_s = time.perf_counter() - start
            log.info("edge: built in %.1f s; querying", build_s)
            measured = _measure_queries(lambda q: [h.id for h in index.search(q, K)], data)
        finally:
            index.close()
    row: Row = {"backend": "Qdrant Edge (EdgeVectorIndex)", "n": data.n}
    return row | {"insert_s": insert_s, "index_build_s": build_s} | measured


def bench_client_local(data: Dataset) -> Row:
    from qdrant_client import QdrantClient, models

    with tempfile.TemporaryDirectory(prefix="foley-bench-local-") as folder:
        client = QdrantClient(path=folder)
        try:
            params = models.VectorParams(
                size=data.vectors.shape[1], distance=models.Distance.COSINE
            )
            client.create_collection("bench", vectors_config={VECTOR_NAME: params})
            start = time.perf_counter()
            for first in range(0, data.n, CLIENT_BATCH):
                batch = range(first, min(first + CLIENT_BATCH, data.n))
                structs = [
                    models.PointStruct(
                        id=i,
                        vector={VECTOR_NAME: data.vectors[i].tolist()},
                        payload=data.payloads[i],
                    )
                    for i in batch
                ]
                client.upsert("bench", points=structs, wait=True)
            insert_s = time.perf_counter() - start
            log.info("client local: inserted %d in %.1f s; querying", data.n, insert_s)

            def search(query: np.ndarray) -> list[int]:
                response = client.query_points(
                    "bench", query=query.tolist(), using=VECTOR_NAME, limit=K
                )
                return [int(p.id) for p in response.points]

            measured = _measure_queries(search, data)
        finally:
            client.close()
    row: Row = {"backend": "qdrant-client local (path)", "n": data.n}
    # Local mode has no ANN index: every query is a brute-force scan.
    return row | {"insert_s": insert_s, "index_build_s": 0.0} | measured


VECTOR_BENCHES: tuple[Callable[[Dataset], Row], ...] = (bench_numpy, bench_edge, bench_client_local)


def vector_rows(n: int, n_queries: int, dim: int, seed: int) -> list[Row]:
    log.info("N=%d: generating %d vectors and exact answers", n, n)
    data = make_dataset(n, n_queries, dim, seed)
    return [bench(data) for bench in VECTOR_BENCHES]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[Row]) -> str:
    columns = ["backend", "n", "insert_s", "index_build_s", "p50_ms", "p95_ms", f"recall_at_{K}"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def api_sizes(spec: str) -> list[int]:
    return [int(s) for s in spec.split(",") if s.strip()]


def api_table(rows: list[dict[str, float]]) -> str:
    columns = [
        "sounds",
        "api_p50_ms",
        "api_p95_ms",
        "text_embed_p50_ms",
        "ann_p50_ms",
        "catalog_write_s",
        "index_sync_s",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated point counts")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--api-sizes", default="10000", help="catalog sizes for the end-to-end GET /api/search run"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = _parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows: list[Row] = []
    for n in sizes:
        rows += vector_rows(n, args.queries, args.dim, args.seed)
    api_rows = [bench_api(n) for n in api_sizes(args.api_sizes)]
    print(markdown_table(rows))
    if api_rows:
        print()
        print(api_table(api_rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    setup = {"sizes": sizes, "queries": args.queries, "dim": args.dim, "seed": args.seed, "k": K}
    machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
    machine |= {pkg: metadata.version(pkg) for pkg in ("qdrant-edge-py", "qdrant-client", "numpy")}
    results = {"setup": setup, "machine": machine, "rows": rows, "api_rows": api_rows}
    args.out.write_text(json.dumps(results, indent=2))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
