"""Vectors for the ANN benchmark: real CLAP embeddings of the corpus, grown to any size.

The base set is the compact CLAP's audio embeddings of a seeded draw of corpus clips; the
queries are its text embeddings of captions of other clips (held out of the base set, so no
query has its own clip in the library). Both are cached under ~/.cache/foley/bench, keyed by
the CLAP's model id; a whole-corpus cache written by `generative.clap.features` is used
instead when one exists.

`grow` extends the base set to N points the way a large library differs from a small one:
each new point is a real embedding mixed with another real one and perturbed, then
re-normalised, so the set keeps the clusters and the audio/text gap of real CLAP vectors.

    python -m bench.ann_data --clips 8000     # embeds and caches, prints the cache path
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import DEFAULT_MODELS_DIR

log = logging.getLogger("bench.ann_data")

CACHE_DIR = Path.home() / ".cache" / "foley" / "bench"
DEFAULT_CORPUS = Path("/work/corpus")
HELD_OUT = 0.1  # share of the drawn clips whose captions are queries, not library sounds
# Perturbation of grown points: the partner's weight is drawn from [0, MIX_MAX] and the noise
# has this norm, so a grown point keeps a cosine of about 0.9 to its source.
MIX_MAX = 0.35
NOISE_NORM = 0.35


@dataclass(frozen=True)
class RealVectors:
    model_id: str
    audio: np.ndarray  # (B, D) unit vectors: the base library
    queries: np.ndarray  # (Q, D) unit vectors: captions of held-out clips


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def _stem(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)


def _corpus_cache(corpus: Path, model_id: str) -> Path | None:
    found = sorted((corpus / "cache").glob(f"clap-features-{_stem(model_id)}*.npz"))
    return found[0] if found else None


def _split_draw(n_clips: int, total: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(base, held-out) clip indices of a seeded draw of `n_clips` out of `total`."""
    drawn = np.random.default_rng(seed).permutation(total)[:n_clips]
    cut = int(round(len(drawn) * (1 - HELD_OUT)))
    return np.sort(drawn[:cut]), np.sort(drawn[cut:])


def real_vectors(
    corpus: Path, clap_dir: Path, n_clips: int, seed: int = 0, cache_dir: Path = CACHE_DIR
) -> RealVectors:
    """Audio embeddings of a draw of `n_clips` corpus clips (90 %) and one caption embedding
    per remaining clip (10 %), from a cache or embedded now and cached."""
    from generative.clap.load import file_digest

    model_id = f"clap-compact:{file_digest(clap_dir / 'model.safetensors')[:12]}"
    path = cache_dir / f"ann-{_stem(model_id)}-{n_clips}-seed{seed}.npz"
    if path.exists():
        with np.load(path) as cached:
            log.info("real vectors from %s", path)
            return RealVectors(model_id, cached["audio"], cached["queries"])
    vectors = _embed(corpus, clap_dir, model_id, n_clips, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=vectors.audio, queries=vectors.queries)
    os.replace(tmp, path)
    log.info("cached %s", path)
    return vectors


def _embed(corpus: Path, clap_dir: Path, model_id: str, n_clips: int, seed: int) -> RealVectors:
    from generative.clap.eval import read_manifest

    clips = read_manifest(corpus)
    base, held = _split_draw(min(n_clips, len(clips)), len(clips), seed)
    captions = [clips[i].captions[seed % len(clips[i].captions)] for i in held]
    corpus_cache = _corpus_cache(corpus, model_id)
    if corpus_cache is not None:
        from generative.clap.features import corpus_features
        from generative.clap.load import load_clap

        log.info("using the corpus feature cache %s", corpus_cache)
        features = corpus_features(corpus, load_clap(clap_dir))
        row = {clip_id: i for i, clip_id in enumerate(features.clip_ids.tolist())}
        audio = features.audio[[row[clips[i].id] for i in base]]
        return RealVectors(model_id, unit_rows(audio), _embed_text(clap_dir, captions))
    return RealVectors(
        model_id, _embed_audio(clap_dir, [clips[i] for i in base]), _embed_text(clap_dir, captions)
    )


def _embed_audio(clap_dir: Path, clips: Sequence[object]) -> np.ndarray:
    from generative.clap.eval import decode_clip
    from generative.clap.load import load_clap

    clap = load_clap(clap_dir)
    out = np.zeros((len(clips), clap.dim), dtype=np.float32)
    started, chunk = time.perf_counter(), 64
    for start in range(0, len(clips), chunk):
        part = clips[start : start + chunk]
        waves = [decode_clip(c.path, clap.sample_rate, max_seconds=30.0) for c in part]  # type: ignore[attr-defined]
        out[start : start + len(part)] = clap.embed_audio(waves)
        done = start + len(part)
        elapsed = time.perf_counter() - started
        log.info("embedded %d/%d clips (%.0f s, %.1f clips/s)", done, len(clips), elapsed,
                 done / elapsed)  # fmt: skip
    return out


def _embed_text(clap_dir: Path, captions: Sequence[str]) -> np.ndarray:
    from generative.clap.load import load_clap

    return load_clap(clap_dir).embed_text(list(captions))


def grow(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` unit vectors: the base set first, then mixed and perturbed copies of it."""
    if n <= len(base):
        return base[:n].copy()
    rng = np.random.default_rng(seed)
    extra = n - len(base)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    out[: len(base)] = base
    step = 50_000  # bounds the temporary arrays
    for start in range(0, extra, step):
        size = min(step, extra - start)
        source = base[rng.integers(len(base), size=size)]
        partner = base[rng.integers(len(base), size=size)]
        weight = rng.uniform(0.0, MIX_MAX, size=(size, 1)).astype(np.float32)
        noise = rng.standard_normal(source.shape, dtype=np.float32)
        noise *= NOISE_NORM / np.sqrt(base.shape[1])
        mixed = (1 - weight) * source + weight * partner + noise
        first = len(base) + start
        out[first : first + size] = unit_rows(mixed)
    return out


def random_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """The worst case for HNSW: isotropic Gaussian directions, no clusters."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        out[start : start + size] = unit_rows(rng.standard_normal((size, dim), dtype=np.float32))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--clap", type=Path, default=DEFAULT_MODELS_DIR / "clap-compact")
    parser.add_argument("--clips", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    vectors = real_vectors(args.corpus, args.clap, args.clips, args.seed)
    print(
        f"{len(vectors.audio)} audio vectors, {len(vectors.queries)} queries ({vectors.model_id})"
    )


if __name__ == "__main__":
    main()
