"""Safe decoding: round trips per format, resampling, and every refusal with its message."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    CorruptAudioError,
    DecodeLimits,
    EmptyAudioError,
    NotAudioError,
    TooLargeError,
    TooLongError,
    TooManyChannelsError,
    UnsupportedSampleRateError,
    content_type,
    decode,
    is_audio_name,
    probe,
)
from core.config import Settings

LIMITS = DecodeLimits(
    max_bytes=50 * 1024 * 1024, max_duration_s=60.0, max_sample_rate=192_000, max_channels=8
)
SR = 22_050


def _mp3_writable() -> bool:
    try:
        sf.write(io.BytesIO(), np.zeros(1152, np.float32), 16_000, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError):
        return False
    return True


MP3 = pytest.param(
    ("mp3", "MP3", "MPEG_LAYER_III"),
    marks=pytest.mark.skipif(not _mp3_writable(), reason="libsndfile cannot write MP3 here"),
)
FORMATS = [
    ("wav", "WAV", "PCM_16"),
    ("flac", "FLAC", "PCM_16"),
    ("ogg", "OGG", "VORBIS"),
    MP3,
    ("aiff", "AIFF", "PCM_16"),
]
LOSSY = {"ogg", "mp3"}


def _tone(seconds: float, sr: int = SR, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, data: np.ndarray, sr: int = SR, **kwargs: str) -> Path:
    sf.write(path, data, sr, **kwargs)
    return path


def _stereo_file(tmp_path: Path, seconds: float = 0.5, sr: int = SR) -> Path:
    tone = _tone(seconds, sr)
    return _write(tmp_path / "door.wav", np.stack([tone, 0.5 * tone], axis=1), sr)


def _flac_claiming(data: bytes, total_frames: int) -> bytes:
    """The FLAC with its STREAMINFO total-sample count (the low 36 of 40 bits) replaced."""
    assert data[:4] == b"fLaC"
    offset = 8 + 13  # "fLaC", block header, then 13 bytes before the count
    field = int.from_bytes(data[offset : offset + 5], "big")
    field = (field & ~((1 << 36) - 1)) | total_frames
    return data[:offset] + field.to_bytes(5, "big") + data[offset + 5 :]


def _untagged_mp3(samples: np.ndarray) -> bytes:
    """An MP3 whose length tag is blanked, so mpg123 must estimate its length."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16_000, format="MP3")
    data = buffer.getvalue()
    for tag in (b"Xing", b"Info"):
        data = data.replace(tag, b"\0\0\0\0", 1)
    return data


def _assert_refused(exc: pytest.ExceptionInfo[AudioError], code: str, label: str) -> None:
    assert exc.value.code == code
    assert label in str(exc.value)
    assert str(exc.value).startswith(label)


# Round trips


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f[0])
def test_each_format_round_trips_with_duration_and_mono_mix(
    tmp_path: Path, fmt: tuple[str, str, str]
) -> None:
    ext, container, subtype = fmt
    tone = _tone(0.5)
    path = _write(
        tmp_path / f"creak.{ext}",
        np.stack([tone, 0.5 * tone], axis=1),
        format=container,
        subtype=subtype,
    )

    info = probe(path, LIMITS)
    mono, decoded = decode(path, target_sr=SR, limits=LIMITS)

    assert info.format == ext and info.channels == 2 and info.sample_rate == SR
    assert info.size == path.stat().st_size
    assert decoded.frames == info.frames == len(tone)
    assert decoded.duration == pytest.approx(0.5)
    assert mono.dtype == np.float32 and mono.ndim == 1 and len(mono) == len(tone)
    expected = 0.75 * tone  # mean of the two channels
    if ext in LOSSY:
        assert np.corrcoef(mono, expected)[0, 1] > 0.95
        assert np.sqrt(np.mean(mono**2)) == pytest.approx(np.sqrt(np.mean(expected**2)), rel=0.1)
    else:
        np.testing.assert_allclose(mono, expected, atol=2e-4)


def test_mix_down_is_the_mean_of_all_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    channels = rng.uniform(-0.9, 0.9, size=(4000, 3)).astype(np.float32)
    path = _write(tmp_path / "rain.wav", channels, subtype="FLOAT")

    mono, info = decode(path, target_sr=SR, limits=LIMITS)

    assert info.channels == 3
    np.testing.assert_allclose(mono, channels.mean(axis=1), atol=1e-6)


def test_bytes_decode_like_the_file_and_use_the_given_name(tmp_path: Path) -> None:
    path = _stereo_file(tmp_path)
    from_path, path_info = decode(path, target_sr=16_000, limits=LIMITS)

    from_bytes, bytes_info = decode(
        path.read_bytes(), target_sr=16_000, limits=LIMITS, name="upload.wav"
    )

    np.testing.assert_array_equal(from_bytes, from_path)
    assert bytes_info == path_info
    with pytest.raises(TooLargeError) as exc:
        probe(path.read_bytes(), DecodeLimits(100, 60.0, 192_000, 8), name="upload.wav")
    _assert_refused(exc, "too_large", "upload.wav")


def test_mp3_without_a_length_tag_decodes_from_its_estimate(tmp_path: Path) -> None:
    if not _mp3_writable():
        pytest.skip("libsndfile cannot write MP3 here")
    data = _untagged_mp3(_tone(1.0, 16_000))

    mono, info = decode(data, target_sr=16_000, limits=LIMITS, name="whoosh.mp3")

    assert info.format == "mp3"
    assert probe(data, LIMITS).duration < 0.9  # mpg123's estimate from the first frame
    assert 0.9 < info.duration < 1.2
    assert len(mono) == info.frames


def test_mp3_without_a_length_tag_is_held_to_the_frame_budget() -> None:
    if not _mp3_writable():
        pytest.skip("libsndfile cannot write MP3 here")
    noise = np.random.default_rng(0).normal(0.0, 0.2, 30 * 16_000).astype(np.float32)
    data = _untagged_mp3(noise)
    assert len(data) > 64 * 1024  # more than a pipe holds, so the feeder must be stopped
    limits = DecodeLimits(LIMITS.max_bytes, 20.0, 192_000, 8)
    assert probe(data, limits).duration < 20.0  # the estimate lets it through

    with pytest.raises(TooLongError) as exc:
        decode(data, target_sr=16_000, limits=limits, name="drone.mp3")

    _assert_refused(exc, "too_long", "drone.mp3")


# Resampling


def test_resampling_44100_to_16000_has_the_right_length_and_is_deterministic(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "chime.wav", _tone(1.0, 44_100, freq=1000.0), 44_100)

    first, info = decode(path, target_sr=16_000, limits=LIMITS)
    second, _ = decode(path, target_sr=16_000, limits=LIMITS)

    assert info.sample_rate == 44_100 and info.frames == 44_100
    assert first.dtype == np.float32 and len(first) == 16_000
    np.testing.assert_array_equal(first, second)
    peak_hz = np.argmax(np.abs(np.fft.rfft(first))) * 16_000 / len(first)
    assert peak_hz == pytest.approx(1000.0, abs=2.0)


def test_resampled_length_rounds_up_for_odd_lengths(tmp_path: Path) -> None:
    path = _write(tmp_path / "tick.wav", np.zeros(44_101, np.float32) + 0.1, 44_100)

    mono, _ = decode(path, target_sr=16_000, limits=LIMITS)

    assert len(mono) == 16_001  # ceil(44101 * 160 / 441)


# Refusals


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "door.wav"
    path.write_bytes(b"")

    with pytest.raises(EmptyAudioError) as exc:
        decode(path, target_sr=SR, limits=LIMITS)

    _assert_refused(exc, "empty_file", "door.wav")
    assert str(exc.value) == "door.wav is empty (0 bytes)"


def test_header_without_frames_is_empty(tmp_path: Path) -> None:
    path = _write(tmp_path / "silence.wav", np.zeros((0, 1), np.float32))

    with pytest.raises(EmptyAudioError) as exc:
        probe(path, LIMITS)

    _assert_refused(exc, "empty_file", "silence.wav")


@pytest.mark.parametrize(
    "content",
    [
        b"Footsteps on gravel, recorded 2019.\n" * 20,
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        np.random.default_rng(7).bytes(4096),
    ],
    ids=["text", "png", "random"],
)
def test_non_audio_is_not_audio(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "steps.wav"
    path.write_bytes(content)

    with pytest.raises(NotAudioError) as exc:
        decode(path, target_sr=SR, limits=LIMITS)

    _assert_refused(exc, "not_audio", "steps.wav")


def test_truncated_wav_is_corrupt_from_its_header(tmp_path: Path) -> None:
    full = _stereo_file(tmp_path).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(full[: len(full) // 2])

    with pytest.raises(CorruptAudioError) as exc:
        probe(path, LIMITS)

    _assert_refused(exc, "corrupt_audio", "cut.wav")
    assert "truncated" in str(exc.value)


def test_truncated_aiff_is_corrupt(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.aiff", _tone(0.5), format="AIFF").read_bytes()

    with pytest.raises(CorruptAudioError) as exc:
        decode(full[: len(full) * 2 // 3], target_sr=SR, limits=LIMITS, name="cut.aiff")

    _assert_refused(exc, "corrupt_audio", "cut.aiff")


def test_truncated_flac_passes_the_header_but_fails_to_decode(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.flac", _tone(1.0), format="FLAC").read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(full[: len(full) // 2])

    info = probe(path, LIMITS)
    with pytest.raises(CorruptAudioError) as exc:
        decode(path, target_sr=SR, limits=LIMITS)

    assert info.frames == SR  # the header still promises the whole second
    _assert_refused(exc, "corrupt_audio", "cut.flac")


def test_truncated_mp3_with_a_length_tag_is_corrupt(tmp_path: Path) -> None:
    if not _mp3_writable():
        pytest.skip("libsndfile cannot write MP3 here")
    buffer = io.BytesIO()
    sf.write(buffer, _tone(2.0, 16_000), 16_000, format="MP3")
    data = buffer.getvalue()

    with pytest.raises(CorruptAudioError) as exc:
        decode(data[: len(data) // 2], target_sr=16_000, limits=LIMITS, name="cut.mp3")

    _assert_refused(exc, "corrupt_audio", "cut.mp3")


def test_damaged_header_of_a_known_format_is_corrupt_not_foreign(tmp_path: Path) -> None:
    full = _stereo_file(tmp_path).read_bytes()

    with pytest.raises(CorruptAudioError) as exc:
        probe(full[:20], LIMITS, name="stub.wav")

    _assert_refused(exc, "corrupt_audio", "stub.wav")


def test_nan_samples_are_refused(tmp_path: Path) -> None:
    samples = _tone(0.2)
    samples[100] = np.nan
    path = _write(tmp_path / "glitch.wav", samples, subtype="FLOAT")

    with pytest.raises(CorruptAudioError) as exc:
        decode(path, target_sr=SR, limits=LIMITS)

    _assert_refused(exc, "corrupt_audio", "glitch.wav")
    assert "NaN" in str(exc.value)


def test_over_size_is_refused_before_reading(tmp_path: Path) -> None:
    path = _stereo_file(tmp_path)
    size = path.stat().st_size

    assert probe(path, DecodeLimits(size, 60.0, 192_000, 8)).size == size
    with pytest.raises(TooLargeError) as exc:
        decode(path, target_sr=SR, limits=DecodeLimits(size - 1, 60.0, 192_000, 8))

    _assert_refused(exc, "too_large", "door.wav")


def test_over_duration_is_read_from_the_header(tmp_path: Path) -> None:
    # One second of real audio whose header claims ten hours: only a header check sees ten hours.
    real = _write(tmp_path / "real.flac", _tone(1.0), format="FLAC").read_bytes()
    path = tmp_path / "drone.flac"
    path.write_bytes(_flac_claiming(real, SR * 36_000))

    with pytest.raises(TooLongError) as from_probe:
        probe(path, LIMITS)
    with pytest.raises(TooLongError) as from_decode:
        decode(path, target_sr=SR, limits=LIMITS)

    _assert_refused(from_probe, "too_long", "drone.flac")
    assert "36000 s" in str(from_probe.value) and "60.0 s" in str(from_probe.value)
    assert from_decode.value.code == "too_long"


def test_over_duration_real_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "rain.wav", _tone(2.0))
    limits = DecodeLimits(LIMITS.max_bytes, 1.5, 192_000, 8)

    with pytest.raises(TooLongError) as exc:
        probe(path, limits)

    _assert_refused(exc, "too_long", "rain.wav")
    assert probe(path, DecodeLimits(LIMITS.max_bytes, 2.0, 192_000, 8)).duration == 2.0


@pytest.mark.parametrize("sample_rate", [96_000, 500])
def test_sample_rate_outside_the_limits(tmp_path: Path, sample_rate: int) -> None:
    path = _write(tmp_path / "bat.wav", _tone(0.1, sample_rate, freq=100.0), sample_rate)
    limits = DecodeLimits(LIMITS.max_bytes, 60.0, 48_000, 8)

    with pytest.raises(UnsupportedSampleRateError) as exc:
        decode(path, target_sr=16_000, limits=limits)

    _assert_refused(exc, "bad_sample_rate", "bat.wav")
    assert f"{sample_rate} Hz" in str(exc.value)


def test_too_many_channels(tmp_path: Path) -> None:
    path = _write(tmp_path / "surround.wav", np.zeros((1000, 3), np.float32))
    limits = DecodeLimits(LIMITS.max_bytes, 60.0, 192_000, 2)

    with pytest.raises(TooManyChannelsError) as exc:
        probe(path, limits)

    _assert_refused(exc, "too_many_channels", "surround.wav")
    assert "3 channels" in str(exc.value)


def test_errors_are_audio_errors_with_distinct_codes() -> None:
    classes = [
        EmptyAudioError,
        NotAudioError,
        CorruptAudioError,
        TooLargeError,
        TooLongError,
        UnsupportedSampleRateError,
        TooManyChannelsError,
    ]
    assert all(issubclass(cls, AudioError) for cls in classes)
    assert len({cls.code for cls in classes}) == len(classes)


# Names and settings


def test_names_and_content_types() -> None:
    assert is_audio_name(Path("Door.WAV")) and is_audio_name(Path("a/b/rain.aifc"))
    assert not is_audio_name(Path("notes.txt")) and not is_audio_name(Path("wav"))
    assert content_type(Path("x.MP3")) == "audio/mpeg"
    assert content_type(Path("x.oga")) == "audio/ogg"
    assert content_type(Path("x.aif")) == "audio/aiff"
    assert content_type(Path("x.png")) == "application/octet-stream"
    assert {content_type(Path(f"x{ext}")) for ext in AUDIO_EXTENSIONS} == {
        "audio/wav",
        "audio/flac",
        "audio/ogg",
        "audio/mpeg",
        "audio/aiff",
    }


def test_limits_from_settings() -> None:
    settings = Settings(
        max_file_bytes=1234, max_duration_s=12.5, max_sample_rate=48_000, max_channels=2
    )

    assert DecodeLimits.from_settings(settings) == DecodeLimits(1234, 12.5, 48_000, 2)


def test_flac_claiming_helper_changes_only_the_count(tmp_path: Path) -> None:
    real = _write(tmp_path / "real.flac", _tone(0.2), format="FLAC").read_bytes()

    patched = _flac_claiming(real, 12_345)

    assert len(patched) == len(real)
    assert sf.info(io.BytesIO(patched)).frames == 12_345
    assert struct.unpack(">I", patched[4:8])[0] == struct.unpack(">I", real[4:8])[0]
