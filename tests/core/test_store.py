"""The content-addressed file store."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from core.store import FileStore, StoreError


def test_same_bytes_land_on_one_path(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    data = b"RIFF" + bytes(range(200))
    digest = hashlib.sha256(data).hexdigest()
    first = store.put_bytes(data, "wav")
    second = store.put_bytes(data, "wav")
    assert first == second == tmp_path / "store" / digest[:2] / f"{digest}.wav"
    assert first.read_bytes() == data
    assert store.relative(first) == f"{digest[:2]}/{digest}.wav"
    assert store.resolve(store.relative(first)) == first.resolve()
    # Nothing else is left behind: no temp files, one stored file.
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == [first]


def test_staging_stops_at_the_byte_limit_and_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(StoreError, match="more than 1000 bytes"):
        store.stage(io.BytesIO(b"x" * 5000), max_bytes=1000)
    assert list((tmp_path / "store").iterdir()) == []
    staged = store.stage(io.BytesIO(b"y" * 1000), max_bytes=1000)
    assert staged.size == 1000 and staged.temp_path.exists()
    store.discard(staged)
    assert list((tmp_path / "store").iterdir()) == []


def test_names_outside_the_store_are_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(StoreError):
        store.resolve("../../etc/passwd")
    with pytest.raises(StoreError):
        store.path_for("not-a-hash", "wav")
    with pytest.raises(StoreError):
        store.remove(tmp_path / "elsewhere.wav")


def test_remove_deletes_the_file_and_its_empty_folder(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    path = store.put_bytes(b"abc", "flac")
    assert store.remove(path) and not path.exists() and not path.parent.exists()
    assert not store.remove(path)
