"""Malformed files through uploads (and their jobs), search by example and `foley index`.

No 500, no request over 10 s, and a refused or failed upload leaves nothing in the store, the
catalog or the index. The default run sends 96 files (every kind 12 times); the slow run
sends 1,024. The table of outcomes is printed (`pytest -s`) and written beside the data dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core import jobs
from core.catalog import Job, JobStatus, Location, ScanError, Sound
from core.config import Settings
from core.store import FileStore
from index_builder.uploads import ingest_upload
from search.api.main import create_app
from search.service import Foley
from tests.malformed import KINDS, Malformed, malformed_files
from tests.search.test_uploads import wav_bytes

KEY = "fuzz-key-0123456789"
REQUEST_BOUND_S = 10.0  # the bound on any one request


@dataclass
class KindStats:
    files: int = 0
    upload: Counter[str] = field(default_factory=Counter)
    job: Counter[str] = field(default_factory=Counter)
    search: Counter[str] = field(default_factory=Counter)
    index: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    slowest_s: float = 0.0


@pytest.fixture
def fuzz_settings(settings: Settings) -> Settings:
    # A 2-minute limit keeps the bombs' decoding (and a starved CI runner) within bounds.
    return settings.model_copy(
        update={
            "api_keys": KEY,
            "max_duration_s": 120.0,
            "max_file_bytes": 5_000_000,
            "rate_limit_search": "",
            "rate_limit_uploads": "",
            "caption_on_scan": False,
        }
    )


@pytest.fixture
def fuzz_client(fuzz_settings: Settings, tiny_clap: Any) -> Iterator[tuple[TestClient, Foley]]:
    foley = Foley.open(fuzz_settings, clap=tiny_clap)
    try:
        with TestClient(create_app(foley=foley)) as client:
            # The first decode imports the resampler: load it before any request is timed.
            good = client.post("/api/search/audio", files={"file": ("ok.wav", wav_bytes(3))})
            assert good.status_code == 200
            yield client, foley
    finally:
        foley.close()


def timed(stats: KindStats, send: Any) -> Any:
    started = time.monotonic()
    response = send()
    stats.slowest_s = max(stats.slowest_s, time.monotonic() - started)
    if response.status_code >= 500:
        stats.server_errors += 1
    return response


def upload_one(client: TestClient, foley: Foley, file: Malformed, stats: KindStats) -> None:
    response = timed(
        stats,
        lambda: client.post(
            "/api/uploads", files={"files": (file.name, file.data)}, headers={"X-API-Key": KEY}
        ),
    )
    if response.status_code != 202:
        stats.upload[f"{response.status_code} {response.json()['error']}"] += 1
        return
    job = response.json()["data"][0]
    if job["status"] == "failed":
        stats.upload["202 refused at the door"] += 1
        return
    stats.upload["202 queued"] += 1
    store = FileStore(foley.settings.store_path)
    outcome = jobs.execute(
        foley.catalog,
        job["id"],
        lambda run: ingest_upload(foley.catalog, foley.clap, store, foley.limits, run),
        lease_s=60,
        retry_transient=False,
    )
    stats.job[outcome.status] += 1


def search_one(client: TestClient, file: Malformed, stats: KindStats) -> None:
    response = timed(
        stats, lambda: client.post("/api/search/audio", files={"file": (file.name, file.data)})
    )
    label = str(response.status_code)
    if response.status_code >= 400:
        label += f" {response.json()['error']}"
    stats.search[label] += 1


def assert_nothing_left_by_failures(foley: Foley) -> dict[str, int]:
    """Every stored file belongs to a sound; every failed upload's bytes are nowhere.
    Returns what was left over (all zero when the assertions hold), for the report."""
    with foley.catalog.session() as session:
        params = session.scalars(
            select(Job.params).where(Job.kind == "upload", Job.status == JobStatus.failed.value)
        )
        failed = {p["content_hash"] for p in params}
        hashes = set(session.scalars(select(Sound.content_hash)))
        located = set(session.scalars(select(Location.path)))
        sounds = session.scalar(select(func.count(Sound.id))) or 0
    stored = {str(p) for p in foley.settings.store_path.rglob("*") if p.is_file()}
    foley.sync()
    leftovers = {
        "failed_uploads": len(failed),
        "failed_in_catalog": len(failed & hashes),
        "stored_without_sound": len(stored - located),
        "failed_in_store": len({Path(p).stem for p in stored} & failed),
        "index_minus_catalog": foley.index.count() - sounds,
    }
    assert not failed & hashes
    assert stored <= located, stored - located
    assert not {Path(p).stem for p in stored} & failed
    assert foley.index.count() == sounds
    return leftovers


def index_with_cli(settings: Settings, files: list[Malformed], tmp: Path) -> dict[str, Counter]:
    folder = tmp / "fuzz-library"
    folder.mkdir()
    for file in files:
        (folder / file.name).write_bytes(file.data)
    env = {
        **os.environ,
        "FOLEY_DATA_DIR": str(tmp / "cli-data"),
        "FOLEY_CLAP_CHECKPOINT": str(settings.clap_checkpoint),
        "FOLEY_MAX_DURATION_S": str(settings.max_duration_s),
        "FOLEY_MAX_FILE_BYTES": str(settings.max_file_bytes),
        "FOLEY_CAPTION_ON_SCAN": "false",
    }
    command = [sys.executable, "-m", "foley", "index", str(folder)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    doctor = subprocess.run(
        [sys.executable, "-m", "foley", "doctor"], env=env, capture_output=True, text=True
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    cli = Settings(data_dir=tmp / "cli-data", clap_checkpoint=settings.clap_checkpoint)
    from core.db import Catalog

    catalog = Catalog(cli.catalog_url)
    with catalog.session() as session:
        indexed = {Path(p).name for p in session.scalars(select(Location.path))}
        rows = session.execute(select(ScanError.path, ScanError.code))
        failed = {Path(path).name: code for path, code in rows}
    catalog.dispose()
    outcomes: dict[str, Counter] = defaultdict(Counter)
    for file in files:
        if file.name in indexed:
            outcomes[file.kind]["indexed"] += 1
        else:
            # Every file either became a sound or is listed as failed, with its reason.
            assert file.name in failed, file.name
            outcomes[file.kind][f"failed {failed[file.name]}"] += 1
    return outcomes


def fuzz(
    client: TestClient, foley: Foley, files: list[Malformed], tmp: Path
) -> dict[str, KindStats]:
    table: dict[str, KindStats] = {kind: KindStats() for kind in KINDS}
    for file in files:
        stats = table[file.kind]
        stats.files += 1
        upload_one(client, foley, file, stats)
        search_one(client, file, stats)
    leftovers = assert_nothing_left_by_failures(foley)
    report(table, leftovers, tmp)  # the API's part, in case the command line's fails
    for kind, counts in index_with_cli(foley.settings, files, tmp).items():
        table[kind].index = counts
    report(table, leftovers, tmp)
    return table


def _cell(counts: Counter[str]) -> str:
    return ", ".join(f"{label}: {n}" for label, n in sorted(counts.items())) or "-"


def report(table: dict[str, KindStats], leftovers: dict[str, int], tmp: Path) -> None:
    lines = [
        "| kind | files | upload | upload job | search by example | foley index | 5xx | slowest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, s in table.items():
        lines.append(
            f"| {kind} | {s.files} | {_cell(s.upload)} | {_cell(s.job)} | {_cell(s.search)} "
            f"| {_cell(s.index)} | {s.server_errors} | {s.slowest_s:.2f} s |"
        )
    lines.append("")
    lines.append("left over: " + ", ".join(f"{k} {v}" for k, v in leftovers.items()))
    text = "\n".join(lines)
    print("\n" + text)  # noqa: T201 - the table is this test's report
    (tmp / "fuzz-table.md").write_text(text + "\n")
    raw: dict[str, object] = {kind: dict(vars(s)) for kind, s in table.items()}
    raw["leftovers"] = leftovers
    (tmp / "fuzz-table.json").write_text(json.dumps(raw, indent=1, default=dict))


def check(table: dict[str, KindStats]) -> None:
    assert sum(s.server_errors for s in table.values()) == 0
    slowest = max(s.slowest_s for s in table.values())
    assert slowest < REQUEST_BOUND_S, f"a request took {slowest:.1f} s"
    # Files that cannot be audio are refused before anything is stored.
    for kind in ("zero-length", "non-audio"):
        assert "202 queued" not in table[kind].upload, table[kind].upload
        # A file of nothing but an audio format's magic ("fLaC", "ID3") is a cut-off header,
        # so "damaged or cut off" (corrupt_audio) is as right as not_audio for it.
        allowed = {"422 empty_file", "422 not_audio", "422 corrupt_audio"}
        assert set(table[kind].search) <= allowed, table[kind].search


def test_malformed_files_short(fuzz_client: tuple[TestClient, Foley], tmp_path: Path) -> None:
    client, foley = fuzz_client
    check(fuzz(client, foley, malformed_files(96, seed=15), tmp_path))


@pytest.mark.slow
def test_malformed_files_long(fuzz_client: tuple[TestClient, Foley], tmp_path: Path) -> None:
    client, foley = fuzz_client
    check(fuzz(client, foley, malformed_files(1024, seed=1015), tmp_path))
