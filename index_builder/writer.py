"""Writer: put a batch of indexing outcomes into the catalog, in one transaction.

Sounds, locations, embeddings and outbox entries change together, so a run killed at
any point leaves the catalog either before or after each batch, never between.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.catalog import Embedding, Location, OutboxEntry, ScanError, Sound, SoundSource
from index_builder.embed import Embedded, Failed


@dataclass
class FileOutcome:
    """What indexing found for one file. `result` None: its sound is already embedded."""

    path: str
    size: int
    mtime_ns: int
    library_id: int | None
    content_hash: str | None
    result: Embedded | Failed | None
    title: str = ""
    tags: list[str] = field(default_factory=list)
    source: str = SoundSource.library.value


@dataclass
class WriteCounts:
    added: int = 0
    embedded: int = 0
    linked: int = 0
    failed: int = 0
    removed_sounds: int = 0

    def add(self, other: WriteCounts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def write_batch(session: Session, outcomes: Sequence[FileOutcome], model_id: str) -> WriteCounts:
    counts = WriteCounts()
    touched: set[int] = set()
    for outcome in outcomes:
        if isinstance(outcome.result, Failed):
            touched |= _record_failure(session, outcome)
            counts.failed += 1
            continue
        sound, created = _sound_for(session, outcome)
        counts.added += created
        if isinstance(outcome.result, Embedded):
            _put_embedding(session, sound, model_id, outcome.result)
            counts.embedded += 1
        previous = _link(session, sound, outcome)
        if previous is not None and previous != sound.id:
            touched.add(previous)
        counts.linked += 1
        session.execute(delete(ScanError).where(ScanError.path == outcome.path))
    session.flush()
    counts.removed_sounds = delete_orphans(session, touched)
    return counts


def _sound_for(session: Session, outcome: FileOutcome) -> tuple[Sound, bool]:
    sound = session.scalar(select(Sound).where(Sound.content_hash == outcome.content_hash))
    if sound is not None:
        return sound, False
    if not isinstance(outcome.result, Embedded):
        raise ValueError(f"{outcome.path}: a new sound needs its decoded audio")
    info = outcome.result.info
    sound = Sound(
        content_hash=outcome.content_hash,
        size=info.size,
        duration=info.duration,
        sample_rate=info.sample_rate,
        channels=info.channels,
        format=info.format,
        title=outcome.title,
        tags=list(outcome.tags),
        source=outcome.source,
    )
    session.add(sound)
    session.flush()
    return sound, True


def _put_embedding(session: Session, sound: Sound, model_id: str, embedded: Embedded) -> None:
    row = session.scalar(
        select(Embedding).where(Embedding.sound_id == sound.id, Embedding.model_id == model_id)
    )
    if row is None:
        row = Embedding(sound_id=sound.id, model_id=model_id)
        session.add(row)
    row.dim = int(embedded.vector.shape[0])
    row.vector = Embedding.pack(embedded.vector)
    session.add(OutboxEntry(sound_id=sound.id, op="upsert"))


def _link(session: Session, sound: Sound, outcome: FileOutcome) -> int | None:
    """Point the path at `sound`; return the sound it pointed at before, if any."""
    location = session.scalar(select(Location).where(Location.path == outcome.path))
    previous = None
    if location is None:
        location = Location(path=outcome.path, library_id=outcome.library_id)
        session.add(location)
    else:
        previous = location.sound_id
    location.sound_id = sound.id
    location.size = outcome.size
    location.mtime_ns = outcome.mtime_ns
    location.library_id = outcome.library_id
    return previous


def _record_failure(session: Session, outcome: FileOutcome) -> set[int]:
    assert isinstance(outcome.result, Failed)
    error = session.scalar(select(ScanError).where(ScanError.path == outcome.path))
    if error is None:
        error = ScanError(path=outcome.path)
        session.add(error)
    error.library_id = outcome.library_id
    error.code = outcome.result.code
    error.message = outcome.result.message
    error.size = outcome.size
    error.mtime_ns = outcome.mtime_ns
    # The bytes at this path are no longer the sound they were.
    return remove_locations(session, [outcome.path])


def remove_locations(session: Session, paths: Iterable[str]) -> set[int]:
    """Delete these locations; return the sounds that lost one."""
    paths = list(paths)
    if not paths:
        return set()
    sound_ids = set(session.scalars(select(Location.sound_id).where(Location.path.in_(paths))))
    session.execute(delete(Location).where(Location.path.in_(paths)))
    return sound_ids


def delete_orphans(session: Session, sound_ids: Iterable[int]) -> int:
    """Remove library sounds with no location left, and tell the index."""
    removed = 0
    for sound_id in sorted(set(sound_ids)):
        left = session.scalar(select(func.count()).where(Location.sound_id == sound_id))
        sound = session.get(Sound, sound_id)
        if sound is None or left or sound.source != SoundSource.library.value:
            continue
        session.delete(sound)
        session.add(OutboxEntry(sound_id=sound_id, op="delete"))
        removed += 1
    session.flush()
    return removed
