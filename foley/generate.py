"""`foley generate`: a new sound from a description and the library's nearest sounds."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import Settings
from foley.common import CommandError

if TYPE_CHECKING:
    from generative.clap.model import ClapModel
    from generative.generator.pipeline import Neighbours

log = logging.getLogger(__name__)


def _check(args: argparse.Namespace) -> str:
    """Bad arguments fail before any model loads."""
    from generative.generator.config import MAX_SECONDS, MIN_SECONDS

    prompt = args.prompt.strip()
    if not prompt:
        raise CommandError("the prompt is empty: describe the sound to generate")
    if not MIN_SECONDS <= args.seconds <= MAX_SECONDS:
        raise CommandError(
            f"--seconds must be between {MIN_SECONDS:g} and {MAX_SECONDS:g}, got {args.seconds:g}"
        )
    if not 1 <= args.neighbours <= 10:
        raise CommandError(f"--neighbours must be between 1 and 10, got {args.neighbours}")
    if args.guidance is not None and args.guidance < 0:
        raise CommandError(f"--guidance must be 0 or more, got {args.guidance:g}")
    if Path(args.out).suffix.lower() != ".wav":
        raise CommandError(f"--out must name a .wav file, got {args.out}")
    if args.spectrogram and Path(args.spectrogram).suffix.lower() != ".png":
        raise CommandError(f"--spectrogram must name a .png file, got {args.spectrogram}")
    return prompt


def library_neighbours(
    settings: Settings, clap: ClapModel, query: np.ndarray, k: int
) -> Neighbours | None:
    """The k sounds of the user's library nearest to the query by CLAP, with their audio
    embeddings and the text embeddings of their captions (or titles); None without a library
    or when a running server holds the index."""
    from sqlalchemy import select

    from core.catalog import Embedding
    from core.vector_index import IndexLockedError
    from generative.generator.pipeline import Neighbours
    from search.pipeline import search_vector
    from search.service import Foley

    embedded = settings.database_url is None
    if embedded and not (settings.data_dir / "catalog.sqlite3").is_file():
        print("no library indexed yet: generating without retrieval")
        return None
    try:
        foley = Foley.open(settings, clap=clap)
    except IndexLockedError:
        print("the library's index is held by a running server: generating without retrieval")
        return None
    try:
        foley.sync()
        hits = search_vector(foley, query, k)
        with foley.catalog.session() as session:
            rows = session.scalars(
                select(Embedding).where(
                    Embedding.sound_id.in_([h.id for h in hits]),
                    Embedding.model_id == clap.model_id,
                )
            )
            vectors = {row.sound_id: row.as_array() for row in rows}
    finally:
        foley.close()
    hits = [h for h in hits if h.id in vectors]
    if not hits:
        print("the library has no sounds embedded by this CLAP: generating without retrieval")
        return None
    words = [(h.caption or h.title or "").strip() for h in hits]
    text = clap.embed_text([w or " " for w in words])
    for rank, (hit, said) in enumerate(zip(hits, words, strict=True), 1):
        print(f"neighbour {rank}: sound {hit.id} ({hit.score:.3f}) {said!r}")
    return Neighbours(
        audio=np.stack([vectors[h.id] for h in hits]),
        text=text,
        has_caption=np.asarray([bool(w) for w in words]),
        ids=[h.id for h in hits],
    )


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    import soundfile as sf

    from generative.generator.pipeline import GenerationError, load_generator
    from generative.registry import get_clap

    prompt = _check(args)
    clap = get_clap(settings)
    generator = load_generator(settings.generator_checkpoint, clap=clap, device=settings.device)
    query = clap.embed_text([prompt])[0]
    neighbours = (
        None if args.no_retrieval else library_neighbours(settings, clap, query, args.neighbours)
    )
    extra: dict[str, Any] = {}
    if args.steps:
        extra["steps"] = args.steps
    if args.guidance_mode:
        extra["guidance_mode"] = args.guidance_mode
    try:
        result = generator(
            prompt,
            seconds=args.seconds,
            neighbours=neighbours,
            seed=args.seed,
            guidance=args.guidance,
            text_embedding=query,
            **extra,
        )
    except GenerationError as exc:
        raise CommandError(str(exc)) from exc
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.wav")
    sf.write(str(tmp), result.wave, result.sample_rate, subtype="PCM_16")
    tmp.replace(out)
    if args.spectrogram:
        from generative.generator.picture import spectrogram_sheet

        spectrogram_sheet([(prompt, result.mel)], Path(args.spectrogram))
        print(f"wrote {args.spectrogram}: the generated log-mel")
    taken = ", ".join(f"{name} {s:.2f} s" for name, s in result.seconds_taken.items())
    print(f"wrote {out}: {len(result.wave) / result.sample_rate:.1f} s ({taken})")
    return 0


def add_generate_commands(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate a sound from a description")
    p.add_argument("prompt", help='what it should sound like, e.g. "rain on a tin roof"')
    p.add_argument("--seconds", type=float, default=5.0, help="length, 1-10 s")
    p.add_argument("--out", required=True, help="the .wav file to write")
    p.add_argument("--no-retrieval", action="store_true", help="ignore the library")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--neighbours", type=int, default=5, help="library sounds to condition on")
    p.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the checkpoint's)"
    )
    p.add_argument(
        "--guidance-mode",
        choices=["none", "text", "retrieval", "both"],
        help="which conditions guidance pushes towards (default: the checkpoint's)",
    )
    p.add_argument("--steps", type=int, help="sampler steps (default: the checkpoint's)")
    p.add_argument("--spectrogram", help="also draw the generated log-mel into this .png")
    p.set_defaults(func=cmd_generate)
