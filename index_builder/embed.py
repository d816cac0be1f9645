"""Embedder: decode audio safely and turn it into CLAP vectors, a batch at a time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from core.audio import AudioError, AudioInfo, DecodeLimits, decode

if TYPE_CHECKING:
    from collections.abc import Sequence


class AudioEmbedder(Protocol):
    model_id: str
    dim: int
    sample_rate: int

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray: ...


@dataclass
class Decoded:
    info: AudioInfo
    wave: np.ndarray


@dataclass
class Embedded:
    info: AudioInfo
    vector: np.ndarray


@dataclass
class Failed:
    code: str
    message: str


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_for(
    model: AudioEmbedder, data: bytes, name: str, limits: DecodeLimits
) -> Decoded | Failed:
    try:
        wave, info = decode(data, target_sr=model.sample_rate, limits=limits, name=name)
    except AudioError as exc:
        return Failed(exc.code, str(exc))
    return Decoded(info, wave)


def embed_decoded(model: AudioEmbedder, items: Sequence[Decoded]) -> list[Embedded]:
    """One batched forward pass for every decoded item."""
    if not items:
        return []
    vectors = model.embed_audio([item.wave for item in items])
    return [Embedded(item.info, vectors[i]) for i, item in enumerate(items)]
