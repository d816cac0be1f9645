"""Faults, injected: `foley index` killed with SIGKILL at random moments, again and again, each
kill followed by a rerun. The final catalog holds every file once and `foley doctor` is
clean. The default run kills 4 times over 48 files; the slow run 100 times over 500 files.
The table (faults injected, survived, lost) is printed (`pytest -s`)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.catalog import Location, OutboxEntry, Sound
from core.config import Settings
from core.db import Catalog
from tests.sounds import write_library


@dataclass
class KillReport:
    files: int
    kills: int = 0
    kills_before_progress: int = 0  # killed during start-up or before its first batch landed
    kills_mid_write: int = 0
    survived: int = 0  # kills after which the rerun finished the job
    lost: int = 0  # files missing or duplicated at the end


def _foley(*args: str) -> list[str]:
    return [sys.executable, "-m", "foley", *args]


def _sounds(catalog: Catalog) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(Sound)) or 0


def _kill_at_random(
    env: dict[str, str], root: Path, catalog: Catalog, rng: random.Random, report: KillReport
) -> None:
    """Start an indexing run and SIGKILL it at a random moment: either after a random delay
    (start-up included) or right after a random number of new sounds landed."""
    before = _sounds(catalog)
    proc = subprocess.Popen(
        _foley("index", str(root), "--batch-size", str(rng.choice([1, 2, 4]))),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if rng.random() < 0.3:
        time.sleep(rng.uniform(0.0, 3.0))
    else:
        wanted = before + rng.randint(1, 6)
        while _sounds(catalog) < wanted and proc.poll() is None:
            time.sleep(rng.uniform(0.0, 0.05))
    finished = proc.poll() is not None
    if not finished:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if finished:
        return  # the run beat the kill: nothing was injected
    report.kills += 1
    if _sounds(catalog) == before:
        report.kills_before_progress += 1
    else:
        report.kills_mid_write += 1


def run_kills(settings: Settings, tmp_path: Path, files: int, kills: int, seed: int) -> KillReport:
    root = tmp_path / "library"
    write_library(root, count=files, seconds=1.0)
    env = {
        **os.environ,
        "FOLEY_DATA_DIR": str(settings.data_dir),
        "FOLEY_CLAP_CHECKPOINT": str(settings.clap_checkpoint),
        "FOLEY_CAPTION_ON_SCAN": "false",
    }
    catalog = Catalog(settings.catalog_url)
    rng = random.Random(seed)
    report = KillReport(files=files)
    attempts = 0
    while report.kills < kills and _sounds(catalog) < files and attempts < kills * 3:
        attempts += 1
        _kill_at_random(env, root, catalog, rng, report)
    done = subprocess.run(
        _foley("index", str(root)), env=env, capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with catalog.session() as session:
        paths = list(session.scalars(select(Location.path)))
        sounds = session.scalar(select(func.count()).select_from(Sound)) or 0
        outbox = session.scalar(select(func.count()).select_from(OutboxEntry)) or 0
    catalog.dispose()
    report.lost = abs(files - len(set(paths))) + (len(paths) - len(set(paths)))
    report.survived = report.kills if report.lost == 0 and sounds == files else 0
    doctor = subprocess.run(_foley("doctor"), env=env, capture_output=True, text=True, timeout=600)
    summary = {**asdict(report), "sounds": sounds, "outbox": outbox, "doctor": doctor.stdout}
    (tmp_path / "kill-report.json").write_text(json.dumps(summary, indent=1))
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "catalog and index agree" in doctor.stdout
    print(  # noqa: T201 - the table is this test's report
        "\n| files | SIGKILLs | before first write | mid-write | survived | lost | outbox |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {files} | {report.kills} | {report.kills_before_progress} | "
        f"{report.kills_mid_write} | {report.survived} | {report.lost} | {outbox} |"
    )
    assert sounds == files and report.lost == 0
    assert len(paths) == len(set(paths)) == files
    return report


def test_repeated_sigkills_short(settings: Settings, tmp_path: Path) -> None:
    report = run_kills(settings, tmp_path, files=48, kills=4, seed=4)
    assert report.kills >= 1 and report.survived == report.kills


@pytest.mark.slow
def test_hundred_sigkills_over_500_files(settings: Settings, tmp_path: Path) -> None:
    report = run_kills(settings, tmp_path, files=500, kills=100, seed=100)
    assert report.kills == 100 and report.survived == 100
