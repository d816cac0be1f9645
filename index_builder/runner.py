"""Runner: reader -> embedder -> writer, a batch at a time, with progress.

The runner knows nothing about CLAP; it is handed something that embeds audio.
Re-running is incremental: an unchanged file (same size and mtime, already embedded
under this model) is skipped without being read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audio import DecodeLimits
from core.catalog import Embedding, Library, Location, ScanError, utcnow
from core.db import Catalog
from index_builder.embed import (
    AudioEmbedder,
    Decoded,
    Failed,
    content_hash,
    decode_for,
    embed_decoded,
)
from index_builder.scan import LibraryFile, tags_from_path, title_from_path, walk_library
from index_builder.writer import (
    FileOutcome,
    WriteCounts,
    delete_orphans,
    remove_locations,
    write_batch,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
WRITE_ATTEMPTS = 3


@dataclass
class IndexSummary:
    files: int = 0
    unchanged: int = 0
    skipped_non_audio: int = 0
    vanished: int = 0
    counts: WriteCounts = field(default_factory=WriteCounts)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Known:
    sound_id: int
    size: int
    mtime_ns: int
    embedded: bool


def register_library(catalog: Catalog, root: Path) -> int:
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    with catalog.session() as session:
        library = session.scalar(select(Library).where(Library.path == str(root)))
        if library is None:
            library = Library(path=str(root), name=root.name or str(root))
            session.add(library)
            session.flush()
        return library.id


@dataclass
class ScanPlan:
    """What a scan of one library has to do: the files whose bytes may have changed."""

    library_id: int
    root: Path
    todo: list[LibraryFile]
    seen: set[str]
    summary: IndexSummary


def plan_scan(catalog: Catalog, model_id: str, root: Path) -> ScanPlan:
    """Register the library, walk it and set aside the files that are unchanged."""
    library_id = register_library(catalog, root)
    root = root.expanduser().resolve()
    walked = walk_library(root)
    known = _known_locations(catalog, library_id, model_id)
    todo = [f for f in walked.files if not _unchanged(known.get(str(f.path)), f)]
    summary = IndexSummary(
        files=len(walked.files),
        unchanged=len(walked.files) - len(todo),
        skipped_non_audio=walked.skipped_non_audio,
    )
    log.info("%s: %d audio files, %d to index", root, len(walked.files), len(todo))
    return ScanPlan(library_id, root, todo, {str(f.path) for f in walked.files}, summary)


def index_library(
    catalog: Catalog,
    model: AudioEmbedder,
    root: Path,
    limits: DecodeLimits,
    *,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
) -> IndexSummary:
    started = time.monotonic()
    plan = plan_scan(catalog, model.model_id, root)
    summary = plan.summary
    summary.counts.add(
        index_files(
            catalog, model, plan.root, plan.library_id, plan.todo, limits, batch_size, progress
        )
    )
    summary.vanished = forget_vanished(catalog, plan.library_id, plan.seen, summary)
    with catalog.session() as session:
        summary.failures = close_scan(session, plan.library_id)
    summary.seconds = time.monotonic() - started
    return summary


def index_files(
    catalog: Catalog,
    model: AudioEmbedder,
    root: Path,
    library_id: int,
    files: Sequence[LibraryFile],
    limits: DecodeLimits,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
) -> WriteCounts:
    """Hash, embed and write `files`, one transaction per `batch_size` of them."""
    counts = WriteCounts()
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            outcomes = _process(catalog, model, root, library_id, batch, limits)
            try:
                with catalog.session() as session:
                    counts.add(write_batch(session, outcomes, model.model_id))
                break
            except IntegrityError:
                # Another writer (a batch on another worker, an upload) added the same bytes
                # or path first: look again, and this time link to what it wrote.
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.info("%s: a concurrent writer got there first; writing again", root)
        if progress:
            progress(min(start + batch_size, len(files)), len(files))
    return counts


def close_scan(session: Session, library_id: int) -> list[tuple[str, str]]:
    """Stamp the library as scanned; return every file of it that failed, as (path, error)."""
    library = session.get(Library, library_id)
    if library is not None:
        library.last_scan_at = utcnow()
    errors = session.scalars(
        select(ScanError).where(ScanError.library_id == library_id).order_by(ScanError.path)
    )
    return [(e.path, e.message) for e in errors]


def _known_locations(catalog: Catalog, library_id: int, model_id: str) -> dict[str, _Known]:
    with catalog.session() as session:
        embedded = set(
            session.scalars(select(Embedding.sound_id).where(Embedding.model_id == model_id))
        )
        rows = session.execute(
            select(Location.path, Location.sound_id, Location.size, Location.mtime_ns).where(
                Location.library_id == library_id
            )
        )
        return {
            path: _Known(sound_id, size, mtime, sound_id in embedded)
            for path, sound_id, size, mtime in rows
        }


def files_to_index(
    catalog: Catalog, model_id: str, paths: Sequence[str]
) -> tuple[list[LibraryFile], int]:
    """The named files as they are on disk now, minus those already indexed unchanged; and
    how many of them are gone (the library's next scan forgets those)."""
    files: list[LibraryFile] = []
    gone = 0
    for name in paths:
        try:
            stat = Path(name).stat()
        except OSError:
            gone += 1
            continue
        files.append(LibraryFile(Path(name), stat.st_size, stat.st_mtime_ns))
    with catalog.session() as session:
        rows = session.execute(
            select(Location.path, Location.sound_id, Location.size, Location.mtime_ns).where(
                Location.path.in_([str(f.path) for f in files])
            )
        ).all()
        embedded = set(
            session.scalars(
                select(Embedding.sound_id).where(
                    Embedding.model_id == model_id,
                    Embedding.sound_id.in_([sound_id for _, sound_id, _, _ in rows]),
                )
            )
        )
    known = {
        path: _Known(sound_id, size, mtime, sound_id in embedded)
        for path, sound_id, size, mtime in rows
    }
    return [f for f in files if not _unchanged(known.get(str(f.path)), f)], gone


def _unchanged(known: _Known | None, file: LibraryFile) -> bool:
    return (
        known is not None
        and known.embedded
        and known.size == file.size
        and known.mtime_ns == file.mtime_ns
    )


def _process(
    catalog: Catalog,
    model: AudioEmbedder,
    root: Path,
    library_id: int,
    batch: Sequence[LibraryFile],
    limits: DecodeLimits,
) -> list[FileOutcome]:
    """Hash every file; decode and embed only bytes the catalog has not embedded yet."""
    outcomes: list[FileOutcome] = []
    payloads: dict[int, bytes] = {}
    for file in batch:
        outcome = FileOutcome(
            path=str(file.path),
            size=file.size,
            mtime_ns=file.mtime_ns,
            library_id=library_id,
            content_hash=None,
            result=None,
            title=title_from_path(file.path),
            tags=tags_from_path(file.path, root),
        )
        try:
            data = file.path.read_bytes()
        except OSError as exc:
            outcome.result = Failed(
                "unreadable", f"{file.path.name} cannot be read: {exc.strerror}"
            )
        else:
            outcome.content_hash = content_hash(data)
            payloads[len(outcomes)] = data
        outcomes.append(outcome)
    embedded = _embedded_hashes(catalog, model.model_id, [o.content_hash for o in outcomes])
    to_embed: dict[str, list[int]] = {}
    for i in payloads:
        digest = outcomes[i].content_hash
        if digest is not None and digest not in embedded:
            to_embed.setdefault(digest, []).append(i)
    decoded: list[tuple[list[int], Decoded]] = []
    for positions in to_embed.values():
        first = positions[0]
        result = decode_for(model, payloads[first], Path(outcomes[first].path).name, limits)
        if isinstance(result, Failed):
            for i in positions:
                outcomes[i].result = result
        else:
            decoded.append((positions, result))
    vectors = embed_decoded(model, [d for _, d in decoded])
    for (positions, _), vector in zip(decoded, vectors, strict=True):
        # The first path with these bytes carries the embedding; the rest only link.
        outcomes[positions[0]].result = vector
    return outcomes


def _embedded_hashes(catalog: Catalog, model_id: str, hashes: Sequence[str | None]) -> set[str]:
    from core.catalog import Sound

    wanted = [h for h in hashes if h]
    if not wanted:
        return set()
    with catalog.session() as session:
        rows = session.scalars(
            select(Sound.content_hash)
            .join(Embedding, Embedding.sound_id == Sound.id)
            .where(Sound.content_hash.in_(wanted), Embedding.model_id == model_id)
        )
        return set(rows)


def forget_vanished(
    catalog: Catalog, library_id: int, seen: set[str], summary: IndexSummary
) -> int:
    """Drop the library's locations (and scan errors) whose files are gone."""
    with catalog.session() as session:
        paths = set(session.scalars(select(Location.path).where(Location.library_id == library_id)))
        gone = sorted(paths - seen)
        touched = remove_locations(session, gone)
        summary.counts.removed_sounds += delete_orphans(session, touched)
        stale_errors = session.scalars(
            select(ScanError).where(ScanError.library_id == library_id)
        ).all()
        for error in stale_errors:
            if error.path not in seen:
                session.delete(error)
        return len(gone)
