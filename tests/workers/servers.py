"""A PostgreSQL server and a Redis server of the test's own, on spare ports, that the test
may stop and start again (the shared ones named by FOLEY_TEST_* are never touched).

PostgreSQL refuses to run as root, so under root the server runs as the `postgres` user (or
`nobody`), in a folder outside pytest's root-only temporary tree.
"""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {START_TIMEOUT_S} s")


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _server_user() -> str | None:
    """Who runs postgres: this user, or under root an unprivileged one (None: none found)."""
    if os.geteuid() != 0:
        return getpass.getuser()
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return None


class OwnPostgres:
    """initdb into a fresh folder, then start, stop (fast or immediate) and start again."""

    def __init__(self, bindir: Path, user: str) -> None:
        self.bindir = bindir
        self.user = user
        self.port = spare_port()
        self.folder = Path(tempfile.mkdtemp(prefix="foley-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        entry = pwd.getpwnam(user)
        os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._as_user(
            [str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"],
            check=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_user(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        user = None if self.user == getpass.getuser() else self.user
        return subprocess.run(command, user=user, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]

    def start(self) -> None:
        user = None if self.user == getpass.getuser() else self.user
        log = self.log.open("ab")
        os.chown(self.log, pwd.getpwnam(self.user).pw_uid, -1)
        self.process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.folder),
                "-c",
                "fsync=off",  # a process crash loses nothing with it off; the OS is not crashed
                "-c",
                "max_connections=60",
            ],
            user=user,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, self.process, self.log)
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Listening is not accepting: wait until a connection succeeds (recovery done)."""
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """`fast`: clients are disconnected and the server shuts down cleanly; `immediate`:
        it stops at once and recovers from its log on the next start (like a crash)."""
        assert self.process is not None
        sig = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        self.process.send_signal(sig)
        self.process.wait(timeout=60)
        self.process = None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop("fast")
        shutil.rmtree(self.folder, ignore_errors=True)


class OwnRedis:
    """redis-server with an append-only file (as in docker-compose.yml), on a spare port."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = spare_port()
        self.log = folder / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, self.process, self.log)
        self._wait_loaded()

    def _wait_loaded(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            client.close()

    def stop(self, mode: str = "term") -> None:
        """`term`: Redis writes its append-only file and exits; `kill`: SIGKILL (what was not
        yet flushed to the file, at most about a second of writes, is lost)."""
        assert self.process is not None
        sig = {"term": signal.SIGTERM, "kill": signal.SIGKILL}[mode]
        self.process.send_signal(sig)
        self.process.wait(timeout=60)
        self.process = None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop("term")


@contextmanager
def own_servers(folder: Path) -> Iterator[tuple[OwnPostgres, OwnRedis]]:
    """Both servers started; skips the test when their programs are not installed."""
    bindir = postgres_bin()
    redis_server = shutil.which("redis-server")
    user = _server_user()
    missing = [
        what
        for what, found in (
            ("postgres and initdb (/usr/lib/postgresql/*/bin)", bindir),
            ("redis-server", redis_server),
            ("a non-root user to run postgres as", user),
        )
        if not found
    ]
    if missing:
        pytest.skip(f"restart tests need {' and '.join(missing)}")
    assert bindir and redis_server and user
    postgres = OwnPostgres(bindir, user)
    redis_ = OwnRedis(redis_server, folder / "redis")
    try:
        postgres.start()
        redis_.start()
        yield postgres, redis_
    finally:
        redis_.close()
        postgres.close()
