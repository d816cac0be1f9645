"""Reader: walk library folders and say which files need work."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.audio import is_audio_name


@dataclass(frozen=True)
class LibraryFile:
    path: Path
    size: int
    mtime_ns: int


@dataclass
class WalkResult:
    files: list[LibraryFile]
    skipped_non_audio: int


def walk_library(root: Path) -> WalkResult:
    """Every audio file under `root`, in a stable order. Symlinks leading outside are skipped."""
    root = root.resolve()
    files: list[LibraryFile] = []
    skipped = 0
    for path in _walk_sorted(root):
        if not is_audio_name(path):
            skipped += 1
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or not resolved.is_file():
            skipped += 1
            continue
        stat = resolved.stat()
        files.append(LibraryFile(path, stat.st_size, stat.st_mtime_ns))
    return WalkResult(files, skipped)


def _walk_sorted(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


_SEPARATORS = re.compile(r"[_\-.\s]+")


def title_from_path(path: Path) -> str:
    """'door_creak-02.wav' -> 'door creak 02': what a person would call the file."""
    return _SEPARATORS.sub(" ", path.stem).strip() or path.name


def tags_from_path(path: Path, root: Path) -> list[str]:
    """Folder names between the library root and the file are the user's own tags."""
    try:
        parts = path.resolve().parent.relative_to(root.resolve()).parts
    except ValueError:
        return []
    tags: list[str] = []
    for part in parts:
        tag = _SEPARATORS.sub(" ", part).strip().lower()
        if tag and tag not in tags:
            tags.append(tag)
    return tags
