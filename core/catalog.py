"""The catalog: Foley's source of truth, in SQL (SQLite embedded, PostgreSQL scaled out).

The vector index is a projection of the `embeddings` table, kept in step through the
`outbox`: every change to what the index should hold appends an `OutboxEntry` in the
same transaction as the change itself.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back with its offset.

    SQLite keeps no zone, so without this a row read back from it has a naive datetime
    while the same row fresh from Python has `+00:00`: the API would show both forms.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class SoundSource(enum.StrEnum):
    library = "library"
    upload = "upload"
    generated = "generated"


class WordSource(enum.StrEnum):
    """Who wrote a sound's title, caption or tags. A person's words are never overwritten by
    a machine's; the library's own words (file and folder names) outrank the captioner's."""

    person = "person"
    metadata = "metadata"  # the library's file and folder names
    captioner = "captioner"


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class Library(Base):
    """A folder registered as a library root; audio is only ever served from inside one."""

    __tablename__ = "libraries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Sound(Base):
    """One sound, identified by the hash of its bytes."""

    __tablename__ = "sounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    duration: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(512), default="")
    caption: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(16), default=SoundSource.library.value)
    # Who wrote each of the words above (a `WordSource`); None while the field is empty.
    title_by: Mapped[str | None] = mapped_column(String(16), default=WordSource.metadata.value)
    caption_by: Mapped[str | None] = mapped_column(String(16))
    tags_by: Mapped[str | None] = mapped_column(String(16), default=WordSource.metadata.value)
    # The captioner's per-segment captions of a long file: [{start_s, end_s, caption}], and
    # which captioner model last captioned the sound (None: never captioned).
    caption_segments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    caption_model: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    locations: Mapped[list[Location]] = relationship(
        back_populates="sound", cascade="all, delete-orphan", passive_deletes=True
    )
    embeddings: Mapped[list[Embedding]] = relationship(
        back_populates="sound", cascade="all, delete-orphan", passive_deletes=True
    )
    # How a generated sound was made (None for every other sound).
    generation: Mapped[GenerationRecord | None] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class Location(Base):
    """A path where a sound's bytes live; one sound can live at several paths."""

    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sound_id: Mapped[int] = mapped_column(ForeignKey("sounds.id", ondelete="CASCADE"), index=True)
    library_id: Mapped[int | None] = mapped_column(
        ForeignKey("libraries.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    sound: Mapped[Sound] = relationship(back_populates="locations")


class Embedding(Base):
    """A sound's CLAP audio embedding under one model; float32 bytes, L2-normalised."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("sound_id", "model_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sound_id: Mapped[int] = mapped_column(ForeignKey("sounds.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(String(128))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    sound: Mapped[Sound] = relationship(back_populates="embeddings")

    def as_array(self) -> np.ndarray:
        return np.frombuffer(self.vector, dtype=np.float32).copy()

    @staticmethod
    def pack(vector: np.ndarray) -> bytes:
        return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


class GenerationRecord(Base):
    """How a generated sound was made: its prompt, seed, settings, the models, and the library
    sounds it was conditioned on. One row per generated sound; it goes with the sound."""

    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sound_id: Mapped[int] = mapped_column(
        ForeignKey("sounds.id", ondelete="CASCADE"), unique=True, index=True
    )
    job_id: Mapped[str | None] = mapped_column(String(36), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    # seconds, steps, guidance, guidance mode, scheduler, vocoder, neighbours asked for
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {"generator": model id, "clap": model id}
    models: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The library sounds retrieved as neighbours, nearest first (empty: no retrieval). Plain
    # ids, not foreign keys: the record outlives a neighbour's deletion.
    neighbour_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEntry(Base):
    """A sound whose index entry must be brought in line with the catalog."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign key: the entry must outlive a deleted sound so the deletion reaches the index.
    sound_id: Mapped[int] = mapped_column(Integer, index=True)
    op: Mapped[str] = mapped_column(String(16))  # "upsert" or "delete"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IndexState(Base):
    """How far the index syncer got through the outbox, and under which model."""

    __tablename__ = "index_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str | None] = mapped_column(String(128))
    applied_seq: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ScanError(Base):
    """A library file that could not be indexed, kept until it indexes or vanishes."""

    __tablename__ = "scan_errors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    library_id: Mapped[int | None] = mapped_column(
        ForeignKey("libraries.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """A long operation a client submits and polls."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.queued.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
