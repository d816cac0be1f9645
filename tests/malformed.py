"""Malformed sound files for the fuzz tests: every way a file can lie, break or attack.

`malformed_files(count, seed)` returns `count` files cycling through `KINDS`, each built from a
real encoded clip (WAV, FLAC, Ogg Vorbis, AIFF, MP3) or from nothing, deterministic in the
seed. They are small (a few KB to a few hundred KB) whatever they claim to hold.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import soundfile as sf

SR = 16_000


@dataclass(frozen=True)
class Malformed:
    kind: str
    name: str
    data: bytes


# format -> (libsndfile format, subtype, extension)
_FORMATS = {
    "wav": ("WAV", "PCM_16", "wav"),
    "flac": ("FLAC", "PCM_16", "flac"),
    "ogg": ("OGG", "VORBIS", "ogg"),
    "aiff": ("AIFF", "PCM_16", "aiff"),
    "mp3": ("MP3", "MPEG_LAYER_III", "mp3"),
}


def encode(fmt: str, wave: np.ndarray, sr: int = SR) -> bytes:
    container, subtype, _ = _FORMATS[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, wave, sr, format=container, subtype=subtype)
    return buffer.getvalue()


def _clip(rng: np.random.Generator, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
    wave = wave + 0.05 * rng.standard_normal(t.size)
    if channels > 1:
        wave = np.repeat(wave[:, None], channels, axis=1)
    return wave.astype(np.float32)


def _any_format(rng: np.random.Generator) -> str:
    return str(rng.choice(list(_FORMATS)))


def truncated(rng: np.random.Generator) -> tuple[str, bytes]:
    fmt = _any_format(rng)
    data = encode(fmt, _clip(rng))
    cut = int(rng.integers(1, max(2, len(data) - 1)))
    return _FORMATS[fmt][2], data[:cut]


def bit_flipped(rng: np.random.Generator) -> tuple[str, bytes]:
    fmt = _any_format(rng)
    data = bytearray(encode(fmt, _clip(rng)))
    # Half the time aim at the header, where a flip changes what the file claims.
    span = min(len(data), 64) if rng.random() < 0.5 else len(data)
    for _ in range(int(rng.integers(1, 16))):
        pos = int(rng.integers(0, span))
        data[pos] ^= 1 << int(rng.integers(0, 8))
    return _FORMATS[fmt][2], bytes(data)


def wrong_extension(rng: np.random.Generator) -> tuple[str, bytes]:
    fmt = _any_format(rng)
    others = [f for f in _FORMATS if f != fmt]
    return _FORMATS[str(rng.choice(others))][2], encode(fmt, _clip(rng))


def _wav_header(
    rate: int, channels: int, bits: int, data_size: int, riff_size: int | None = None
) -> bytes:
    block = channels * bits // 8
    byte_rate = (rate * block) & 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, channels & 0xFFFF, rate, byte_rate, block & 0xFFFF, bits)
    riff = riff_size if riff_size is not None else 36 + data_size
    return (
        b"RIFF"
        + struct.pack("<I", riff & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_size & 0xFFFFFFFF)
    )


def lying_header(rng: np.random.Generator) -> tuple[str, bytes]:
    """A WAV whose header disagrees with its body: rate, width or length."""
    body = (_clip(rng) * 32767).astype("<i2").tobytes()
    choice = int(rng.integers(0, 6))
    if choice == 0:  # promises far more audio than it holds
        header = _wav_header(SR, 1, 16, len(body) * 1000)
    elif choice == 1:  # an impossible sample rate
        header = _wav_header(int(rng.choice([0, 1, 7, 4_000_000_000])), 1, 16, len(body))
    elif choice == 2:  # a bit depth no codec has
        header = _wav_header(SR, 1, int(rng.choice([0, 3, 7, 13, 64, 255])), len(body))
    elif choice == 3:  # RIFF size smaller than the header itself
        header = _wav_header(SR, 1, 16, len(body), riff_size=4)
    elif choice == 4:  # an odd data size that splits a sample
        header = _wav_header(SR, 1, 16, len(body) - 1)
    else:  # a chunk whose length runs past the end, before the data chunk
        header = _wav_header(SR, 1, 16, len(body))[:12] + b"LIST" + struct.pack("<I", 2**31)
    return "wav", header + body


def huge_declared(rng: np.random.Generator) -> tuple[str, bytes]:
    """Headers that declare hours of audio or thousands of channels over a few KB."""
    body = bytes(int(rng.integers(256, 8192)))
    choice = int(rng.integers(0, 4))
    if choice == 0:
        return "wav", _wav_header(SR, 1, 16, 0xFFFFFFF0) + body
    if choice == 1:
        channels = int(rng.choice([9, 64, 1024, 65535]))
        return "wav", _wav_header(SR, channels, 16, len(body)) + body
    if choice == 2:  # FLAC whose STREAMINFO claims 2^36-1 samples
        flac = bytearray(encode("flac", _clip(rng)))
        # STREAMINFO starts at byte 8; total samples are the low 36 bits of bytes 21..25.
        flac[21] = (flac[21] & 0xF0) | 0x0F
        flac[22:26] = b"\xff\xff\xff\xff"
        return "flac", bytes(flac)
    # AIFF whose COMM chunk claims 2^32-1 frames and 4096 channels
    aiff = bytearray(encode("aiff", _clip(rng)))
    comm = aiff.find(b"COMM")
    if comm >= 0:
        aiff[comm + 8 : comm + 10] = struct.pack(">H", 4096)
        aiff[comm + 10 : comm + 14] = b"\xff\xff\xff\xff"
    return "aiff", bytes(aiff)


@cache
def _silence_flac(minutes: int) -> bytes:
    return encode("flac", np.zeros(8_000 * 60 * minutes, dtype=np.float32), 8_000)


@cache
def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("sound.wav", bytes(20_000_000))
    return buffer.getvalue()


def bomb(rng: np.random.Generator) -> tuple[str, bytes]:
    """Tiny files that decode to a lot: long silence, highly compressible."""
    choice = int(rng.integers(0, 3))
    if choice == 0:  # 20 minutes of 8 kHz silence in FLAC: a few hundred KB
        return "flac", _silence_flac(20)
    if choice == 1:  # 12 minutes, its length hidden (STREAMINFO total samples zeroed)
        flac = bytearray(_silence_flac(12))
        flac[21] &= 0xF0
        flac[22:26] = b"\x00\x00\x00\x00"
        return "flac", bytes(flac)
    return "wav", _zip_bomb()  # a zip bomb named like audio


def zero_length(rng: np.random.Generator) -> tuple[str, bytes]:
    return str(rng.choice(["wav", "flac", "ogg", "mp3", "aiff"])), b""


def non_audio(rng: np.random.Generator) -> tuple[str, bytes]:
    choice = int(rng.integers(0, 6))
    ext = str(rng.choice(["wav", "flac", "ogg", "mp3"]))
    if choice == 0:
        return ext, rng.bytes(int(rng.integers(1, 50_000)))
    if choice == 1:
        return ext, b"just some notes about a door creaking\n" * int(rng.integers(1, 200))
    if choice == 2:  # a PNG header and a deflated body
        return ext, b"\x89PNG\r\n\x1a\n" + zlib.compress(rng.bytes(2000))
    if choice == 3:
        return ext, b"\x7fELF\x02\x01\x01" + bytes(200)
    if choice == 4:
        return ext, b'{"error": "not a sound"}'
    # the right magic and nothing else
    return ext, {"wav": b"RIFF", "flac": b"fLaC", "ogg": b"OggS", "mp3": b"ID3"}[ext]


KINDS: dict[str, Callable[[np.random.Generator], tuple[str, bytes]]] = {
    "truncated": truncated,
    "bit-flipped": bit_flipped,
    "wrong extension": wrong_extension,
    "lying header": lying_header,
    "huge declared size/channels": huge_declared,
    "decompression bomb": bomb,
    "zero-length": zero_length,
    "non-audio": non_audio,
}


def malformed_files(count: int, seed: int = 0) -> list[Malformed]:
    """`count` files, kinds in turn, the same for the same seed."""
    rng = np.random.default_rng(seed)
    names = list(KINDS)
    files = []
    for i in range(count):
        kind = names[i % len(names)]
        ext, data = KINDS[kind](rng)
        files.append(Malformed(kind, f"fuzz-{i:04d}-{kind.split()[0].split('/')[0]}.{ext}", data))
    return files
