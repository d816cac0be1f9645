"""`foley serve` in the embedded default: the API, its index syncer and one job worker in
one command, all stopped by one Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import soundfile as sf

from tests.sounds import SAMPLE_RATE, tone
from tests.workers.deployment import ROOT, children_of


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_serve_runs_api_syncer_and_worker_and_stops_on_ctrl_c(
    tmp_path: Path, tiny_clap_dir: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLEY_")}
    env.update(
        FOLEY_DATA_DIR=str(tmp_path / "data"),
        FOLEY_CLAP_CHECKPOINT=str(tiny_clap_dir),
        FOLEY_API_PORT=str(port),
        HF_HUB_OFFLINE="1",
    )
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "foley", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        (worker,) = children_of(serve.pid)

        buffer = io.BytesIO()
        sf.write(buffer, tone(40), SAMPLE_RATE, format="WAV")
        posted = httpx.post(f"{base}/uploads", files={"files": ("bell.wav", buffer.getvalue())})
        assert posted.status_code == 202
        job_url = f"http://127.0.0.1:{port}{posted.headers['location']}"
        while (job := httpx.get(job_url).json())["searchable"] is not True:
            assert job["status"] in ("queued", "running", "succeeded"), job
            assert time.monotonic() < deadline + 60, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        hits = httpx.get(f"{base}/search", params={"q": "bell", "source": "upload"}).json()
        assert [hit["id"] for hit in hits["data"]] == [job["result"]["sound_id"]]
        pool = children_of(worker)
        assert pool, "the worker runs one pool process"

        serve.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert serve.wait(timeout=40) in (0, 130)
        for pid in [worker, *pool]:
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not alive(pid), f"process {pid} outlived foley serve"
    finally:
        if serve.poll() is None:
            serve.kill()
        log.close()
