"""Captions: the captioner's words for sounds, written where no person's words stand.

Three ways in, one path out (`core.words.offer_caption`):
- an upload is captioned inside its own job, before the catalog write, so the caption
  commits with the sound (`caption_upload`);
- a library scan makes its new sounds searchable first, then queues `caption` jobs for
  them in batches (`plan_caption_jobs`), each run by `caption_sounds`;
- `POST /api/sounds/{id}/caption` re-captions one sound as a `caption` job.

The captioner comes from `generative.registry.get_captioner(settings)` (AutoCap, loaded once
per process). When this build or this deployment has none, `captioner_for` says why, uploads
are written without a caption, scans queue no caption jobs, and a caption job fails with the
reason.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audio import AudioError, DecodeLimits, decode
from core.catalog import Job, Library, Location, Sound
from core.config import Settings
from core.db import Catalog
from core.jobs import ACTIVE, JobFailed, JobKind, JobRun, new_job
from core.words import CaptionWords, machine_tags, offer_caption

log = logging.getLogger(__name__)

# The captioner's input rate when it names none (AutoCap reads its CLAP's rate).
DEFAULT_CAPTION_RATE = 16_000
# Sounds decoded and captioned together inside a caption job: bounds memory.
DECODE_BATCH = 8


class CaptionResultLike(Protocol):
    caption: str
    tags: list[str]
    segments: Sequence[Any]


class Captioner(Protocol):
    """What Foley needs of a captioner (generative.captioner.pipeline.Captioner)."""

    model_id: str

    def caption(
        self, waves: Sequence[np.ndarray], metadata: Sequence[Mapping[str, Any] | None]
    ) -> Sequence[CaptionResultLike]: ...


_unavailable: dict[str, str] = {}


def captioner_for(settings: Settings) -> tuple[Captioner | None, str]:
    """The process's captioner (loaded once, by the registry), or None and why not."""
    try:
        registry = importlib.import_module("generative.registry")
    except ImportError as exc:  # pragma: no cover - the registry is part of Foley
        return None, f"the model registry cannot be imported: {exc}"
    get_captioner = getattr(registry, "get_captioner", None)
    if get_captioner is None:
        return None, "this build of Foley has no captioner (generative.registry.get_captioner)"
    try:
        captioner = get_captioner(settings)
    except Exception as exc:  # a broken checkpoint must not take the worker down
        key = str(settings.captioner_checkpoint)
        if key not in _unavailable:
            log.exception("the captioner at %s cannot be loaded", key)
        _unavailable[key] = f"the captioner cannot be loaded: {exc}"
        return None, _unavailable[key]
    if captioner is None:
        status = getattr(registry, "captioner_status", None)
        reason = status(settings) if callable(status) else None
        return None, reason or f"no captioner checkpoint at {settings.captioner_checkpoint}"
    return captioner, "loaded"


def captioner_status(settings: Settings) -> dict[str, object]:
    """Health: whether captions are made here, by which model, or why not. Loads the
    captioner if it was not loaded yet (the API never captions, but says whether its
    workers can when they share its settings)."""
    captioner, reason = captioner_for(settings)
    state: dict[str, object] = {
        "loaded": captioner is not None,
        "status": reason,
        "checkpoint": str(settings.captioner_checkpoint),
        "caption_on_scan": settings.caption_on_scan,
    }
    if captioner is not None:
        state["model_id"] = captioner.model_id
    return state


def caption_rate(captioner: Captioner) -> int:
    """The sample rate the captioner reads: its own, its CLAP's, or 16 kHz."""
    rate = getattr(captioner, "sample_rate", None)
    if rate is None:
        rate = getattr(getattr(captioner, "clap", None), "sample_rate", None)
    return int(rate or DEFAULT_CAPTION_RATE)


def to_rate(wave: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return wave
    from math import gcd

    from scipy.signal import resample_poly

    common = gcd(source_rate, target_rate)
    return resample_poly(wave, target_rate // common, source_rate // common).astype(np.float32)


def words_of(captioner: Captioner, result: CaptionResultLike) -> CaptionWords:
    segments = [
        {
            "start_s": round(float(seg.start_s), 3),
            "end_s": round(float(seg.end_s), 3),
            "caption": str(seg.caption),
        }
        for seg in result.segments or ()
    ]
    tags = machine_tags(result.tags)
    return CaptionWords(str(result.caption).strip(), tags, captioner.model_id, segments)


def caption_waves(
    captioner: Captioner, waves: Sequence[np.ndarray], metadata: Sequence[Mapping[str, Any]]
) -> list[CaptionWords]:
    """Caption waves already at `caption_rate(captioner)`."""
    results = captioner.caption(list(waves), list(metadata))
    if len(results) != len(waves):
        raise RuntimeError(f"the captioner returned {len(results)} results for {len(waves)} waves")
    return [words_of(captioner, result) for result in results]


def upload_metadata(filename: str, title: str) -> dict[str, str]:
    return {"title": title, "file_name": filename}


def caption_upload(
    captioner: Captioner | None,
    wave: np.ndarray,
    sample_rate: int,
    filename: str,
    title: str,
) -> CaptionWords | None:
    """The captioner's words for an upload's decoded audio, or None when there is no
    captioner or it failed (the upload is then written without a caption: it must not be
    lost to a captioner bug)."""
    if captioner is None:
        return None
    try:
        wave = to_rate(wave, sample_rate, caption_rate(captioner))
        return caption_waves(captioner, [wave], [upload_metadata(filename, title)])[0]
    except Exception:
        log.exception("captioning %s failed; it is written without a caption", filename)
        return None


# --- caption jobs --------------------------------------------------------------------------


@dataclass
class CaptionFollowUp:
    """How a scan queues caption jobs for the sounds it added: `enqueue(job_id, kind)`, how
    many sounds per job, and (when no captioner runs here) why none are queued."""

    enqueue: Callable[[str, str], None]
    batch_size: int = 16
    unavailable: str | None = None


def uncaptioned_in_library(catalog: Catalog, library_id: int) -> list[int]:
    """Sounds with a file in the library that no captioner has captioned yet."""
    with catalog.session() as session:
        ids = session.scalars(
            select(Sound.id)
            .join(Location, Location.sound_id == Sound.id)
            .where(Location.library_id == library_id, Sound.caption_model.is_(None))
            .distinct()
            .order_by(Sound.id)
        )
        return list(ids)


def plan_caption_jobs(
    catalog: Catalog, sound_ids: Sequence[int], batch_size: int, *, force: bool = False
) -> list[str]:
    """Queue-ready `caption` jobs (committed rows) for these sounds, `batch_size` per job,
    leaving out sounds an unfinished caption job already covers."""
    with catalog.session() as session:
        pending = _sounds_in_active_caption_jobs(session)
        todo = [i for i in dict.fromkeys(sound_ids) if i not in pending]
        jobs = [
            new_job(
                session,
                JobKind.caption.value,
                {"sound_ids": todo[start : start + batch_size], "force": force},
            ).id
            for start in range(0, len(todo), max(batch_size, 1))
        ]
    return jobs


def active_caption_job(session: Session, sound_id: int) -> Job | None:
    """An unfinished caption job that covers this sound, if any."""
    jobs = session.scalars(
        select(Job).where(Job.kind == JobKind.caption.value, Job.status.in_(ACTIVE))
    )
    for job in jobs:
        if sound_id in {int(i) for i in job.params.get("sound_ids", [])}:
            return job
    return None


def _sounds_in_active_caption_jobs(session: Session) -> set[int]:
    params = session.scalars(
        select(Job.params).where(Job.kind == JobKind.caption.value, Job.status.in_(ACTIVE))
    )
    return {int(i) for p in params for i in p.get("sound_ids", [])}


def queue_captions(catalog: Catalog, library_id: int, follow_up: CaptionFollowUp) -> dict[str, Any]:
    """After a scan: caption jobs for the library's uncaptioned sounds, sent to the queue."""
    if follow_up.unavailable:
        return {"skipped": follow_up.unavailable}
    sound_ids = uncaptioned_in_library(catalog, library_id)
    jobs = plan_caption_jobs(catalog, sound_ids, follow_up.batch_size)
    for job_id in jobs:
        follow_up.enqueue(job_id, JobKind.caption.value)
    return {"sounds": len(sound_ids), "jobs": jobs}


@dataclass
class _Todo:
    sound_id: int
    path: Path
    metadata: dict[str, str]


def caption_sounds(
    catalog: Catalog,
    captioner: Captioner | None,
    limits: DecodeLimits,
    run: JobRun,
    *,
    unavailable: str = "",
) -> dict[str, Any]:
    """The caption job: caption `run.params["sound_ids"]` and write the captioner's words
    where it may. With `force`, sounds this captioner already captioned are captioned again.

    A sound that vanished or whose file cannot be read is reported and skipped; when every
    sound fails, the job fails.
    """
    if captioner is None:
        raise JobFailed(f"no captioner here: {unavailable or 'see /api/health'}")
    sound_ids = [int(i) for i in run.params.get("sound_ids", [])]
    force = bool(run.params.get("force", False))
    if not sound_ids:
        raise JobFailed("the caption job names no sounds")
    rate = caption_rate(captioner)
    done: list[int] = []
    skipped: list[int] = []
    failed: list[dict[str, Any]] = []
    run.progress(0.0, f"captioning {len(sound_ids)} sounds")
    for start in range(0, len(sound_ids), DECODE_BATCH):
        batch = sound_ids[start : start + DECODE_BATCH]
        todo = _plan(catalog, batch, captioner.model_id, force, skipped, failed)
        waves, ready = [], []
        for item in todo:
            try:
                wave, _ = decode(item.path.read_bytes(), target_sr=rate, limits=limits,
                                 name=item.path.name)  # fmt: skip
            except (OSError, AudioError) as exc:
                failed.append({"sound_id": item.sound_id, "error": str(exc)})
                continue
            waves.append(wave)
            ready.append(item)
        if ready:
            words = caption_waves(captioner, waves, [item.metadata for item in ready])
            with catalog.session() as session:
                for item, said in zip(ready, words, strict=True):
                    sound = session.get(Sound, item.sound_id)
                    if sound is None:  # deleted while it was being captioned
                        skipped.append(item.sound_id)
                        continue
                    offer_caption(session, sound, said)
                    done.append(item.sound_id)
        finished = min(start + DECODE_BATCH, len(sound_ids))
        run.progress(finished / len(sound_ids), f"{finished} of {len(sound_ids)} sounds")
    if failed and not done and not skipped:
        raise JobFailed("; ".join(f"sound {f['sound_id']}: {f['error']}" for f in failed[:5]))
    return {
        "model_id": captioner.model_id,
        "captioned": done,
        "skipped": skipped,
        "failed": failed,
    }


def _plan(
    catalog: Catalog,
    sound_ids: Sequence[int],
    model_id: str,
    force: bool,
    skipped: list[int],
    failed: list[dict[str, Any]],
) -> list[_Todo]:
    todo = []
    with catalog.session() as session:
        roots = {lib.id: Path(lib.path) for lib in session.scalars(select(Library))}
        for sound_id in sound_ids:
            sound = session.get(Sound, sound_id)
            if sound is None or (not force and sound.caption_model == model_id):
                skipped.append(sound_id)
                continue
            location = _readable(sound.locations)
            if location is None:
                failed.append({"sound_id": sound_id, "error": "none of its files can be read"})
                continue
            path = Path(location.path)
            root = roots.get(location.library_id) if location.library_id else None
            todo.append(_Todo(sound_id, path, sound_metadata(sound.title, path, root)))
    return todo


def _readable(locations: Sequence[Location]) -> Location | None:
    for location in sorted(locations, key=lambda loc: (loc.library_id is None, loc.path)):
        if Path(location.path).is_file():
            return location
    return None


def sound_metadata(title: str, path: Path, root: Path | None) -> dict[str, str]:
    """What the captioner reads beside the audio: title, folder (inside the library) and
    file name, as a library's names are part of what a sound is."""
    folder = ""
    if root is not None:
        try:
            folder = "/".join(path.parent.relative_to(root).parts)
        except ValueError:
            folder = ""
    return {"title": title, "folder": folder, "file_name": path.name}
