"""The `foley` command line, run as a user runs it: in its own process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.config import Settings


def foley(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foley", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {
        **os.environ,
        "FOLEY_DATA_DIR": str(settings.data_dir),
        "FOLEY_CLAP_CHECKPOINT": str(settings.clap_checkpoint),
        "FOLEY_API_PORT": str(port),
    }


def test_index_rejects_a_missing_folder(env: dict[str, str], tmp_path: Path) -> None:
    result = foley(env, "index", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "nowhere is not a folder" in result.stderr and "Traceback" not in result.stderr


def test_evaluating_a_missing_checkpoint_says_which(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "no-captioner"
    result = foley(env, "eval", "caption", "--corpus", str(tmp_path), "--checkpoint", str(missing))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"captioner checkpoint {missing} lacks config.json" in result.stderr


def test_index_search_and_serve(env: dict[str, str], library: Path) -> None:
    indexed = foley(env, "index", str(library))
    assert indexed.returncode == 0, indexed.stderr
    assert "30 new sounds" in indexed.stdout and "30 sounds searchable" in indexed.stdout

    found = foley(env, "search", "a bright bell", "-k", "3")
    assert found.returncode == 0, found.stderr
    rows = [line for line in found.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 3

    # Words alone: the folder name "Tones" is the tag of ten of the sounds.
    by_words = foley(env, "search", "tones", "--mode", "words", "-k", "20")
    assert by_words.returncode == 0, by_words.stderr
    tagged = [line for line in by_words.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(tagged) == 10 and all(line.endswith("[tones]") for line in tagged)

    server = subprocess.Popen(
        [sys.executable, "-m", "foley", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = _wait_for_health(int(env["FOLEY_API_PORT"]), server)
        assert health["index"]["points"] == 30 and health["status"] == "ok"
        # The server holds the embedded index; the CLI asks the server instead.
        remote = foley(env, "search", "a bright bell", "-k", "3")
        assert remote.returncode == 0, remote.stderr
        assert [line.split()[1] for line in remote.stdout.splitlines()[1:]] == [
            line.split()[1] for line in rows
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_health(port: int, server: subprocess.Popen[str]) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as r:
                return json.load(r)
        except OSError:
            time.sleep(0.5)
    raise AssertionError("foley serve did not become healthy in 120 s")


def test_caption_without_a_captioner_says_why(env: dict[str, str], library: Path) -> None:
    result = foley(env, "caption", str(library / "Tones" / "clip_02.wav"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no captioner to caption with" in result.stderr


def test_caption_prints_captions_tags_and_segments(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import soundfile as sf

    import index_builder.captions
    from foley.main import main
    from tests.captioners import ScriptedCaptioner
    from tests.sounds import SAMPLE_RATE, tone

    captioner = ScriptedCaptioner()
    monkeypatch.setattr(index_builder.captions, "captioner_for", lambda s: (captioner, "loaded"))
    folder = tmp_path / "Kitchen"
    folder.mkdir()
    sf.write(folder / "kettle_2.wav", tone(3, 15.0), SAMPLE_RATE)
    (folder / "notes.wav").write_text("not audio")
    code = main(["caption", "--json", str(folder / "kettle_2.wav"), str(folder / "notes.wav")])
    out, err = capsys.readouterr()
    assert code == 1 and "notes.wav" in err  # one file failed, the other was captioned
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["caption"] == "a whistling kettle, filed as kettle 2"
    assert row["tags"] == ["kettle", "whistle", "kitchen-sounds"]
    assert [s["end_s"] for s in row["segments"]] == [10.0, 15.0]
    assert captioner.seen[0]["folder"] == "Kitchen"
    assert main(["caption", str(folder / "kettle_2.wav")]) == 0
    text = capsys.readouterr().out
    assert "caption: a whistling kettle" in text and "10.0-   15.0 s" in text


def test_a_recorded_command_names_no_machine_path() -> None:
    from foley.common import recorded_command

    here = Path.cwd()
    argv = ["-v", "train", "captioner", "--corpus", "/data/corpus", "--out", str(here / "m")]
    assert recorded_command(argv) == "foley train captioner --corpus DIR --out m"
    assert recorded_command(["eval", "clap", "--corpus=/x"]) == "foley eval clap --corpus=DIR"
