"""The sweep's thread and the pool's forks: a fork never copies a sweep in progress."""

from __future__ import annotations

import os
import threading
import time

from workers.sweeper import no_fork


def test_a_fork_waits_for_a_running_sweep_to_end() -> None:
    events: list[str] = []
    inside = threading.Event()

    def sweep() -> None:
        with no_fork():
            inside.set()
            time.sleep(0.3)
            events.append("sweep ended")

    thread = threading.Thread(target=sweep)
    thread.start()
    inside.wait()
    pid = os.fork()
    if pid == 0:  # the child: the guard must be free here, or it would wait forever
        with no_fork():
            os._exit(0)
    events.append("forked")
    _, status = os.waitpid(pid, 0)
    thread.join()
    assert events == ["sweep ended", "forked"]
    assert os.waitstatus_to_exitcode(status) == 0
