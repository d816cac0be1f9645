"""The embedded queue's transport on a real SQLite file."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from queue import Empty

from kombu import Connection

from core.queue import EMBEDDED_TRANSPORT


def test_one_channel_used_from_two_threads_loses_and_repeats_nothing(tmp_path: Path) -> None:
    # A worker's consumer loop takes messages while its pool's result thread hands back the
    # message of a pool process that died, both on one channel.
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    with Connection(url, transport=EMBEDDED_TRANSPORT) as connection:
        channel = connection.channel()
        channel._new_queue("cpu")
        sent: list[int] = []
        taken: list[int] = []
        errors: list[BaseException] = []
        deadline = time.monotonic() + 2.0
        sending = threading.Event()
        sending.set()

        def send() -> None:
            try:
                while time.monotonic() < deadline:
                    channel._put("cpu", {"n": len(sent)})
                    sent.append(len(sent))
            except BaseException as exc:
                errors.append(exc)
            finally:
                sending.clear()

        def take() -> None:
            try:
                while sending.is_set() or len(taken) < len(sent):
                    try:
                        taken.append(channel._get("cpu")["n"])
                    except Empty:
                        pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=send), threading.Thread(target=take)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(sent) > 50
        assert taken == sent
        assert channel._size("cpu") == 0
