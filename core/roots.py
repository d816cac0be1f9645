"""Library roots: the folders under which the API may register and scan libraries.

`FOLEY_LIBRARY_ROOTS` names them (the data dir alone by default). A path is inside a root when
its fully resolved form is, so a symlink that leads out of every root is refused, and so is a
registered library whose folder was later replaced by such a link. The command line is not
bound by them: `foley index` indexes any folder its user names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class PathRefused(Exception):
    """A path the API will not register or scan; `code` and `status` say why for the client."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def inside_roots(path: Path, roots: Sequence[Path]) -> bool:
    """Whether `path`, with every symlink followed, lies in one of `roots` (also resolved)."""
    real = path.resolve()
    return any(real.is_relative_to(root.resolve()) for root in roots)


def check_library_folder(raw: str, roots: Sequence[Path]) -> Path:
    """The resolved folder `raw` names, if the API may register it; `PathRefused` otherwise.

    The roots are checked before the folder's existence, so a refused client learns nothing
    about what exists outside them.
    """
    if "\x00" in raw:
        raise PathRefused("bad_path", 400, "the path contains a NUL byte")
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # `~someone` names a user this machine does not have
        raise PathRefused("bad_path", 400, f"{raw}: no such user's home folder") from None
    if not path.is_absolute():
        raise PathRefused("bad_path", 400, f"{raw} must be an absolute path")
    try:
        real = path.resolve()
        if not inside_roots(real, roots):
            names = os.pathsep.join(str(root) for root in roots)
            raise PathRefused(
                "outside_library_roots",
                403,
                f"{raw} is outside the library roots this server may index ({names}); "
                "FOLEY_LIBRARY_ROOTS names them",
            )
        if not real.exists():
            raise PathRefused("not_found", 400, f"{real} does not exist on the server")
        if not real.is_dir():
            raise PathRefused("not_a_folder", 400, f"{real} is not a folder")
    except OSError as exc:  # a name too long, a loop of links, a folder it may not read
        raise PathRefused("bad_path", 400, f"{raw} cannot be used: {exc.strerror}") from None
    return real
