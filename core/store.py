"""The file store: uploaded audio kept under the data dir, named by the hash of its bytes.

`store/ab/<sha256>.<ext>`: the same bytes always land on the same path, so storing twice
is harmless. Every write goes to a temporary file in the store first and is renamed into
place, so a reader never sees half a file and a crash leaves at most a stray temp file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_HASH = re.compile(r"^[0-9a-f]{64}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}$")
_TEMP_PREFIX = ".incoming-"


class StoreError(Exception):
    """The store cannot hold or find a file."""


@dataclass(frozen=True)
class StagedFile:
    """Bytes copied into the store's temp area, hashed, not yet in place."""

    temp_path: Path
    content_hash: str
    size: int


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, content_hash: str, ext: str) -> Path:
        if not _HASH.match(content_hash) or not _EXT.match(ext):
            raise StoreError(f"not a stored file name: {content_hash}.{ext}")
        return self.root / content_hash[:2] / f"{content_hash}.{ext}"

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def resolve(self, relative: str) -> Path:
        """The stored file a relative name (as kept in job params) points at, never outside."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StoreError(f"{relative!r} is outside the store")
        return path

    def stage(self, source: BinaryIO, max_bytes: int | None = None) -> StagedFile:
        """Copy a stream into a temp file in the store while hashing it.

        Stops and raises StoreError once more than `max_bytes` arrived.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.root)
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise StoreError(f"more than {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return StagedFile(temp, digest.hexdigest(), size)

    def commit(self, staged: StagedFile, ext: str) -> Path:
        """Move a staged file to its content-addressed path (atomic rename)."""
        final = self.path_for(staged.content_hash, ext)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(staged.temp_path, 0o644)
        os.replace(staged.temp_path, final)
        return final

    def discard(self, staged: StagedFile) -> None:
        staged.temp_path.unlink(missing_ok=True)

    def put_bytes(self, data: bytes, ext: str) -> Path:
        import io

        return self.commit(self.stage(io.BytesIO(data)), ext)

    def remove(self, path: Path) -> bool:
        """Delete a stored file (and its folder when empty); False if it was not there."""
        path = Path(path)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise StoreError(f"{path} is outside the store")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        try:
            path.parent.rmdir()
        except OSError:
            pass  # other files share the folder
        log.info("removed %s from the store", path)
        return True
