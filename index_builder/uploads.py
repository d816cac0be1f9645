"""Uploads: a stored file becomes a sound, through the same writer as a library scan.

The API has already checked the file's size and header and put its bytes in the store
(`core.store`). The upload job then decodes, embeds, captions and writes the sound,
its store location, its embedding and an outbox entry in one catalog transaction, the same
transaction that marks the job succeeded. The index syncer of the process that owns the
vector index applies the outbox entry, so a worker never opens the index.

Identity is the content hash: the same bytes uploaded again give the existing sound
(`duplicate: true`). A file that cannot be decoded fails the job and leaves nothing in the
catalog, and its stored copy is removed unless something else still needs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audio import AudioError, DecodeLimits, probe
from core.batching import MicroBatcher
from core.catalog import Embedding, Job, JobStatus, Location, OutboxEntry, Sound, SoundSource
from core.db import Catalog
from core.jobs import (
    ACTIVE,
    TRANSIENT_ERRORS,
    JobBusy,
    JobFailed,
    JobKind,
    JobRun,
    JobSuperseded,
    execute,
    new_job,
)
from core.store import FileStore
from core.words import CaptionWords, offer_caption
from index_builder.captions import (
    Captioner,
    CaptionResultLike,
    caption_rate,
    caption_upload,
    caption_waves,
    to_rate,
    upload_metadata,
    words_of,
)
from index_builder.embed import AudioEmbedder, Embedded, Failed, content_hash, decode_for
from index_builder.scan import title_from_path
from index_builder.writer import FileOutcome, write_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadRequest:
    """What an upload job needs, as kept in the job's params."""

    stored: str  # path relative to the store
    filename: str  # the name the client gave, for the title and messages
    content_hash: str

    def as_params(self) -> dict[str, str]:
        return {"stored": self.stored, "filename": self.filename, "content_hash": self.content_hash}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> UploadRequest:
        try:
            return cls(str(params["stored"]), str(params["filename"]), str(params["content_hash"]))
        except KeyError as exc:
            raise JobFailed(f"the upload job lacks its {exc.args[0]!r} parameter") from exc


# The format `probe` reports -> the extension the stored copy gets.
STORED_EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3", "aiff": "aiff"}
MAX_FILENAME = 255


def client_filename(raw: str | None) -> str:
    """The base name a client sent, without any folders it tried to smuggle in."""
    # Control characters (NUL above all: PostgreSQL refuses it in text) never reach a title.
    printable = "".join(ch for ch in (raw or "") if ch.isprintable())
    name = PurePosixPath(printable.replace("\\", "/")).name.strip()
    if name in (".", ".."):
        name = ""
    return name[:MAX_FILENAME] or "upload"


def receive_upload(
    catalog: Catalog, store: FileStore, limits: DecodeLimits, filename: str, stream: BinaryIO
) -> Job:
    """Check an upload before accepting it; return its job (committed).

    A file whose header `probe` refuses is not stored: its job is created already failed,
    with the reason. A file that passes is stored content-addressed and its job is queued;
    the caller sends it to the queue.
    """
    staged = store.stage(stream, max_bytes=limits.max_bytes)
    try:
        info = probe(staged.temp_path, limits, name=filename)
    except AudioError as exc:
        store.discard(staged)
        with catalog.session() as session:
            params = {"filename": filename, "content_hash": staged.content_hash}
            return new_job(
                session, JobKind.upload.value, params, status=JobStatus.failed.value, error=str(exc)
            )
    except BaseException:
        store.discard(staged)
        raise
    path = store.commit(staged, STORED_EXTENSIONS[info.format])
    request = UploadRequest(store.relative(path), filename, staged.content_hash)
    with catalog.session() as session:
        return new_job(session, JobKind.upload.value, request.as_params())


@dataclass
class UploadAudio:
    """An upload's decoded audio (at the CLAP's rate) and the names the captioner reads."""

    wave: np.ndarray
    filename: str
    title: str


@dataclass
class Analysis:
    """What the models make of an upload: its CLAP embedding and the captioner's words (None
    without a captioner, or when it failed)."""

    vector: np.ndarray
    words: CaptionWords | None


def analyse(
    model: AudioEmbedder, captioner: Captioner | None, items: Sequence[UploadAudio]
) -> list[Analysis]:
    """Embed and caption uploads together, before their catalog writes, so each caption
    commits with its sound.

    A captioner that reads the embedding's own CLAP gives both from one CLAP pass
    (`embed_and_caption`: the same embedding `embed_audio` gives); any other is run after
    the embedding. AutoCap reads the file name and title as metadata. When the captioner
    fails the uploads are captioned again one at a time, and one that still fails is written
    without a caption (`POST /api/sounds/{id}/caption` captions it later): an upload is
    never lost to a captioner bug.
    """
    if not items:
        return []
    together = _one_pass(model, captioner)
    if together is not None and captioner is not None:
        waves = [item.wave for item in items]
        metadata = [upload_metadata(item.filename, item.title) for item in items]
        try:
            vectors, results = together(waves, metadata)
            said = [words_of(captioner, result) for result in results]
            return [Analysis(v, w) for v, w in zip(vectors, said, strict=True)]
        except Exception:
            log.exception("embedding and captioning %d uploads in one pass failed", len(items))
    vectors = model.embed_audio([item.wave for item in items])
    words = _captions(captioner, items, model.sample_rate)
    return [Analysis(v, w) for v, w in zip(vectors, words, strict=True)]


# waves, metadata -> (N, D) embeddings as `embed_audio` gives them, and the captioner's results
OnePass = Callable[
    [list[np.ndarray], list[dict[str, str]]], tuple[np.ndarray, Sequence[CaptionResultLike]]
]


def _one_pass(model: AudioEmbedder, captioner: Captioner | None) -> OnePass | None:
    """The captioner's `embed_and_caption`, when it reads the embedding's own CLAP at the
    same rate; else None."""
    if captioner is None:
        return None
    together: OnePass | None = getattr(captioner, "embed_and_caption", None)
    clap_id = getattr(getattr(captioner, "clap", None), "model_id", None)
    if together is None or clap_id != model.model_id:
        return None
    return together if caption_rate(captioner) == model.sample_rate else None


def _captions(
    captioner: Captioner | None, items: Sequence[UploadAudio], sample_rate: int
) -> list[CaptionWords | None]:
    if captioner is None:
        return [None] * len(items)
    if len(items) > 1:
        try:
            rate = caption_rate(captioner)
            waves = [to_rate(item.wave, sample_rate, rate) for item in items]
            metadata = [upload_metadata(item.filename, item.title) for item in items]
            return list(caption_waves(captioner, waves, metadata))
        except Exception:
            log.exception("captioning %d uploads together failed; one at a time now", len(items))
    return [
        caption_upload(captioner, item.wave, sample_rate, item.filename, item.title)
        for item in items
    ]


Analyse = Callable[[UploadAudio], Analysis]


def ingest_upload(
    catalog: Catalog,
    model: AudioEmbedder,
    store: FileStore,
    limits: DecodeLimits,
    run: JobRun,
    captioner: Captioner | None = None,
) -> dict[str, Any]:
    """The upload job: decode, embed and caption, write; returns the job's result."""
    return _ingest_stored(
        catalog, model, store, limits, run, lambda item: analyse(model, captioner, [item])[0]
    )


def _ingest_stored(
    catalog: Catalog,
    model: AudioEmbedder,
    store: FileStore,
    limits: DecodeLimits,
    run: JobRun,
    analyse_one: Analyse,
) -> dict[str, Any]:
    request = UploadRequest.from_params(run.params)
    path = store.resolve(request.stored)
    try:
        return _ingest(catalog, model, limits, run, request, path, analyse_one)
    except JobSuperseded:
        raise  # the attempt that took over needs the stored file
    except TRANSIENT_ERRORS:
        if not run.may_retry:  # the job fails now: leave nothing, as for any failure
            discard_if_unused(catalog, store, path, exclude_job=run.id)
        raise  # otherwise the retry needs the stored file
    except Exception:
        # Failed or cancelled: nothing of this upload stays unless another job needs it.
        discard_if_unused(catalog, store, path, exclude_job=run.id)
        raise


def _ingest(
    catalog: Catalog,
    model: AudioEmbedder,
    limits: DecodeLimits,
    run: JobRun,
    request: UploadRequest,
    path: Path,
    analyse_one: Analyse,
) -> dict[str, Any]:
    # Two progress reports only: each is a catalog write, and a batch's jobs write at once.
    with catalog.session() as session:
        known = _embedded_sound(session, request.content_hash, model.model_id)
        if known is not None:
            return _finish_duplicate(session, run, known, path, request)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JobFailed(f"{request.filename}: the stored upload has disappeared") from None
    if content_hash(data) != request.content_hash:
        raise JobFailed(f"{request.filename}: the stored file does not match its hash")
    run.progress(0.1, "decoding")
    decoded = decode_for(model, data, request.filename, limits)
    if isinstance(decoded, Failed):
        raise JobFailed(decoded.message)
    run.progress(0.3, "embedding and captioning")
    title = title_from_path(Path(request.filename))
    analysis = analyse_one(UploadAudio(decoded.wave, request.filename, title))
    stat = path.stat()
    outcome = FileOutcome(
        path=str(path),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        library_id=None,
        content_hash=request.content_hash,
        result=Embedded(decoded.info, analysis.vector),
        title=title,
        source=SoundSource.upload.value,
    )
    # Two uploads of the same new bytes can race to insert the sound; the loser sees the
    # winner's row on its second try and becomes a duplicate.
    for attempt in range(2):
        try:
            with catalog.session() as session:
                return _write(session, run, outcome, model.model_id, analysis.words)
        except IntegrityError:
            if attempt:
                raise
            log.info("%s was written by a concurrent upload; linking to it", request.filename)
    raise AssertionError("unreachable")


def _write(
    session: Session, run: JobRun, outcome: FileOutcome, model_id: str, words: CaptionWords | None
) -> dict[str, Any]:
    existed = session.scalar(select(Sound.id).where(Sound.content_hash == outcome.content_hash))
    write_batch(session, [outcome], model_id)
    sound = session.scalar(select(Sound).where(Sound.content_hash == outcome.content_hash))
    assert sound is not None
    if words is not None:
        # Never over a person's words; the embedding just written already queued an upsert.
        embedded = isinstance(outcome.result, Embedded)
        offer_caption(session, sound, words, index=not embedded)
    result = sound_result(session, sound, duplicate=existed is not None)
    run.succeed_in(session, result, "duplicate of an existing sound" if existed else "indexed")
    return result


def _finish_duplicate(
    session: Session, run: JobRun, sound: Sound, path: Path, request: UploadRequest
) -> dict[str, Any]:
    """The bytes are already a sound: keep the upload as one more location of it."""
    if path.exists() and session.scalar(select(Location).where(Location.path == str(path))) is None:
        stat = path.stat()
        session.add(
            Location(
                sound_id=sound.id,
                library_id=None,
                path=str(path),
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
            )
        )
    result = sound_result(session, sound, duplicate=True)
    run.succeed_in(session, result, "duplicate of an existing sound")
    log.info("%s is sound %d already", request.filename, sound.id)
    return result


def _embedded_sound(session: Session, digest: str, model_id: str) -> Sound | None:
    return session.scalar(
        select(Sound)
        .join(Embedding, Embedding.sound_id == Sound.id)
        .where(Sound.content_hash == digest, Embedding.model_id == model_id)
    )


def sound_result(session: Session, sound: Sound, *, duplicate: bool) -> dict[str, Any]:
    """What a job that wrote `sound` reports about it (uploads, generation)."""
    session.flush()
    seq = session.scalar(select(func.max(OutboxEntry.seq)).where(OutboxEntry.sound_id == sound.id))
    return {
        "sound_id": sound.id,
        "duplicate": duplicate,
        "content_hash": sound.content_hash,
        "title": sound.title,
        "caption": sound.caption,
        "tags": list(sound.tags),
        # The sound is searchable once the index syncer has applied this outbox entry.
        "outbox_seq": int(seq or 0),
    }


def discard_if_unused(
    catalog: Catalog, store: FileStore, path: Path, *, exclude_job: str | None = None
) -> bool:
    """Remove a stored file unless a sound lives there or another upload job still needs it."""
    digest = path.stem
    with catalog.session() as session:
        if session.scalar(select(Location.id).where(Location.path == str(path))) is not None:
            return False
        active = session.scalars(
            select(Job.params).where(
                Job.kind == JobKind.upload.value, Job.status.in_(ACTIVE), Job.id != exclude_job
            )
        )
        if any(params.get("content_hash") == digest for params in active):
            return False
    return store.remove(path)


# --- Several uploads in one task ------------------------------------------------------------

BATCH_WAIT_S = 2.0  # the longest a decoded upload waits for the rest of its batch


class SharedAnalysis:
    """The models of a batch of uploads: each job thread's `analyse` joins one batched pass
    (CLAP embedding and captions, `analyse`).

    The batch runs once every job still running has handed in its audio (a job that failed,
    or found a duplicate, calls `leave`), or after `BATCH_WAIT_S` at the latest. When the
    batch fails, each upload in it is analysed alone, so only the file at fault fails.
    """

    def __init__(self, model: AudioEmbedder, captioner: Captioner | None, jobs: int) -> None:
        self._waiting = jobs
        self._lock = threading.Lock()
        self._local = threading.local()

        def run(items: list[UploadAudio]) -> list[Analysis | Exception]:
            try:
                return list(analyse(model, captioner, items))
            except Exception:
                if len(items) == 1:
                    raise
                log.warning("a batch of %d uploads failed; each alone now", len(items))
            return [_alone(model, captioner, item) for item in items]

        self.batcher: MicroBatcher[UploadAudio, Analysis | Exception] = MicroBatcher(
            run, max_batch=max(jobs, 1), max_wait_s=BATCH_WAIT_S, name="foley-upload-batch"
        )

    def analyse(self, item: UploadAudio) -> Analysis:
        future = self.batcher.submit_async(item)
        self.leave()
        result = future.result()
        if isinstance(result, Exception):
            raise result
        return result

    def leave(self) -> None:
        """This thread's job hands in no more audio."""
        if getattr(self._local, "left", False):
            return
        self._local.left = True
        with self._lock:
            self._waiting -= 1
            if self._waiting <= 0:
                self.batcher.flush()

    def close(self) -> None:
        self.batcher.close()


def _alone(
    model: AudioEmbedder, captioner: Captioner | None, item: UploadAudio
) -> Analysis | Exception:
    try:
        return analyse(model, captioner, [item])[0]
    except Exception as exc:  # this upload's job fails with it; the others go on
        return exc


def ingest_uploads(
    catalog: Catalog,
    model: AudioEmbedder,
    store: FileStore,
    limits: DecodeLimits,
    job_ids: Sequence[str],
    *,
    lease_s: float,
    captioner: Captioner | None = None,
) -> dict[str, float]:
    """Run several upload jobs together, their CLAP embeddings and captions in one batch.

    Every job keeps its own row, claim, lease, progress and outcome (`core.jobs.execute`,
    one thread each): a file that fails fails its own job only. Returns the jobs to send to
    the queue again, each with the seconds to wait (another attempt holds its lease, or a
    transient error)."""
    shared = SharedAnalysis(model, captioner, len(job_ids))

    def one(job_id: str) -> float | None:
        try:
            execute(
                catalog,
                job_id,
                lambda run: _ingest_stored(catalog, model, store, limits, run, shared.analyse),
                lease_s=lease_s,
            )
            return None
        except JobBusy as busy:
            return busy.wait_s + 0.5
        except TRANSIENT_ERRORS:
            log.warning("upload job %s: transient error; sent again", job_id, exc_info=True)
            return 1.0
        finally:
            shared.leave()

    waits: dict[str, float | None] = {}

    def thread(job_id: str) -> None:
        waits[job_id] = one(job_id)

    # A thread per job (not a pool, whose threads run several): `leave` counts per thread.
    threads = [threading.Thread(target=thread, args=(j,), name="upload-job") for j in job_ids]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        shared.close()
    return {job_id: wait for job_id, wait in waits.items() if wait is not None}
