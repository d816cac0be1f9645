"""Indexing a library folder: dedup, incremental re-runs, failures, sync, doctor."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import func, select

from core.audio import DecodeLimits, decode
from core.catalog import Embedding, Location, OutboxEntry, ScanError, Sound
from core.db import Catalog
from core.vector_index import EdgeVectorIndex
from index_builder.runner import index_library
from index_builder.syncer import IndexSyncer
from tests.sounds import SAMPLE_RATE, tone

LIMITS = DecodeLimits(
    max_bytes=5_000_000, max_duration_s=30.0, max_sample_rate=96_000, max_channels=2
)


def count(catalog: Catalog, model: type) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def run(catalog: Catalog, clap, root: Path):  # noqa: ANN001, ANN201
    return index_library(catalog, clap, root, LIMITS, batch_size=8)


@pytest.fixture
def index(tmp_path: Path, tiny_clap):  # noqa: ANN001, ANN201
    idx = EdgeVectorIndex(tmp_path / "index", tiny_clap.dim)
    yield idx
    idx.close()


def test_index_and_query_own_audio_first(catalog: Catalog, tiny_clap, library: Path, index) -> None:
    summary = run(catalog, tiny_clap, library)
    assert (summary.files, summary.counts.added, summary.counts.embedded) == (30, 30, 30)
    assert count(catalog, Sound) == 30 and count(catalog, Embedding) == 30
    assert count(catalog, OutboxEntry) == 30
    syncer = IndexSyncer(catalog, index, tiny_clap.model_id)
    assert syncer.sync() == 30
    assert index.count() == 30 and syncer.pending() == 0
    for path in sorted(library.rglob("clip_*"))[::5]:
        wave, _ = decode(path, target_sr=tiny_clap.sample_rate, limits=LIMITS)
        best = index.search(tiny_clap.embed_audio([wave])[0], 3)[0]
        with catalog.session() as session:
            location = session.scalar(select(Location).where(Location.sound_id == best.id))
        assert location is not None and location.path == str(path)
        assert best.score == pytest.approx(1.0, abs=1e-3)


def test_rerun_is_incremental(catalog: Catalog, tiny_clap, library: Path, index) -> None:
    run(catalog, tiny_clap, library)
    again = run(catalog, tiny_clap, library)
    assert again.unchanged == 30 and again.counts.embedded == 0 and again.counts.added == 0

    changed = library / "Tones" / "clip_02.wav"
    sf.write(changed, tone(99), SAMPLE_RATE)  # new bytes at the same path
    copy = library / "Copies" / "clip_03_copy.flac"
    copy.parent.mkdir()
    shutil.copy(library / "Ambience" / "clip_03.flac", copy)  # same bytes, second path
    (library / "Impacts" / "clip_04.wav").unlink()
    third = run(catalog, tiny_clap, library)
    assert third.counts.added == 1 and third.counts.embedded == 1
    assert third.vanished == 1
    assert third.counts.removed_sounds == 2  # clip_02's old bytes, and clip_04
    assert count(catalog, Sound) == 29  # 30 - old clip_02 - clip_04 + new clip_02
    with catalog.session() as session:
        sound = session.scalar(select(Sound).join(Location).where(Location.path == str(copy)))
        assert sound is not None and len(sound.locations) == 2
        assert sound.tags == ["ambience"]  # from the folder it was first found in

    syncer = IndexSyncer(catalog, index, tiny_clap.model_id)
    syncer.sync()
    assert index.count() == 29
    assert syncer.diff().clean


def test_bad_files_are_reported_and_skipped(catalog: Catalog, tiny_clap, library: Path) -> None:
    bad = library / "Bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "notes.wav").write_text("these are my notes, not audio\n" * 20)
    good = (library / "Tones" / "clip_02.wav").read_bytes()
    (bad / "truncated.wav").write_bytes(good[: len(good) // 2])
    sf.write(bad / "too_long.wav", np.zeros(SAMPLE_RATE * 31, dtype=np.float32), SAMPLE_RATE)
    (bad / "readme.txt").write_text("not a sound file name")
    summary = run(catalog, tiny_clap, library)
    assert summary.counts.added == 30
    assert summary.skipped_non_audio == 1
    failed = {Path(p).name: message for p, message in summary.failures}
    assert set(failed) == {"empty.wav", "notes.wav", "truncated.wav", "too_long.wav"}
    assert "empty" in failed["empty.wav"]
    assert "30" in failed["too_long.wav"] or "long" in failed["too_long.wav"]
    assert count(catalog, ScanError) == 4 and count(catalog, Sound) == 30

    (bad / "truncated.wav").unlink()  # a failed file that vanishes is forgotten
    assert len(run(catalog, tiny_clap, library).failures) == 3


def test_reindex_and_doctor_repair(catalog: Catalog, tiny_clap, library: Path, index) -> None:
    run(catalog, tiny_clap, library)
    syncer = IndexSyncer(catalog, index, tiny_clap.model_id)
    syncer.sync()
    victims = sorted(index.ids())[:3]
    index.delete(victims)
    stray = np.ones(tiny_clap.dim, dtype=np.float32) / np.sqrt(tiny_clap.dim)
    from core.vector_index import IndexedPoint

    index.upsert([IndexedPoint(99_999, stray, {"duration": 1.0, "source": "library", "tags": []})])
    diff = syncer.diff()
    assert diff.missing == victims and diff.extra == [99_999] and not diff.clean
    syncer.repair(diff)
    assert syncer.diff().clean and index.count() == 30

    index.clear()
    assert syncer.rebuild() == 30
    assert index.count() == 30 and syncer.diff().clean and syncer.pending() == 0
