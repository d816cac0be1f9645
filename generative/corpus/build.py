"""Build the Foley corpus: plan every clip, render them in a process pool, write the manifest.

Everything a clip is (its parameters, captions, split, and the random draws its audio is
made from) follows from (seed, clip index) alone, so the pool's scheduling cannot change
the result: the same seed gives a byte-identical manifest.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from generative.corpus import field, midi, procedural, recorded, speech
from generative.corpus.catalogue import Catalogue, load_catalogue
from generative.corpus.debian import default_cache, fetch_packages, unpacked
from generative.corpus.effects import finish, write_flac
from generative.corpus.manifest import (
    IN_DOMAIN,
    MANIFEST,
    Clip,
    CorpusStats,
    summarise,
    write_outputs,
)
from generative.corpus.recipes import Draft, Recipe, zipf_counts
from generative.corpus.sources import DECODERS, ensure_sources

__all__ = ["CorpusStats", "build_corpus", "ensure_sources", "plan_corpus"]

logger = logging.getLogger(__name__)

WORKERS = 2
_MARKER = ".build-in-progress"
_MIDI_BATCH = 40
_CHUNK = 8
_SPLIT_FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))


@dataclass(frozen=True)
class Group:
    """One slice of the corpus: a source's recipes, a clip budget and its long tail."""

    name: str
    source: str
    recipes: Callable[[], list[Recipe]]
    draft: Callable[[str, np.random.Generator], Draft]
    exponent: float
    minimum: int
    # Clips per recipe given the budget; long-tailed (zipf_counts) when None.
    counts: Callable[[list[Recipe], int], list[int]] | None = None


GROUPS = (
    Group("procedural", "procedural", procedural.recipes, procedural.draft, 0.9, 20),
    Group("mixture", "procedural", procedural.mixture_recipes, procedural.draft_mixture, 1.0, 0),
    Group("speech", "speech", speech.recipes, speech.draft, 0.8, 30),
    Group("midi", "midi", midi.recipes, midi.draft, 0.8, 15),
    Group("recorded", "recorded", recorded.recipes, recorded.draft, 0.7, 3),
)

# Clips per group. `small` still touches every source and split, for tests; it needs none
# of the large recorded Debian packages ("field" effects and "field-speech").
SIZES: dict[str, dict[str, int]] = {
    "small": {"procedural": 110, "mixture": 8, "speech": 40, "midi": 48, "recorded": 34},
    "default": {
        "procedural": 11500,
        "mixture": 1300,
        "speech": 4200,
        "midi": 5000,
        "recorded": 1800,
        "field": 9000,
        "field-speech": 1500,
    },
}

# `demo`: only the test and ood clips of `default`, for a library no model trained on.
DEMO = "demo"
DEMO_SPLITS = ("test", "ood", "ood-real")

OOD_LABELS = field.OOD_LABELS


def field_groups(catalogue: Catalogue) -> tuple[Group, ...]:
    """The Debian packages' recordings: effects (as recorded, augmented, mixed) and speech."""
    return (
        Group(
            "field",
            "recorded",
            functools.partial(field.effect_recipes, catalogue),
            functools.partial(field.draft_effect, catalogue),
            0.0,
            1,
            functools.partial(field.effect_counts, catalogue),
        ),
        Group(
            "field-speech",
            "recorded-speech",
            functools.partial(field.speech_recipes, catalogue),
            functools.partial(field.draft_speech, catalogue),
            0.0,
            0,
            field.even_counts,
        ),
    )


class CorpusExistsError(FileExistsError):
    """The output folder already holds a finished corpus or unrelated files."""


def build_corpus(
    out: Path,
    size: str = "default",
    seed: int = 0,
    progress: bool = True,
    install: bool = True,
    overwrite: bool = False,
    workers: int = WORKERS,
    debian_cache: Path | None = None,
) -> CorpusStats:
    """Build the corpus into `out`; refuse a finished one unless `overwrite`.

    The recorded Debian packages are fetched into `debian_cache` (default
    ~/.cache/foley/debian, or $FOLEY_DEBIAN_CACHE) when the size uses them; without
    `install`, only the packages already there are used.
    """
    if size not in SIZES and size != DEMO:
        raise ValueError(f"unknown corpus size {size!r}; choose one of {sorted(SIZES) + [DEMO]}")
    started = time.monotonic()
    ensure_sources(install)
    out = Path(out)
    cache = Path(debian_cache) if debian_cache else default_cache()
    catalogue = _field_catalogue(size, cache, install, workers)
    _prepare_out(out, overwrite)
    clips = plan_corpus(size, seed, catalogue)
    logger.info("planned %d clips (size %s, seed %d) into %s", len(clips), size, seed, out)
    n_samples = _render_all(out, clips, seed, progress, workers, cache)
    entries = [clip.entry(n_samples[clip.index]) for clip in clips]
    _check_ood(entries)
    stats = summarise(entries, out, size, seed)
    stats.build_seconds = round(time.monotonic() - started, 1)
    write_outputs(out, entries, stats)
    (out / _MARKER).unlink(missing_ok=True)
    logger.info(
        "built %d clips, %.2f hours, in %.0f s", stats.clips, stats.hours, stats.build_seconds
    )
    return stats


def _field_catalogue(size: str, cache: Path, install: bool, workers: int) -> Catalogue | None:
    wanted = SIZES["default" if size == DEMO else size]
    if not (wanted.get("field") or wanted.get("field-speech")):
        return None
    if install:  # without it, files only ffmpeg decodes are counted as undecodable
        ensure_sources(True, DECODERS)
    packages = fetch_packages(cache) if install else unpacked(cache)
    return load_catalogue(cache, packages, workers)


def plan_corpus(size: str, seed: int, catalogue: Catalogue | None = None) -> list[Clip]:
    """Every clip's description, split and file name, without rendering any audio."""
    if size == DEMO:
        # Exactly the default corpus's held-out clips: what a demo library is made from.
        return [c for c in plan_corpus("default", seed, catalogue) if c.split in DEMO_SPLITS]
    budget = SIZES[size]
    clips: list[Clip] = []
    names: Counter[tuple[str, str]] = Counter()
    groups = GROUPS + (field_groups(catalogue) if catalogue else ())
    for group in groups:
        if not budget.get(group.name):
            continue
        recipes, minimum = _recipes_for(group, budget[group.name], size)
        if group.counts is not None:
            counts = group.counts(recipes, budget[group.name])
        else:
            counts = zipf_counts(recipes, budget[group.name], group.name, group.exponent, minimum)
        for recipe, count in zip(recipes, counts, strict=True):
            for _ in range(count):
                index = len(clips)
                rng = np.random.default_rng([seed, index, 0])
                draft = group.draft(recipe.key, rng)
                split = draft.split or (
                    "ood" if recipe.ood else _split(np.random.default_rng([seed, index, 2]))
                )
                names[(draft.folder, draft.stem)] += 1
                file_name = f"{draft.stem}_{names[(draft.folder, draft.stem)]:02d}.flac"
                clips.append(Clip(index, group.source, draft, split, file_name))
    return clips


def _recipes_for(group: Group, total: int, size: str) -> tuple[list[Recipe], int]:
    """All recipes with the group's minimum; a small build keeps an even spread of them."""
    recipes = group.recipes()
    if size != "small" or group.counts is not None:
        return recipes, group.minimum
    if len(recipes) > total // 2:
        recipes = recipes[:: math.ceil(len(recipes) / max(total // 2, 1))]
    return recipes, min(1, group.minimum) if group.minimum else 0


def _split(rng: np.random.Generator) -> str:
    draw = rng.uniform()
    for name, fraction in _SPLIT_FRACTIONS:
        if draw < fraction:
            return name
        draw -= fraction
    return _SPLIT_FRACTIONS[-1][0]


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a finished corpus or a foreign folder; clear a half-written build."""
    if out.exists() and any(out.iterdir()):
        finished = (out / MANIFEST).exists() and not (out / _MARKER).exists()
        if finished and not overwrite:
            raise CorpusExistsError(
                f"{out} already holds a finished corpus; choose another --out or delete it"
            )
        if not finished and not (out / _MARKER).exists():
            raise CorpusExistsError(f"{out} is not empty and is not a corpus; choose another --out")
        logger.warning("clearing the previous build in %s", out)
        for name in ("audio", MANIFEST, "classes.json", "stats.json", "stats.md"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("a corpus build started here and has not finished\n")


Job = tuple[str, int, list[Clip], str]


def _jobs(out: Path, clips: list[Clip], seed: int, cache: Path) -> Iterator[Job]:
    """MIDI batches first (the longest jobs), then small chunks of the rest."""
    music = [c for c in clips if c.source == "midi"]
    other = [c for c in clips if c.source != "midi"]
    for i in range(0, len(music), _MIDI_BATCH):
        yield str(out), seed, music[i : i + _MIDI_BATCH], str(cache)
    for i in range(0, len(other), _CHUNK):
        yield str(out), seed, other[i : i + _CHUNK], str(cache)


def _render_all(
    out: Path, clips: list[Clip], seed: int, progress: bool, workers: int, cache: Path
) -> dict[int, int]:
    n_samples: dict[int, int] = {}
    bar = tqdm(total=len(clips), unit="clip", desc="corpus", disable=not progress)
    # spawn: workers start clean instead of inheriting the caller's threads and state.
    context = multiprocessing.get_context("spawn")
    with bar, context.Pool(workers) as pool:
        for done in pool.imap_unordered(render_job, _jobs(out, clips, seed, cache)):
            n_samples.update(done)
            bar.update(len(done))
    missing = len(clips) - len(n_samples)
    if missing:
        raise RuntimeError(f"{missing} clips were not rendered")
    return n_samples


def render_job(job: Job) -> list[tuple[int, int]]:
    """Render and write a batch of clips; returns (clip index, sample count) pairs."""
    out, seed, clips, cache = job
    rngs = [np.random.default_rng([seed, c.index, 1]) for c in clips]
    if clips[0].source == "midi":
        dry = midi.render_batch([(c.draft.params, r) for c, r in zip(clips, rngs, strict=True)])
    else:
        dry = [
            field.render(c.draft.params, r, Path(cache))
            if "audio" in c.draft.params
            else _RENDER[c.source](c.draft.params, r)
            for c, r in zip(clips, rngs, strict=True)
        ]
    done = []
    for clip, audio, rng in zip(clips, dry, rngs, strict=True):
        wet = finish(audio, clip.draft.params, rng)
        write_flac(Path(out) / clip.path, wet)
        done.append((clip.index, len(wet)))
    return done


_RENDER = {"procedural": procedural.render, "speech": speech.render, "recorded": recorded.render}


def _check_ood(entries: list[dict]) -> None:
    """The held-out classes must never leak into train, val or test."""
    leaked = {
        label
        for e in entries
        if e["split"] in IN_DOMAIN
        for label in e["labels"]
        if label in OOD_LABELS
    }
    if leaked:
        raise RuntimeError(f"out-of-domain classes leaked into train/val/test: {sorted(leaked)}")
