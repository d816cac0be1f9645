"""Library roots: the API registers and scans folders inside FOLEY_LIBRARY_ROOTS only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.catalog import Library
from core.config import Settings
from core.jobs import JobFailed, claim, new_job
from core.roots import PathRefused, check_library_folder
from index_builder.library_scan import scan_library
from index_builder.runner import index_library
from index_builder.scan import walk_library
from search.service import Foley
from tests.search.test_uploads import KEY, make_client
from tests.sounds import write_library

HEADERS = {"X-API-Key": KEY}


@pytest.fixture
def default_roots(settings: Settings, tiny_clap: Any) -> Iterator[TestClient]:
    """No FOLEY_LIBRARY_ROOTS: the data dir is the only root."""
    yield from make_client(settings.model_copy(update={"api_keys": KEY}), tiny_clap)


def register(client: TestClient, path: str) -> Any:
    return client.post("/api/libraries", json={"path": path}, headers=HEADERS)


def test_by_default_only_the_data_dir(default_roots: TestClient, settings: Settings) -> None:
    for outside in ("/etc", "/", str(settings.data_dir.parent), "/proc/self/cwd"):
        refused = register(default_roots, outside)
        assert refused.status_code == 403, outside
        body = refused.json()
        assert body["error"] == "outside_library_roots"
        assert "FOLEY_LIBRARY_ROOTS" in body["detail"] and str(settings.data_dir) in body["detail"]
    inside = settings.data_dir / "sounds"
    write_library(inside, count=2, seconds=0.5)
    assert register(default_roots, str(inside)).status_code == 201
    # A path that climbs out with .. is judged by where it leads.
    climbing = register(default_roots, f"{inside}/../../..")
    assert climbing.status_code == 403
    assert default_roots.get("/api/libraries").json()["count"] == 1


def test_refusal_does_not_reveal_what_exists_outside(default_roots: TestClient) -> None:
    exists, missing = register(default_roots, "/etc"), register(default_roots, "/no/such/folder")
    assert exists.status_code == missing.status_code == 403
    assert exists.json()["error"] == missing.json()["error"] == "outside_library_roots"


def test_symlink_out_of_a_root_is_refused(
    settings: Settings, tiny_clap: Any, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    write_library(outside, count=3, seconds=0.5)
    (root / "lib").mkdir(parents=True)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    # A file link inside an allowed library that points out of it is not indexed either.
    write_library(root / "lib", count=2, seconds=0.5)
    (root / "lib" / "leak.wav").symlink_to(next(outside.rglob("*.wav")))
    configured = settings.model_copy(update={"api_keys": KEY, "library_roots": str(root)})
    for client in make_client(configured, tiny_clap):
        refused = register(client, str(root / "escape"))
        assert refused.status_code == 403 and refused.json()["error"] == "outside_library_roots"
        assert register(client, str(root / "lib")).status_code == 201
        nul = register(client, str(root / "lib") + "\x00/etc")
        assert nul.status_code == 400 and nul.json()["error"] == "bad_path"
        long = register(client, str(root / ("x" * 5000)))
        assert long.status_code in (400, 403) and set(long.json()) == {"error", "detail"}
    walked = walk_library(root / "lib")
    # leak.wav's bytes live outside the library: not indexed.
    assert len(walked.files) == 2 and "leak.wav" not in {f.path.name for f in walked.files}


def test_several_roots(settings: Settings, tiny_clap: Any, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    configured = settings.model_copy(
        update={"api_keys": KEY, "library_roots": f"{first}{os.pathsep}{second}"}
    )
    for client in make_client(configured, tiny_clap):
        assert register(client, str(first)).status_code == 201
        assert register(client, str(second)).status_code == 201
        assert register(client, str(settings.data_dir)).status_code == 403


def test_scan_of_a_library_outside_the_roots_is_refused(
    settings: Settings, tiny_clap: Any, library: Path
) -> None:
    # Registered from the command line, which may index any folder.
    foley = Foley.open(settings, clap=tiny_clap)
    index_library(foley.catalog, tiny_clap, library, foley.limits)
    with foley.catalog.session() as session:
        lib_id = session.scalar(select(Library.id))
    foley.close()
    for client in make_client(settings.model_copy(update={"api_keys": KEY}), tiny_clap):
        scan = client.post(f"/api/libraries/{lib_id}/scan", headers=HEADERS)
        assert scan.status_code == 403 and scan.json()["error"] == "outside_library_roots"
        assert client.get("/api/jobs").json()["count"] == 0  # nothing queued


def test_scan_job_checks_the_roots_again(
    settings: Settings, tiny_clap: Any, tmp_path: Path
) -> None:
    """A library folder replaced by a link out of the roots after registration."""
    root = tmp_path / "root"
    write_library(root / "lib", count=2, seconds=0.5)
    write_library(tmp_path / "secret", count=2, seconds=0.5)
    foley = Foley.open(settings, clap=tiny_clap)
    try:
        with foley.catalog.session() as session:
            session.add(Library(path=str(root / "lib"), name="lib"))
        (root / "lib").rename(tmp_path / "moved")
        (root / "lib").symlink_to(tmp_path / "secret", target_is_directory=True)
        with foley.catalog.session() as session:
            job_id = new_job(session, "scan", {"library_id": 1}).id
        run = claim(foley.catalog, job_id, lease_s=60)
        assert run is not None
        with pytest.raises(JobFailed, match="outside the library roots"):
            scan_library(foley.catalog, tiny_clap, foley.limits, run, roots=[root])
    finally:
        foley.close()


def test_check_library_folder_directly(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert check_library_folder(str(tmp_path / "a"), [tmp_path]) == (tmp_path / "a").resolve()
    with pytest.raises(PathRefused) as refused:
        check_library_folder("relative/path", [tmp_path])
    assert refused.value.status == 400
