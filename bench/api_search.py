"""End-to-end `GET /api/search` latency over a catalog of N sounds.

A real `foley serve` process (uvicorn, SQLite catalog, Qdrant Edge index, the configured
CLAP) answers real HTTP requests; the same run times the CLAP text embedding and the index
query alone, so the table shows where the time goes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

QUERIES = [
    "a siren in a large hall",
    "rain on a window",
    "heavy wooden door creaking shut",
    "a dog barking far away",
    "footsteps on gravel",
    "a short electronic beep",
    "church bell ringing",
    "car engine starting",
    "glass breaking",
    "wind howling",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def populate(data_dir: Path, n: int, seed: int = 0) -> dict[str, float]:
    """A catalog of `n` sounds with random unit embeddings, synced into the index."""
    from core.catalog import Embedding, OutboxEntry, Sound
    from core.config import get_settings
    from search.service import Foley

    get_settings.cache_clear()
    foley = Foley.open(get_settings())
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, foley.clap.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    with foley.catalog.session() as session:
        for i in range(n):
            sound = Sound(
                content_hash=f"{i:064x}",
                size=1000,
                duration=float(1 + i % 9),
                sample_rate=16000,
                channels=1,
                format="wav",
                title=f"sound {i}",
                tags=[["ambience", "impacts", "vehicles"][i % 3]],
            )
            session.add(sound)
            session.flush()
            session.add(
                Embedding(
                    sound_id=sound.id,
                    model_id=foley.clap.model_id,
                    dim=foley.clap.dim,
                    vector=Embedding.pack(vectors[i]),
                )
            )
            session.add(OutboxEntry(sound_id=sound.id, op="upsert"))
    catalog_s = time.perf_counter() - started
    started = time.perf_counter()
    foley.sync()
    foley.index.optimize()
    sync_s = time.perf_counter() - started
    text_ms = _time_ms(lambda q: foley.clap.embed_text([q]))
    query = foley.clap.embed_text(["a siren"])[0]
    ann_ms = _time_ms(lambda _q: foley.index.search(query, 10))
    foley.close()
    return {
        "catalog_write_s": catalog_s,
        "index_sync_s": sync_s,
        "text_embed_p50_ms": text_ms[0],
        "text_embed_p95_ms": text_ms[1],
        "ann_p50_ms": ann_ms[0],
        "ann_p95_ms": ann_ms[1],
    }


def _time_ms(fn, repeats: int = 50) -> tuple[float, float]:  # noqa: ANN001
    fn(QUERIES[0])
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        fn(QUERIES[i % len(QUERIES)])
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def bench_api(n: int = 10_000, requests: int = 100) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FOLEY_DATA_DIR": tmp, "FOLEY_API_PORT": str(_free_port())}
        env["FOLEY_RATE_LIMIT_SEARCH"] = ""  # a benchmark measures latency, not the limiter
        os.environ["FOLEY_DATA_DIR"] = tmp
        row = populate(Path(tmp), n)
        server = subprocess.Popen(
            [sys.executable, "-m", "foley", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{env['FOLEY_API_PORT']}/api"
            _wait(base + "/health", server)
            times = []
            for i in range(requests + 5):
                url = f"{base}/search?" + urllib.parse.urlencode({"q": QUERIES[i % 10], "k": 10})
                started = time.perf_counter()
                with urllib.request.urlopen(url, timeout=30) as response:
                    body = json.load(response)
                if i >= 5:  # the first requests warm caches
                    times.append((time.perf_counter() - started) * 1000)
                assert body["count"] == 10
        finally:
            server.terminate()
            server.wait(timeout=30)
    row.update(
        sounds=n,
        api_p50_ms=float(np.percentile(times, 50)),
        api_p95_ms=float(np.percentile(times, 95)),
    )
    return row


def _wait(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("foley serve exited during start-up")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("foley serve did not start")


if __name__ == "__main__":
    print(json.dumps(bench_api(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000), indent=2))
