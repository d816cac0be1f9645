"""The embedded worker: `foley serve` runs one `foley worker` process beside the API.

The worker runs in its own session, so a Ctrl-C in the terminal reaches only `foley serve`,
which then stops the worker in order: a warm shutdown (the running task finishes) for a few
seconds, then a cold one. A worker that dies is started again; the new one re-sends the
jobs the old one left unfinished. The worker also exits if `foley serve` itself is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)

RESTART_DELAY_S = 2.0


class WorkerSupervisor:
    def __init__(
        self,
        queues: Sequence[str],
        *,
        concurrency: int = 1,
        warm_stop_s: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "foley",
            "worker",
            f"--queues={','.join(queues)}",
            f"--concurrency={concurrency}",
            f"--exit-with-parent={os.getpid()}",
            *extra_args,
        ]
        self.warm_stop_s = warm_stop_s
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="foley-worker-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self.process = subprocess.Popen(self.command, start_new_session=True)
            log.info("started the job worker (pid %d)", self.process.pid)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self.process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error(
                "the job worker (pid %d) exited with %s; starting another in %.0f s",
                process.pid,
                code,
                RESTART_DELAY_S,
            )
            if self._stopping.wait(RESTART_DELAY_S):
                return
            self.restarts += 1
            self._spawn()

    def stop(self) -> int | None:
        """Stop the worker and wait for it; returns its exit code."""
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is None:
            return None
        code = _stop(process, self.warm_stop_s)
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        log.info("the job worker stopped (exit code %s)", code)
        return code


def _stop(process: subprocess.Popen[bytes], warm_s: float) -> int | None:
    # Celery: SIGTERM is a warm shutdown, SIGQUIT a cold one.
    for sig, wait_s in ((signal.SIGTERM, warm_s), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            if sig == signal.SIGKILL:
                os.killpg(process.pid, sig)  # the pool processes too
            else:
                process.send_signal(sig)  # the main process stops its pool itself
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            log.warning("the job worker did not stop within %.0f s of %s", wait_s, sig.name)
    return process.poll()


def exit_with_parent(parent_pid: int) -> None:
    """Have the kernel stop this process when `parent_pid` (its parent) dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
