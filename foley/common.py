"""What every `foley` subcommand shares: its user-facing error and its progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


def progress_bar(total: int, desc: str, unit: str = "file") -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(done: int, new_total: int) -> None:
        if bar.total != new_total:
            bar.total = new_total
        bar.update(done - bar.n)
        if done >= new_total:
            bar.close()

    return update


def comma_list(text: str) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`: a comma-separated option's items."""
    return [item.strip() for item in text.split(",") if item.strip()]
