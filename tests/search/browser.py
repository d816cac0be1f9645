"""A real Foley server and a real browser for the page's tests: a folder of generated clips
indexed with the tiny test CLAP, then `foley serve` (API, index syncer and a job worker) over
it on a free port, and Debian's chromium driven by Playwright. Nothing reaches the network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.audio import DecodeLimits
from core.config import Settings
from core.db import Catalog
from index_builder.runner import index_library
from tests.sounds import write_library
from tests.workers.deployment import ROOT
from tests.workers.test_serve import free_port

CHROMIUM = Path(os.environ.get("FOLEY_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
API_KEY = "page-test-key"
# Generous: a loaded machine can take minutes to import torch twice (API and worker).
START_TIMEOUT_S = 900


@dataclass(frozen=True)
class Server:
    url: str
    library: Path
    log: Path


def _env(root: Path, clap_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLEY_")}
    env.update(
        FOLEY_DATA_DIR=str(root / "data"),
        FOLEY_CLAP_CHECKPOINT=str(clap_dir),
        FOLEY_CAPTIONER_CHECKPOINT=str(root / "no-captioner"),
        FOLEY_CAPTION_ON_SCAN="false",
        FOLEY_API_PORT=str(port),
        FOLEY_API_KEYS=API_KEY,
        # the tests' own folders sit beside the server's root, in pytest's temp dir
        FOLEY_LIBRARY_ROOTS=str(root.parent),
        HF_HUB_OFFLINE="1",
    )
    return env


def _wait_healthy(url: str, serve: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if serve.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"foley serve did not start:\n{log.read_text()}")
        time.sleep(0.3)


def index_clips(library: Path, data_dir: Path, clap: object) -> None:
    """30 clips of 3 s in three folders (their tags), indexed in this process (the CLAP is
    already loaded here; `foley serve` applies the outbox to its index when it starts)."""
    write_library(library, seconds=3.0)
    settings = Settings(data_dir=data_dir, database_url=None, qdrant_url=None)
    settings.ensure_dirs()
    catalog = Catalog(settings.catalog_url)
    try:
        index_library(catalog, clap, library, DecodeLimits.from_settings(settings))
    finally:
        catalog.dispose()


@contextmanager
def running_server(root: Path, clap_dir: Path, clap: object) -> Iterator[Server]:
    """`foley serve` over a freshly indexed library, stopped with Ctrl-C at the end."""
    library = root / "library"
    index_clips(library, root / "data", clap)
    port = free_port()
    env = _env(root, clap_dir, port)
    log = root / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "foley", "serve"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, serve, log)
        yield Server(url, library, log)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
