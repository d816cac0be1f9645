"""Clips made from the Debian packages' recordings: as recorded, augmented, or mixed.

Every variant of one recording keeps the recording's group, and a group's split follows
from its name alone, so step1..step5 and every augmented or mixed derivative of one file
land in the same split. Whole packages are held out as `ood-real`: recorded sound no model
trains, tunes or picks a checkpoint on.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from generative.corpus import procedural, recorded, speech, synth
from generative.corpus.captions import Noun, Subject, compose, with_article
from generative.corpus.catalogue import Catalogue, Segment, load_decoded
from generative.corpus.effects import (
    SAMPLE_RATE,
    highpass,
    lowpass,
    sample_scene,
    samples,
)
from generative.corpus.recipes import Draft, Recipe

# Held out whole. Widelands (animals, farm and forest work, crafts), Scorched 3D (vehicles,
# aircraft, weather, animals, weapons) and LinCity-NG (traffic, trains, farms, crowds,
# industry) are varied and everyday, and each comes from its own recordists.
OOD_REAL_PACKAGES = ("widelands-data", "scorched3d-data", "lincity-ng-data")
OOD_LABELS = frozenset((*recorded.OOD_LABELS, *speech.OOD_LABELS, *procedural.OOD_CLASSES))
_SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
_HELD_OUT = ("ood", "ood-real")
_VARIANTS = ("plain", "augmented", "mixture")
# Backgrounds: recorded ambiences by label, else a synthesized one.
_AMBIENCE = frozenset(
    "rain wind crickets river waterfall creek ocean waves stream forest traffic ambience "
    "daytime night birds water fire storm cicadas city swamp".split()
)
_SYNTH_BACKGROUNDS = ("rain", "wind", "stream", "crickets", "ocean waves", "fire crackle")
_UNCOUNTABLE = frozenset(
    "rain wind water fire thunder traffic ambience crickets cicadas machinery gunfire "
    "applause speech lava wood gravel snow ice mud digging chopping sawing hammering "
    "harvesting daytime night birds waves drips".split()
)
# Other words for a head noun; "{x}" takes the name's other words ("footsteps on gravel").
_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "footstep": ("footsteps on {x}", "someone walking on {x}", "footsteps", "someone walking"),
    "explosion": ("{x} blast", "{x} detonation", "blast", "detonation"),
    "helicopter": ("chopper", "helicopter rotor"),
    "crickets": ("chirping crickets", "insects at night"),
    "whoosh": ("swoosh", "swish through the air"),
    "impact": ("{x} thud", "{x} hit", "thud", "hit"),
    "rain": ("rainfall", "falling rain"),
    "wind": ("{x} blowing wind", "blowing wind", "gusts of wind"),
    "water": ("{x} running water", "running water", "flowing water"),
    "fire": ("{x} crackling fire", "crackling fire", "flames"),
    "engine": ("{x} motor", "motor", "running engine"),
    "crowd": ("{x} crowd noise", "crowd of people", "crowd noise"),
    "door": ("{x} door", "door"),
}
_MAX_SECONDS = 10.0


def split_of(segment: Segment) -> str:
    """The group's split: ood-real packages, held-out classes, else 80/10/10 by group."""
    if segment.package in OOD_REAL_PACKAGES:
        return "ood-real"
    if set(segment.labels) & OOD_LABELS:
        return "ood"
    draw = zlib.crc32(segment.group.encode()) / 0xFFFFFFFF
    for name, fraction in _SPLITS:
        if draw < fraction:
            return name
        draw -= fraction
    return _SPLITS[-1][0]


def effect_recipes(catalogue: Catalogue) -> list[Recipe]:
    keys = sorted(k for k, s in catalogue.segments.items() if s.kind == "effect")
    return [Recipe(k, split_of(catalogue.segments[k]) in _HELD_OUT) for k in keys]


def speech_recipes(catalogue: Catalogue) -> list[Recipe]:
    keys = sorted(k for k, s in catalogue.segments.items() if s.kind == "speech")
    return [Recipe(k, split_of(catalogue.segments[k]) in _HELD_OUT) for k in keys]


def effect_counts(catalogue: Catalogue, recipes: list[Recipe], total: int) -> list[int]:
    """ood-real recordings once each, as recorded; the others share the rest evenly."""
    held = [catalogue.segments[r.key].package in OOD_REAL_PACKAGES for r in recipes]
    trainable = len(recipes) - sum(held)
    spare = max(total - sum(held), trainable)
    base, extra = divmod(spare, max(trainable, 1))
    counts, seen = [], 0
    for is_held in held:
        if is_held:
            counts.append(1)
        else:
            counts.append(base + (1 if seen < extra else 0))
            seen += 1
    return counts


def even_counts(recipes: list[Recipe], total: int) -> list[int]:
    base, extra = divmod(total, max(len(recipes), 1))
    return [base + (1 if i < extra else 0) for i in range(len(recipes))]


def draft_effect(catalogue: Catalogue, key: str, rng: np.random.Generator) -> Draft:
    seg = catalogue.segments[key]
    split = split_of(seg)
    backgrounds = _backgrounds(catalogue, seg, split)
    variant = "plain"
    if split != "ood-real":
        variant = str(rng.choice(_VARIANTS, p=[0.4, 0.3, 0.3]))
    params: dict[str, Any] = {**_source_params(seg), "variant": variant}
    params["gain_db"] = round(float(rng.uniform(-8.0, 4.0)), 1) if variant != "plain" else 0.0
    params["lead_s"] = round(float(rng.uniform(0.0, 0.8 if variant != "plain" else 0.2)), 2)
    params["eq"] = str(rng.choice(["none", "dark", "bright"])) if variant != "plain" else "none"
    scene = sample_scene(rng)
    if variant == "plain":
        scene.update(room="none", distance="medium", background="none")
    params.update(scene)
    params["loudness"] = _loudness(seg.level_db + params["gain_db"])
    subject_nouns = _nouns(seg)
    labels = list(seg.labels)
    if variant == "mixture":
        scene_bg = _draw_background(backgrounds, rng)
        params.update(scene_bg)
        params["background"] = "none"
        params["snr_db"] = round(float(rng.uniform(3.0, 15.0)), 1)
        bg_text = scene_bg["background_phrase"]
        labels += [scene_bg["background_label"]]
        a = subject_nouns[0]
        subject_nouns = (
            Noun(f"{a.text}, {bg_text} in the background", a.countable),
            Noun(f"{a.text} over {bg_text}", a.countable),
            Noun(f"{bg_text} with {with_article(a)}", False),
        )
    captions = compose(Subject(subject_nouns, _extras(seg)), _words(seg, params), rng)
    title = seg.phrase.capitalize()
    stem = "_".join(seg.phrase.split()[:5]) or "sound"
    folder = "Recorded/" + (seg.context.title() if seg.context else seg.package)
    meta = _meta(seg)
    return Draft(labels, params, captions, stem, folder, title, split=split, meta=meta)


def draft_speech(catalogue: Catalogue, key: str, rng: np.random.Generator) -> Draft:
    seg = catalogue.segments[key]
    language = seg.labels[1].capitalize()
    params: dict[str, Any] = {**_source_params(seg), "variant": "plain", "language": seg.labels[1]}
    params["voice"] = seg.voice
    params["lead_s"] = round(float(rng.uniform(0.05, 0.3)), 2)
    params["gain_db"] = 0.0
    params["eq"] = "none"
    params.update(sample_scene(rng))
    params["loudness"] = _loudness(seg.level_db)
    what = "a single word" if seg.package == "qabcs-data" else "a short phrase"
    who = seg.voice or "person"
    nouns = (
        Noun(f"{who} saying {what} in {language}"),
        Noun(f"{who} speaking {language}"),
        Noun(f"{language} speech from {with_article(Noun(who))}", False),
    )
    extras = (f'{with_article(Noun(who))} saying "{seg.text}" in {language}',)
    words = {k: params[k] for k in ("loudness", "room", "distance", "background")}
    captions = compose(Subject(nouns, extras), words, rng)
    stem = f"{seg.labels[1]}_{who}_" + "_".join(_slug(seg.text).split("_")[:4])
    return Draft(
        list(seg.labels),
        params,
        captions,
        stem,
        f"Recorded/Speech/{language}",
        seg.text[:80],
        split=split_of(seg),
        meta={**_meta(seg), "text": seg.text},
    )


def render(params: dict[str, Any], rng: np.random.Generator, cache: Path) -> np.ndarray:
    x = _segment_audio(cache, params["audio"], params["start_s"], params["length_s"])
    if params["eq"] == "dark":
        x = lowpass(x, float(rng.uniform(1500.0, 4000.0)))
    elif params["eq"] == "bright":
        x = x + 0.8 * highpass(x, float(rng.uniform(1500.0, 3000.0)))
    x = np.concatenate([np.zeros(samples(params["lead_s"])), x])[: samples(_MAX_SECONDS)]
    if params["variant"] == "mixture":
        bg = _background_audio(params, len(x), rng, cache)
        rms_x, rms_bg = _rms(x), _rms(bg)
        x = x + bg * rms_x / (rms_bg + 1e-12) * 10.0 ** (-params["snr_db"] / 20.0)
    return x


def _segment_audio(cache: Path, audio: str, start_s: float, length_s: float) -> np.ndarray:
    whole = load_decoded(str(cache), audio)
    start = int(start_s * SAMPLE_RATE)
    return np.array(whole[start : start + samples(length_s)], dtype=np.float64)


def _background_audio(
    params: dict[str, Any], n: int, rng: np.random.Generator, cache: Path
) -> np.ndarray:
    if "background_audio" in params:
        bg = _segment_audio(
            cache, params["background_audio"], params["background_start_s"], _MAX_SECONDS
        )
        reps = int(np.ceil(n / max(len(bg), 1)))
        return np.tile(bg, reps)[:n]
    return procedural.BY_NAME[params["background_label"]].synth(n, synth.Knobs(), rng)[:n]


def _backgrounds(catalogue: Catalogue, seg: Segment, split: str) -> list[Segment]:
    """Recorded ambiences of the same split, from other groups: no leak across splits."""
    return [
        s
        for s in _ambiences(catalogue)
        if s.group != seg.group and split_of(s) == split and s.length_s >= 2.0
    ]


_AMBIENCE_CACHE: dict[int, list[Segment]] = {}


def _ambiences(catalogue: Catalogue) -> list[Segment]:
    found = _AMBIENCE_CACHE.get(id(catalogue))
    if found is None:
        found = [
            catalogue.segments[k]
            for k in sorted(catalogue.segments)
            if catalogue.segments[k].kind == "effect"
            and catalogue.segments[k].labels[0] in _AMBIENCE
            and not set(catalogue.segments[k].labels) & OOD_LABELS
        ]
        _AMBIENCE_CACHE[id(catalogue)] = found
    return found


def _draw_background(backgrounds: list[Segment], rng: np.random.Generator) -> dict[str, Any]:
    if backgrounds and rng.uniform() < 0.6:
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        return {
            "background_label": bg.labels[0],
            "background_phrase": bg.phrase,
            "background_audio": bg.audio,
            "background_start_s": bg.start_s,
            "background_recording": f"{bg.package}/{bg.path}",
        }
    name = str(rng.choice(_SYNTH_BACKGROUNDS))
    noun = procedural.BY_NAME[name].nouns[0]
    return {"background_label": name, "background_phrase": noun.text}


def _source_params(seg: Segment) -> dict[str, Any]:
    return {
        "package": seg.package,
        "recording": seg.path,
        "audio": seg.audio,
        "start_s": seg.start_s,
        "length_s": seg.length_s,
        "group": seg.group,
    }


def _meta(seg: Segment) -> dict[str, Any]:
    return {
        "original_path": seg.path,
        "package": seg.package,
        "package_version": seg.version,
        "licence": seg.licence,
        "group": seg.group,
        "segment_start_s": seg.start_s,
    }


def _nouns(seg: Segment) -> tuple[Noun, ...]:
    head = seg.labels[0]
    countable = head not in _UNCOUNTABLE
    nouns = [Noun(seg.phrase, countable)]
    rest = " ".join(w for w in seg.phrase.split() if w != head)
    templates = _PARAPHRASES.get(head, ())
    if rest and any("{x}" in t for t in templates):
        phrases = [t.format(x=rest) for t in templates if "{x}" in t]
    elif rest:
        phrases = [f"{rest} {t}" for t in templates]
    else:
        phrases = [t for t in templates if "{x}" not in t]
    for phrase in phrases:
        nouns.append(Noun(phrase, countable and not phrase.split()[0].endswith("s")))
    place = seg.context.split("/")[-1]
    if place and place not in seg.phrase and head not in place:
        nouns.append(Noun(f"{seg.phrase} ({place})", countable))
    return tuple(dict.fromkeys(nouns))


def _extras(seg: Segment) -> tuple[str, ...]:
    extras = []
    if seg.context:
        extras.append(f"{seg.phrase}, from a library folder of {seg.context.replace('/', ', ')}")
    if seg.pattern:
        extras.append(f"{seg.pattern} {seg.phrase}")
    return tuple(extras)


def _words(seg: Segment, params: dict[str, Any]) -> dict[str, str]:
    words = {k: params[k] for k in ("loudness", "room", "distance", "background")}
    length = min(seg.length_s, _MAX_SECONDS)
    words["duration"] = "short" if length < 1.0 else "long" if length > 6.0 else "medium"
    words["pitch"] = (
        "low" if seg.centroid_hz < 500 else "high" if seg.centroid_hz > 3500 else "medium"
    )
    if seg.pattern:
        words["pattern"] = seg.pattern
    return words


def _loudness(level_db: float) -> str:
    return "quiet" if level_db < -30.0 else "loud" if level_db > -14.0 else "medium"


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
