"""What every `foley` subcommand shares: its user-facing error and its progress bar."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence


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


def recorded_command(argv: Sequence[str] | None = None) -> str:
    """The command line as a model card records it: with no machine's paths. The corpus
    folder is `DIR`, other paths inside the working folder are relative, and `-v` is dropped.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    here = os.getcwd()
    out = ["foley"]
    for i, word in enumerate(words):
        if word in ("-v", "--verbose"):
            continue
        if i > 0 and words[i - 1] == "--corpus":
            word = "DIR"
        elif word.startswith("--corpus="):
            word = "--corpus=DIR"
        elif os.path.isabs(word) and word.startswith(here + os.sep):
            word = os.path.relpath(word, here)
        out.append(word)
    return shlex.join(out)
