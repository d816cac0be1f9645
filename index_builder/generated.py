"""Generated sounds: a `generate` job makes sounds from a description and the library's
nearest sounds, and each becomes a real sound, written like an upload.

1. The API checks the request (`GenerateRequest.check`), finds the prompt's nearest library
   sounds in the index (it owns the index; a worker never opens it) and keeps their ids in
   the job's params: the request, neighbours included, is fixed when it is accepted.
2. The job (on the `gpu` queue; a CPU worker takes it when no GPU worker runs) loads those
   neighbours' CLAP audio embeddings from the catalog and embeds their captions (or titles),
   then runs the generator once per sound (seeds `seed`, `seed + 1`, ...), reporting
   progress after every sampler step; a cancel stops it at the next step.
3. Every wave is stored as 16-bit WAV (content-addressed, like an upload), decoded and
   embedded as any file would be, captioned when a captioner runs, and written with source
   `generated`, its title the prompt and its provenance (`generations`: prompt, seed,
   settings, model ids, neighbour ids). All of a job's sounds and its success commit in one
   transaction: a cancelled or failed job leaves nothing behind.

The same bytes are the same sound: asking again for what was already generated (same
prompt, seed, settings and neighbours) returns the existing sound, marked `duplicate`.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audio import DecodeLimits
from core.catalog import Embedding, GenerationRecord, Sound, SoundSource
from core.db import Catalog
from core.jobs import JobFailed, JobRun
from core.store import FileStore
from core.words import offer_caption
from index_builder.captions import Captioner, caption_upload
from index_builder.embed import AudioEmbedder, Failed, decode_for, embed_decoded
from index_builder.uploads import discard_if_unused, sound_result
from index_builder.writer import FileOutcome, write_batch

if TYPE_CHECKING:
    from generative.generator.pipeline import Generation, Generator, Neighbours

log = logging.getLogger(__name__)

MIN_SECONDS, MAX_SECONDS = 1.0, 10.0
MAX_COUNT = 4
MAX_NEIGHBOURS = 10
MAX_PROMPT = 500
GUIDANCE_MODES = ("none", "text", "retrieval", "both")


@dataclass(frozen=True)
class GenerateRequest:
    """What a generation job makes, as kept in its params."""

    prompt: str
    seconds: float = 5.0
    count: int = 1
    seed: int = 0
    neighbours: int = 5  # k nearest library sounds to condition on; 0: no retrieval
    guidance: float | None = None  # classifier-free guidance scale (None: the checkpoint's)
    guidance_mode: str | None = None
    steps: int | None = None
    neighbour_ids: tuple[int, ...] = field(default_factory=tuple)  # found when accepted

    def check(self) -> GenerateRequest:
        """This request with its prompt stripped; ValueError names what is wrong."""
        prompt = " ".join(str(self.prompt or "").split())
        if not prompt:
            raise ValueError("prompt is empty: describe the sound to generate")
        if len(prompt) > MAX_PROMPT:
            raise ValueError(f"prompt is {len(prompt)} characters; at most {MAX_PROMPT}")
        if not (math.isfinite(self.seconds) and MIN_SECONDS <= self.seconds <= MAX_SECONDS):
            raise ValueError(f"seconds must be {MIN_SECONDS:g} to {MAX_SECONDS:g}")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be 1 to {MAX_COUNT}")
        if not 0 <= self.neighbours <= MAX_NEIGHBOURS:
            raise ValueError(f"neighbours must be 0 to {MAX_NEIGHBOURS}")
        if not 0 <= self.seed < 2**31:
            raise ValueError("seed must be 0 to 2147483647")
        if self.guidance is not None and not (
            math.isfinite(self.guidance) and 0 <= self.guidance <= 20
        ):
            raise ValueError("guidance must be 0 to 20")
        if self.guidance_mode is not None and self.guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance_mode must be one of {', '.join(GUIDANCE_MODES)}")
        if self.steps is not None and not 1 <= self.steps <= 200:
            raise ValueError("steps must be 1 to 200")
        return GenerateRequest(**{**asdict(self), "prompt": prompt,
                                  "neighbour_ids": tuple(self.neighbour_ids)})  # fmt: skip

    def as_params(self) -> dict[str, Any]:
        return {**asdict(self), "neighbour_ids": list(self.neighbour_ids)}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> GenerateRequest:
        try:
            request = cls(**{**params, "neighbour_ids": tuple(params.get("neighbour_ids", ()))})
            return request.check()
        except (TypeError, ValueError) as exc:
            raise JobFailed(f"the generation job's parameters are unusable: {exc}") from exc


def load_neighbours(
    session: Session, clap: Any, model_id: str, sound_ids: Sequence[int]
) -> Neighbours | None:
    """The neighbours' CLAP audio embeddings (under `model_id`) and the CLAP text embeddings of
    their captions or titles, in the order given; sounds deleted since are skipped."""
    from generative.generator.pipeline import Neighbours

    if not sound_ids:
        return None
    rows = session.execute(
        select(Sound.id, Sound.caption, Sound.title, Embedding.vector)
        .join(Embedding, Embedding.sound_id == Sound.id)
        .where(Sound.id.in_(list(sound_ids)), Embedding.model_id == model_id)
    ).all()
    found = {row.id: row for row in rows}
    kept = [found[i] for i in sound_ids if i in found]
    if not kept:
        return None
    words = [(row.caption or row.title or "").strip() for row in kept]
    return Neighbours(
        audio=np.stack([np.frombuffer(row.vector, dtype=np.float32) for row in kept]),
        text=clap.embed_text([w or " " for w in words]),
        has_caption=np.asarray([bool(w) for w in words]),
        ids=[row.id for row in kept],
    )


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def generate_sounds(
    catalog: Catalog,
    model: AudioEmbedder,
    store: FileStore,
    limits: DecodeLimits,
    run: JobRun,
    generator: Generator | None,
    captioner: Captioner | None = None,
    unavailable: str = "no generator",
) -> dict[str, Any]:
    """The generation job; returns its result (`sounds`: one entry per sound made)."""
    if generator is None:
        raise JobFailed(f"this worker cannot generate: {unavailable}")
    request = GenerateRequest.from_params(run.params)
    clap = generator.clap
    if clap is None:
        raise JobFailed("the generator has no CLAP to read the prompt with")
    run.progress(0.01, "reading the prompt and the neighbours")
    with catalog.session() as session:
        neighbours = load_neighbours(session, clap, model.model_id, request.neighbour_ids)
    query = clap.embed_text([request.prompt])[0]
    made: list[Generation] = []
    for i in range(request.count):

        def on_step(step: int, steps: int, i: int = i) -> None:
            done = (i + step / max(1, steps)) / request.count
            said = f"sound {i + 1} of {request.count}: step {step}/{steps}"
            run.progress(0.02 + 0.85 * done, said)

        made.append(
            generator(request.prompt, seconds=request.seconds, neighbours=neighbours,
                      seed=request.seed + i, steps=request.steps, guidance=request.guidance,
                      guidance_mode=request.guidance_mode, text_embedding=query,
                      on_step=on_step)
        )  # fmt: skip
    run.progress(0.9, "storing, embedding and writing the sounds")
    stored: list[Path] = []
    try:
        return _write_generated(
            catalog, model, store, limits, run, request, made, neighbours, generator, captioner,
            stored,
        )  # fmt: skip
    except BaseException:
        for path in stored:
            discard_if_unused(catalog, store, path, exclude_job=run.id)
        raise


def _write_generated(
    catalog: Catalog, model: AudioEmbedder, store: FileStore, limits: DecodeLimits,
    run: JobRun, request: GenerateRequest, made: Sequence[Generation],
    neighbours: Neighbours | None, generator: Generator, captioner: Captioner | None,
    stored: list[Path],
) -> dict[str, Any]:  # fmt: skip
    outcomes, words = [], []
    for i, generation in enumerate(made):
        data = wav_bytes(generation.wave, generation.sample_rate)
        name = f"generated-{request.seed + i}.wav"
        staged = store.stage(io.BytesIO(data))
        path = store.commit(staged, "wav")
        stored.append(path)
        decoded = decode_for(model, data, name, limits)
        if isinstance(decoded, Failed):  # our own WAV: a failure here is a bug, said plainly
            raise JobFailed(f"a generated sound could not be read back: {decoded.message}")
        stat = path.stat()
        outcomes.append(
            FileOutcome(path=str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                        library_id=None, content_hash=staged.content_hash,
                        result=embed_decoded(model, [decoded])[0], title=request.prompt,
                        source=SoundSource.generated.value)
        )  # fmt: skip
        words.append(
            caption_upload(captioner, decoded.wave, model.sample_rate, name, request.prompt)
        )
    models = {"generator": generator.model_id, "clap": model.model_id}
    neighbour_ids = [] if neighbours is None else [int(i) for i in neighbours.ids]
    with catalog.session() as session:
        write_batch(session, outcomes, model.model_id)
        sounds = []
        for outcome, generation, said in zip(outcomes, made, words, strict=True):
            sound = session.scalar(select(Sound).where(Sound.content_hash == outcome.content_hash))
            assert sound is not None
            known = session.scalar(
                select(GenerationRecord).where(GenerationRecord.sound_id == sound.id)
            )
            if said is not None:
                offer_caption(session, sound, said, index=False)
            if known is None:
                session.add(
                    GenerationRecord(sound_id=sound.id, job_id=run.id, prompt=request.prompt,
                                     seed=generation.seed, settings=generation.settings,
                                     models=models, neighbour_ids=neighbour_ids)
                )  # fmt: skip
            sounds.append({**sound_result(session, sound, duplicate=known is not None),
                           "seed": generation.seed})  # fmt: skip
        # Every sound is searchable once the index syncer has applied this outbox entry.
        outbox_seq = max(entry["outbox_seq"] for entry in sounds)
        result = {"sounds": sounds, "neighbour_ids": neighbour_ids, "models": models,
                  "settings": made[0].settings, "outbox_seq": outbox_seq}  # fmt: skip
        run.succeed_in(session, result, f"generated {len(sounds)} sound(s)")
    return result
