"""Safe audio decoding: every file is checked against the decode limits before it is decoded.

`probe` reads only the header (after checking the byte size) and refuses files that are too
large, too long, at an unusable sample rate or with too many channels. `decode` does the same
checks, then decodes in blocks to a mono float32 signal at the requested sample rate, refusing
files whose audio stops before the header says it should.

Every refusal is an `AudioError` whose `code` is machine-readable and whose message is a
sentence naming the file.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    from core.config import Settings

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc"}
)

_CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
    ".aifc": "audio/aiff",
}

# libsndfile's container names, folded into the five formats Foley reads.
_FORMATS = {
    "WAV": "wav",
    "WAVEX": "wav",
    "RF64": "wav",
    "W64": "wav",
    "FLAC": "flac",
    "OGG": "ogg",
    "MP3": "mp3",
    "AIFF": "aiff",
}
_SUPPORTED = "WAV, FLAC, Ogg, MP3 or AIFF"

# Below this a file is not a recording Foley can use, whatever its header says.
MIN_SAMPLE_RATE = 1_000

# 64k frames x 8 channels x 4 bytes = 2 MiB per block at the default channel limit.
_BLOCK_FRAMES = 65_536
# libsndfile reports this frame count when a stream does not say how long it is.
_UNKNOWN_FRAMES = 2**63 - 1
# A RIFF or AIFF file with more chunks than this before its audio is not a real file.
_MAX_CHUNKS = 256
_PIPE_CHUNK_BYTES = 64 * 1024
# Writers that stream leave the data size unset (0) or at its maximum.
_UNSET_CHUNK_SIZES = (0, 0xFFFF_FFFF)


@dataclass(frozen=True)
class DecodeLimits:
    """What Foley agrees to decode; checked before any audio is decoded."""

    max_bytes: int
    max_duration_s: float
    max_sample_rate: int
    max_channels: int
    # Wall-clock seconds one file may take to decode; a file that decodes slower than this
    # (a pathological stream, a starved machine) is refused rather than holding a request.
    max_decode_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeLimits:
        return cls(
            max_bytes=settings.max_file_bytes,
            max_duration_s=settings.max_duration_s,
            max_sample_rate=settings.max_sample_rate,
            max_channels=settings.max_channels,
            max_decode_s=settings.max_decode_s,
        )


@dataclass(frozen=True)
class AudioInfo:
    """A file's audio as its header describes it (`decode` returns what was decoded).

    `frames` and `duration` are -1 when the header does not say how long the audio is.
    """

    format: str  # wav, flac, ogg, mp3 or aiff
    subtype: str  # libsndfile's encoding name, e.g. PCM_16, VORBIS, MPEG_LAYER_III
    sample_rate: int
    channels: int
    frames: int
    duration: float
    size: int  # bytes


class AudioError(Exception):
    """A file Foley refuses to decode; `str()` is a sentence that names the file."""

    code: ClassVar[str] = "bad_audio"

    def __init__(self, filename: str, problem: str) -> None:
        super().__init__(f"{filename} {problem}")
        self.filename = filename


class EmptyAudioError(AudioError):
    code = "empty_file"


class NotAudioError(AudioError):
    code = "not_audio"


class CorruptAudioError(AudioError):
    """The file is damaged, including truncated: its audio stops before its header says."""

    code = "corrupt_audio"


class TooLargeError(AudioError):
    code = "too_large"


class TooLongError(AudioError):
    code = "too_long"


class UnsupportedSampleRateError(AudioError):
    code = "bad_sample_rate"


class TooManyChannelsError(AudioError):
    code = "too_many_channels"


class TooSlowError(AudioError):
    code = "decode_too_slow"


def is_audio_name(path: Path) -> bool:
    """Whether the file name has one of Foley's audio extensions (any case)."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def content_type(path: Path) -> str:
    """The MIME type for an audio file name; application/octet-stream for anything else."""
    return _CONTENT_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def probe(source: Path | bytes, limits: DecodeLimits, name: str | None = None) -> AudioInfo:
    """Check a file's size and header against `limits` without decoding any audio."""
    src = _Source.of(source, name)
    _check_size(src, limits)
    with _open_sound(src) as sound:
        return _check_header(src, sound, limits).info


def decode(
    source: Path | bytes, *, target_sr: int, limits: DecodeLimits, name: str | None = None
) -> tuple[np.ndarray, AudioInfo]:
    """Decode to a 1-D float32 mono signal at `target_sr`, after the checks `probe` makes.

    The returned info describes the decoded audio (frames at the file's own sample rate).
    """
    if target_sr <= 0:
        raise ValueError(f"target_sr must be a positive number of Hz, not {target_sr}")
    src = _Source.of(source, name)
    _check_size(src, limits)
    with _open_sound(src) as sound:
        header = _check_header(src, sound, limits)
        mono = _read_mono(src, sound, header, limits) if header.exact_length else None
    if mono is None:
        # libsndfile stops at a length it only estimated (an MP3 without a length tag);
        # through a pipe it has no length and reads to the end, within the frame budget.
        with _open_streamed(src) as sound:
            mono = _read_mono(src, sound, header, limits)
    info = replace(header.info, frames=len(mono), duration=len(mono) / header.info.sample_rate)
    return _resample(mono, info.sample_rate, target_sr), info


@dataclass(frozen=True)
class _Source:
    """A file on disk or bytes in memory, with the name messages use for it."""

    label: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def of(cls, source: Path | bytes, name: str | None) -> _Source:
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            return cls(label=name or "the audio data", size=len(data), data=data)
        path = Path(source)
        return cls(label=name or path.name, size=os.stat(path).st_size, path=path)

    def stream(self) -> BinaryIO:
        if self.path is not None:
            return open(self.path, "rb")
        return io.BytesIO(self.data or b"")

    def for_soundfile(self) -> str | BinaryIO:
        # A path lets libsndfile do its own I/O rather than call back into Python.
        return str(self.path) if self.path is not None else _ClampedBytes(self.data or b"")


class _ClampedBytes(io.BytesIO):
    """Bytes for libsndfile. A damaged header can make it seek before the start; BytesIO
    raises there, and an exception inside soundfile's C callback is printed to stderr as a
    traceback. Landing at the start instead lets the checks that follow refuse the file."""

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: len(self.getbuffer())}
        target = base.get(whence, 0) + offset
        return super().seek(max(target, 0))


@dataclass(frozen=True)
class _Header:
    info: AudioInfo
    exact_length: bool  # whether the header's frame count is a promise or an estimate


def _check_size(src: _Source, limits: DecodeLimits) -> None:
    if src.size == 0:
        raise EmptyAudioError(src.label, "is empty (0 bytes)")
    if src.size > limits.max_bytes:
        raise TooLargeError(
            src.label,
            f"is {_format_bytes(src.size)}, over the {_format_bytes(limits.max_bytes)} limit",
        )


@contextmanager
def _open_sound(src: _Source) -> Iterator[sf.SoundFile]:
    try:
        sound = sf.SoundFile(src.for_soundfile())
    except (sf.LibsndfileError, RuntimeError) as exc:
        logger.debug("libsndfile could not open %s: %s", src.label, exc)
        with src.stream() as stream:
            kind = _sniff(stream.read(12))
        if kind is None:
            raise NotAudioError(src.label, f"is not a {_SUPPORTED} audio file") from exc
        raise CorruptAudioError(src.label, f"is damaged: its {kind} header is unreadable") from exc
    with sound:
        yield sound


@contextmanager
def _open_streamed(src: _Source) -> Iterator[sf.SoundFile]:
    """Open the file as a pipe fed by a thread, so libsndfile treats it as unbounded."""
    read_fd, write_fd = os.pipe()
    feeder = threading.Thread(target=_feed, args=(src, write_fd), name="audio-feed", daemon=True)
    feeder.start()
    try:
        try:
            sound = sf.SoundFile(read_fd, closefd=False)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise CorruptAudioError(src.label, "is damaged: its audio is unreadable") from exc
        with sound:
            yield sound
    finally:
        os.close(read_fd)  # a feeder blocked on a full pipe now fails and returns
        feeder.join()


def _feed(src: _Source, write_fd: int) -> None:
    try:
        with os.fdopen(write_fd, "wb") as pipe, src.stream() as stream:
            while chunk := stream.read(_PIPE_CHUNK_BYTES):
                pipe.write(chunk)
    except OSError:
        # The reader stopped early (refused or failed); it reports why.
        logger.debug("stopped feeding %s", src.label)


def _check_header(src: _Source, sound: sf.SoundFile, limits: DecodeLimits) -> _Header:
    fmt = _FORMATS.get(sound.format)
    if fmt is None:
        raise NotAudioError(
            src.label, f"is {sound.format_info} audio; Foley reads {_SUPPORTED} files"
        )
    sample_rate, channels = int(sound.samplerate), int(sound.channels)
    if not MIN_SAMPLE_RATE <= sample_rate <= limits.max_sample_rate:
        raise UnsupportedSampleRateError(
            src.label,
            f"has a sample rate of {sample_rate} Hz; Foley accepts "
            f"{MIN_SAMPLE_RATE} to {limits.max_sample_rate} Hz",
        )
    if channels > limits.max_channels:
        raise TooManyChannelsError(
            src.label, f"has {channels} channels; Foley accepts up to {limits.max_channels}"
        )
    frames = -1 if sound.frames >= _UNKNOWN_FRAMES else int(sound.frames)
    if frames == 0:
        raise EmptyAudioError(src.label, "contains no audio (0 frames)")
    if frames > _frame_budget(limits, sample_rate):
        raise TooLongError(
            src.label,
            f"is {_format_seconds(frames / sample_rate)} long, "
            f"over the {_format_seconds(limits.max_duration_s)} limit",
        )
    with src.stream() as stream:
        _check_chunk_sizes(src, stream)
        exact = frames > 0 and (fmt != "mp3" or _mp3_has_length_tag(stream))
    info = AudioInfo(
        format=fmt,
        subtype=sound.subtype,
        sample_rate=sample_rate,
        channels=channels,
        frames=frames,
        duration=frames / sample_rate if frames > 0 else -1.0,
        size=src.size,
    )
    return _Header(info=info, exact_length=exact)


def _frame_budget(limits: DecodeLimits, sample_rate: int) -> int:
    return math.floor(limits.max_duration_s * sample_rate)


def _read_mono(
    src: _Source, sound: sf.SoundFile, header: _Header, limits: DecodeLimits
) -> np.ndarray:
    """Decode block by block, mixing down as it goes so only mono audio is kept."""
    sample_rate = header.info.sample_rate
    if (sound.samplerate, sound.channels) != (sample_rate, header.info.channels):
        raise CorruptAudioError(src.label, "changed while it was being read")
    budget = _frame_budget(limits, sample_rate)
    deadline = time.monotonic() + limits.max_decode_s
    blocks: list[np.ndarray] = []
    decoded = 0
    while True:
        if time.monotonic() > deadline:
            raise TooSlowError(
                src.label,
                f"took longer than {_format_seconds(limits.max_decode_s)} to decode "
                f"({_format_seconds(decoded / sample_rate)} of audio so far)",
            )
        # Ask for one frame past the budget so that a stream longer than allowed shows itself.
        wanted = min(_BLOCK_FRAMES, budget + 1 - decoded)
        try:
            block = sound.read(wanted, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            logger.info("decoding %s failed after %d frames: %s", src.label, decoded, exc)
            raise CorruptAudioError(
                src.label,
                "is damaged or cut off: decoding failed "
                f"{_format_seconds(decoded / sample_rate)} into the audio",
            ) from exc
        if len(block) == 0:
            break
        decoded += len(block)
        if decoded > budget:
            raise TooLongError(
                src.label, f"is longer than the {_format_seconds(limits.max_duration_s)} limit"
            )
        if not np.isfinite(block).all():
            raise CorruptAudioError(src.label, "contains invalid samples (NaN or infinity)")
        blocks.append(block.mean(axis=1, dtype=np.float32))
    _check_decoded_length(src, header, decoded)
    return np.concatenate(blocks)


def _check_decoded_length(src: _Source, header: _Header, decoded: int) -> None:
    promised = header.info.frames
    if decoded == 0:
        raise CorruptAudioError(src.label, "is damaged: no audio could be decoded from it")
    if header.exact_length and decoded < promised:
        rate = header.info.sample_rate
        raise CorruptAudioError(
            src.label,
            f"is truncated: its header promises {_format_seconds(promised / rate)} of audio "
            f"but only {_format_seconds(decoded / rate)} could be decoded",
        )


def _check_chunk_sizes(src: _Source, stream: BinaryIO) -> None:
    """Refuse a WAV or AIFF file whose audio chunk runs past the end of the file.

    libsndfile silently shortens such a file to what is there, so this is the only place
    a cut-off WAV or AIFF shows itself.
    """
    found = _audio_chunk(stream)
    if found is None:
        return
    start, declared = found
    present = src.size - start
    if declared not in _UNSET_CHUNK_SIZES and declared > present:
        raise CorruptAudioError(
            src.label,
            f"is truncated: its header promises {declared:,} bytes of audio "
            f"but the file holds only {max(present, 0):,}",
        )


def _audio_chunk(stream: BinaryIO) -> tuple[int, int] | None:
    """(offset of the audio bytes, their declared length) in a RIFF WAV or AIFF file."""
    head = stream.read(12)
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        order, audio_id = ("<" if head[:4] == b"RIFF" else ">"), b"data"
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        order, audio_id = ">", b"SSND"
    else:
        return None
    offset = 12
    for _ in range(_MAX_CHUNKS):
        stream.seek(offset)
        chunk = stream.read(8)
        if len(chunk) < 8:
            return None
        (length,) = struct.unpack(order + "I", chunk[4:])
        if chunk[:4] == audio_id:
            return offset + 8, length
        offset += 8 + length + (length & 1)  # chunks are padded to an even size
    return None


def _mp3_has_length_tag(stream: BinaryIO) -> bool:
    """Whether an MP3 states its length (Xing, Info or VBRI tag) rather than leaving mpg123
    to estimate it from the file size and the first frame's bitrate."""
    stream.seek(0)
    head = stream.read(10)
    start = 0
    if head[:3] == b"ID3" and len(head) == 10:
        # ID3v2 size: four 7-bit bytes, plus a 10-byte footer when flag 0x10 is set.
        size = int.from_bytes(bytes(b & 0x7F for b in head[6:10]), "big")
        start = 10 + size + (10 if head[5] & 0x10 else 0)
    stream.seek(start)
    first_frame = stream.read(200)
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))


def _sniff(head: bytes) -> str | None:
    """The format a file's first bytes claim, to tell a damaged file from a non-audio one."""
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return None


def _resample(signal: np.ndarray, sample_rate: int, target_sr: int) -> np.ndarray:
    if sample_rate == target_sr:
        return signal
    # Imported here: scipy.signal is slow to import and most callers of core never resample.
    from scipy.signal import resample_poly

    common = math.gcd(sample_rate, target_sr)
    out = resample_poly(signal, target_sr // common, sample_rate // common)
    return np.ascontiguousarray(out, dtype=np.float32)


def _format_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _format_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 100:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s"
