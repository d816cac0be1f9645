"""Waveform and spectrogram pictures: drawn from real audio, cached by content hash, served
with ETags, and an error picture or a 404 (never a 500) when the audio is bad or missing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core.config import Settings
from search.pictures import SAMPLE_RATE, Kind, Size, draw
from search.service import Foley
from tests.search.conftest import open_indexed
from tests.search.test_api import sound_id_at


@pytest.fixture
def foley(settings: Settings, library: Path, tiny_clap) -> Iterator[Foley]:  # noqa: ANN001
    opened = open_indexed(settings, tiny_clap, library)
    yield opened
    opened.close()


def image(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def sine(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.8 * np.sin(2 * np.pi * freq * t)


def brightest_row(png: bytes) -> int:
    return int(image(png).sum(axis=2).mean(axis=1).argmax())


def test_spectrogram_puts_high_notes_above_low_ones() -> None:
    low = brightest_row(draw(Kind.spectrogram, Size.detail, sine(200.0), SAMPLE_RATE))
    high = brightest_row(draw(Kind.spectrogram, Size.detail, sine(4000.0), SAMPLE_RATE))
    assert high < low - 50  # rows count from the top; log axis: 200 Hz and 4 kHz far apart


def test_waveform_follows_loudness_and_colours_by_centroid() -> None:
    wave = np.concatenate([sine(150.0) * 0.1, sine(6000.0)])
    pixels = image(draw(Kind.waveform, Size.list, wave, SAMPLE_RATE))
    assert pixels.shape == (101, 195, 3)
    lit = (np.abs(pixels.astype(int) - pixels[0, 0]).sum(axis=2) > 30).sum(axis=0)
    assert lit[150:].mean() > 4 * lit[:40].mean()  # the loud half is drawn taller
    quiet, loud = pixels[50, 20].astype(int), pixels[50, 170].astype(int)
    assert quiet[2] > quiet[0] and loud[0] > loud[2]  # low centroid blue, high centroid red


def test_silence_and_empty_audio_still_draw() -> None:
    for signal in (np.zeros(SAMPLE_RATE), np.zeros(0)):
        for kind in Kind:
            assert image(draw(kind, Size.list, signal, SAMPLE_RATE)).shape == (101, 195, 3)


def test_pictures_are_served_at_both_sizes_and_cached(
    client: TestClient, foley: Foley, library: Path
) -> None:
    sound_id = sound_id_at(foley, library / "Tones" / "clip_05.flac")
    for kind in ("waveform", "spectrogram"):
        small = client.get(f"/api/sounds/{sound_id}/{kind}.png")
        assert small.status_code == 200 and small.headers["content-type"] == "image/png"
        assert image(small.content).shape == (101, 195, 3)
        big = client.get(f"/api/sounds/{sound_id}/{kind}.png", params={"size": "detail"})
        assert image(big.content).shape == (301, 780, 3)
        assert "max-age" in small.headers["cache-control"]
        assert small.headers["etag"] != big.headers["etag"]
    cached = list((foley.settings.data_dir / "pictures").rglob("*.png"))
    assert len(cached) == 4
    assert all(path.name.startswith(path.parent.name) for path in cached)


def test_etag_revalidates_with_304(client: TestClient, foley: Foley, library: Path) -> None:
    sound_id = sound_id_at(foley, library / "Impacts" / "clip_07.flac")
    url = f"/api/sounds/{sound_id}/waveform.png"
    first = client.get(url)
    again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    other = client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content


def test_the_cached_picture_is_served_without_decoding(
    client: TestClient, foley: Foley, library: Path
) -> None:
    path = library / "Ambience" / "clip_00.wav"
    sound_id = sound_id_at(foley, path)
    first = client.get(f"/api/sounds/{sound_id}/spectrogram.png")
    path.write_bytes(b"no longer audio" * 100)  # only the cache can answer now
    second = client.get(f"/api/sounds/{sound_id}/spectrogram.png")
    assert second.status_code == 200 and second.content == first.content


def test_bad_audio_gives_an_error_picture(client: TestClient, foley: Foley, library: Path) -> None:
    path = library / "Ambience" / "clip_03.flac"
    sound_id = sound_id_at(foley, path)
    path.write_bytes(b"this is not a flac file" * 40)
    response = client.get(f"/api/sounds/{sound_id}/waveform.png")
    assert response.status_code == 422 and response.headers["content-type"] == "image/png"
    assert response.headers["x-foley-error"] == "undecodable_audio"
    assert image(response.content).shape == (101, 195, 3)
    assert not list((foley.settings.data_dir / "pictures").rglob("*.png"))


def test_missing_sound_or_file_is_404(client: TestClient, foley: Foley, library: Path) -> None:
    unknown = client.get("/api/sounds/999999/waveform.png")
    assert unknown.status_code == 404 and "999999" in unknown.json()["detail"]
    path = library / "Tones" / "clip_02.wav"
    sound_id = sound_id_at(foley, path)
    path.unlink()
    gone = client.get(f"/api/sounds/{sound_id}/spectrogram.png")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert client.get(f"/api/sounds/{sound_id}/photo.png").status_code == 422
    bad_size = client.get(f"/api/sounds/{sound_id}/waveform.png", params={"size": "huge"})
    assert bad_size.status_code == 422
