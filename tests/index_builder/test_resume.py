"""An indexing run killed with SIGKILL mid-way finishes on the next run: no duplicates,
nothing missing, catalog and index in agreement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from core.catalog import Location, Sound
from core.config import Settings
from core.db import Catalog
from tests.sounds import write_library


def _sounds(catalog: Catalog) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(Sound)) or 0


def _foley(*args: str) -> list[str]:
    return [sys.executable, "-m", "foley", *args]


def test_sigkill_mid_run_then_resume(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "library"
    write_library(root, count=40, seconds=3.0)
    env = {
        **os.environ,
        "FOLEY_DATA_DIR": str(settings.data_dir),
        "FOLEY_CLAP_CHECKPOINT": str(settings.clap_checkpoint),
    }
    proc = subprocess.Popen(
        _foley("index", str(root), "--batch-size", "1"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    catalog = Catalog(settings.catalog_url)
    deadline = time.monotonic() + 120
    while _sounds(catalog) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "indexing made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _sounds(catalog)
    assert 5 <= partial < 40

    done = subprocess.run(
        _foley("index", str(root)), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert _sounds(catalog) == 40
    with catalog.session() as session:
        paths = list(session.scalars(select(Location.path)))
    assert len(paths) == len(set(paths)) == 40
    doctor = subprocess.run(_foley("doctor"), env=env, capture_output=True, text=True, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "catalog and index agree" in doctor.stdout
    catalog.dispose()
