"""General MIDI source: instruments, drum patterns and GM sound effects through fluidsynth.

Clips are written into one MIDI file per batch, spaced by silence, rendered by a single
fluidsynth run (loading the 140 MB soundfont once per batch, not once per clip) and cut
back into clips at their known start times.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from generative.corpus.captions import Noun, Subject, compose
from generative.corpus.effects import SAMPLE_RATE, SCENE_KEYS, sample_duration, sample_scene
from generative.corpus.recipes import Draft, Recipe, table_rows

FLUIDSYNTH = "fluidsynth"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

_TICKS_PER_BEAT = 480
_TICKS_PER_SECOND = 960  # at the MIDI default tempo of 120 beats per minute
_GAP_S = 1.5  # silence between clips in a batch, longer than any release tail
_DRUM_CHANNEL = 9


@dataclass(frozen=True)
class Instrument:
    program: int
    label: str
    low: int
    high: int
    folder: str
    nouns: tuple[str, ...]
    music: bool = True


# program | label | lowest note | highest note | folder | nouns... (indented: continued)
_INSTRUMENTS = """
0 | piano | 36 | 96 | Music/Piano | piano | grand piano | acoustic piano
4 | electric piano | 36 | 96 | Music/Keys | electric piano | e-piano | vintage electric piano
6 | harpsichord | 41 | 89 | Music/Keys | harpsichord | baroque harpsichord | plucked harpsichord
9 | glockenspiel | 72 | 105 | Music/Mallets | glockenspiel | metallophone | orchestra bells
10 | music box | 60 | 96 | Music/Mallets | music box | wind-up music box | tinkling music box
11 | vibraphone | 53 | 89 | Music/Mallets | vibraphone | jazz vibraphone | shimmering vibraphone
12 | marimba | 45 | 96 | Music/Mallets | marimba | wooden marimba | mallet marimba
13 | xylophone | 65 | 96 | Music/Mallets | xylophone | bright xylophone | wooden xylophone
14 | tubular bells | 60 | 77 | Music/Mallets | tubular bells | orchestral chimes | tubular bell
16 | organ | 36 | 96 | Music/Organ | organ | drawbar organ | electric organ
19 | church organ | 36 | 96 | Music/Organ | church organ | pipe organ | cathedral organ
21 | accordion | 53 | 89 | Music/Folk | accordion | squeezebox | French accordion
22 | harmonica | 60 | 84 | Music/Folk | harmonica | blues harp | mouth organ
24 | acoustic guitar | 40 | 84 | Music/Guitar | acoustic guitar | nylon-string guitar
    | classical guitar
25 | acoustic guitar | 40 | 84 | Music/Guitar | steel-string guitar | folk guitar | acoustic guitar
27 | electric guitar | 40 | 88 | Music/Guitar | electric guitar | clean electric guitar
    | jazz guitar
30 | electric guitar | 40 | 88 | Music/Guitar | distorted guitar | overdriven guitar | rock guitar
33 | bass guitar | 28 | 60 | Music/Bass | bass guitar | electric bass | fingered bass
40 | violin | 55 | 96 | Music/Strings | violin | fiddle | solo violin
42 | cello | 36 | 76 | Music/Strings | cello | violoncello | solo cello
46 | harp | 36 | 96 | Music/Strings | harp | concert harp | orchestral harp
47 | timpani | 36 | 57 | Music/Percussion | timpani | kettle drum | orchestral timpani
48 | string section | 36 | 96 | Music/Strings | string section | string ensemble
    | orchestral strings
52 | choir | 48 | 79 | Music/Voices | choir | choir singing aah | vocal ensemble
56 | trumpet | 55 | 82 | Music/Brass | trumpet | brass trumpet | solo trumpet
57 | trombone | 40 | 72 | Music/Brass | trombone | slide trombone | brass trombone
58 | tuba | 28 | 55 | Music/Brass | tuba | bass tuba | brass tuba
60 | french horn | 41 | 77 | Music/Brass | French horn | orchestral French horn | horn in F
61 | brass section | 41 | 84 | Music/Brass | brass section | brass ensemble | horn section
65 | saxophone | 49 | 81 | Music/Woodwinds | saxophone | alto sax | alto saxophone
66 | saxophone | 44 | 76 | Music/Woodwinds | tenor saxophone | tenor sax | jazz saxophone
68 | oboe | 58 | 91 | Music/Woodwinds | oboe | orchestral oboe | double-reed oboe
70 | bassoon | 34 | 72 | Music/Woodwinds | bassoon | orchestral bassoon | double-reed bassoon
71 | clarinet | 50 | 91 | Music/Woodwinds | clarinet | B-flat clarinet | wooden clarinet
73 | flute | 60 | 96 | Music/Woodwinds | flute | concert flute | silver flute
74 | recorder | 60 | 96 | Music/Woodwinds | recorder | wooden recorder | school recorder
75 | pan flute | 60 | 96 | Music/Woodwinds | pan flute | pan pipes | breathy pan flute
80 | synthesizer | 48 | 96 | Music/Synth | square-wave synth lead | chiptune lead | retro synth lead
81 | synthesizer | 48 | 96 | Music/Synth | sawtooth synth lead | synth lead | buzzy synthesizer
88 | synth pad | 36 | 84 | Music/Synth | synth pad | ambient pad | warm synthesizer pad
104 | sitar | 48 | 77 | Music/World | sitar | Indian sitar | twangy sitar
105 | banjo | 48 | 84 | Music/World | banjo | bluegrass banjo | plucked banjo
108 | kalimba | 60 | 84 | Music/World | kalimba | thumb piano | mbira
109 | bagpipe | 60 | 77 | Music/World | bagpipes | Scottish bagpipes | highland bagpipes
114 | steel drums | 52 | 76 | Music/World | steel drum | steel pan | Caribbean steel drum
"""

# The General MIDI sound-effect programs; their labels match the procedural classes.
_EFFECTS = """
120 | guitar fret noise | 40 | 76 | Effects/Guitar | guitar fret noise | fret squeak | string scrape
121 | breathing | 48 | 72 | Effects/Human | ~breathing | ~breath noise | ~heavy breaths
122 | ocean waves | 48 | 72 | Effects/Nature | ~seashore | ~waves on a shore | ~surf
123 | bird chirp | 60 | 84 | Effects/Nature | bird tweeting | ~birdsong | songbird
124 | phone ring | 60 | 72 | Effects/Household | telephone ringing | ringing phone | phone ring
125 | helicopter | 48 | 72 | Effects/Vehicles | helicopter | helicopter flying | chopper
126 | applause | 48 | 72 | Effects/Crowds | ~applause | ~crowd applauding | ~clapping
127 | gunshot | 48 | 72 | Effects/Weapons | gunshot | ~gunfire | rifle shot
"""


def _parse(table: str, music: bool) -> dict[int, Instrument]:
    out = {}
    for program, label, low, high, folder, *nouns in table_rows(table):
        out[int(program)] = Instrument(
            int(program), label, int(low), int(high), folder, tuple(nouns), music
        )
    return out


INSTRUMENTS = _parse(_INSTRUMENTS, music=True) | _parse(_EFFECTS, music=False)

# style: (steps per bar, steps per beat, {drum note: steps}); GM channel-10 note numbers.
DRUM_STYLES: dict[str, tuple[int, int, dict[int, list[int]]]] = {
    "rock": (16, 4, {36: [0, 8], 38: [4, 12], 42: list(range(0, 16, 2))}),
    "disco": (16, 4, {36: [0, 4, 8, 12], 38: [4, 12], 46: [2, 6, 10, 14], 42: [0, 4, 8, 12]}),
    "funk": (16, 4, {36: [0, 3, 8, 10], 38: [4, 12, 15], 42: list(range(16))}),
    "waltz": (6, 2, {36: [0], 38: [2, 4], 42: list(range(6))}),
    "shuffle": (12, 3, {36: [0, 6], 38: [3, 9], 42: [0, 2, 3, 5, 6, 8, 9, 11]}),
    "bossa nova": (
        16,
        4,
        {36: [0, 3, 4, 7, 8, 11, 12, 15], 37: [0, 3, 6, 10, 12], 42: list(range(0, 16, 2))},
    ),
    "march": (16, 4, {38: [0, 2, 4, 6, 8, 10, 12, 13, 14], 36: [0, 8]}),
    "tom fill": (
        16,
        4,
        {50: [0, 1, 2, 3], 48: [4, 5, 6, 7], 45: [8, 9, 10, 11], 41: [12, 13, 14, 15]},
    ),
}
_TEMPO = {"slow": (66, 90), "medium": (100, 125), "fast": (140, 176)}
_VELOCITY = {"quiet": (45, 65), "medium": (75, 95), "loud": (105, 125)}
_NOTE_NAMES = ("C", "C#", "D", "E-flat", "E", "F", "F#", "G", "A-flat", "A", "B-flat", "B")
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


def recipes() -> list[Recipe]:
    keys = [f"program/{p}" for p in INSTRUMENTS] + [f"drums/{s}" for s in DRUM_STYLES]
    return [Recipe(k, False) for k in keys]


def draft(key: str, rng: np.random.Generator) -> Draft:
    kind, name = key.split("/")
    if kind == "drums":
        return _draft_drums(name, rng)
    instrument = INSTRUMENTS[int(name)]
    if not instrument.music:
        return _draft_effect(instrument, rng)
    return _draft_music(instrument, rng)


def _draft_music(inst: Instrument, rng: np.random.Generator) -> Draft:
    kind = str(rng.choice(["note", "chord", "melody"], p=[0.3, 0.25, 0.45]))
    params: dict[str, Any] = {"program": inst.program, "instrument": inst.label, "kind": kind}
    params["pitch"] = str(rng.choice(["low", "medium", "high"]))
    params["key"] = _NOTE_NAMES[int(rng.integers(12))]
    params["mode"] = str(rng.choice(["major", "minor"]))
    params["root_note"] = _root(inst, params["pitch"], _NOTE_NAMES.index(params["key"]), kind)
    if kind == "melody":
        params["rate"] = str(rng.choice(list(_TEMPO)))
        params["bpm"] = int(rng.integers(*_TEMPO[params["rate"]]))
        params.update(sample_duration(rng))
    else:
        params.update(sample_duration(rng, ("short", "medium")))
    params.update(sample_scene(rng))
    captions = compose(_music_subject(inst, params), _words(params), rng)
    words = [w for w in (params["pitch"], params.get("rate")) if w and w != "medium"]
    stem = "_".join([_slug(inst.nouns[0]), kind, *words])
    title = f"{inst.nouns[0].capitalize()} {kind} in {params['key']} {params['mode']}"
    return Draft([inst.label, "music"], params, captions, stem, inst.folder, title)


def _draft_effect(inst: Instrument, rng: np.random.Generator) -> Draft:
    params: dict[str, Any] = {"program": inst.program, "instrument": inst.label, "kind": "effect"}
    params["pitch"] = str(rng.choice(["low", "medium", "high"]))
    params["rate"] = str(rng.choice(["slow", "medium", "fast"]))
    params["root_note"] = _root(inst, params["pitch"], int(rng.integers(12)), "note")
    params.update(sample_duration(rng))
    params.update(sample_scene(rng))
    nouns = tuple(Noun(n.lstrip("~"), not n.startswith("~")) for n in inst.nouns)
    extra = f"a synthesized {inst.label} sound effect from a General MIDI soundfont"
    captions = compose(Subject(nouns, extras=(extra,)), _words(params), rng)
    stem = "_".join(
        [_slug(inst.label), *(w for w in (params["pitch"], params["rate"]) if w != "medium")]
    )
    title = f"{inst.label.capitalize()} (GM effect)"
    return Draft([inst.label], params, captions, stem, inst.folder, title)


def _draft_drums(style: str, rng: np.random.Generator) -> Draft:
    params: dict[str, Any] = {"program": "drum kit", "instrument": "drums", "kind": "drums"}
    params["style"] = style
    params["rate"] = str(rng.choice(list(_TEMPO)))
    params["bpm"] = int(rng.integers(*_TEMPO[params["rate"]]))
    params.update(sample_duration(rng))
    params.update(sample_scene(rng))
    groove = "fill" if style.endswith("fill") else "groove"
    style = style.removesuffix(" fill")
    nouns = (
        Noun(f"{style} drum beat"),
        Noun(f"drum kit playing a {style} {groove}"),
        Noun(f"{style} rhythm on drums"),
        Noun(f"{style} {groove} on a drum kit"),
    )
    extra = f"{_with_article(style)} {groove} on drums at {params['bpm']} beats per minute"
    captions = compose(Subject(nouns, extras=(extra,)), _words(params), rng)
    stem = "_".join(
        ["drums", _slug(params["style"]), *([params["rate"]] if params["rate"] != "medium" else [])]
    )
    title = f"{params['style'].capitalize()} drums, {params['bpm']} BPM"
    return Draft(["drums", "music"], params, captions, stem, "Music/Drums", title)


def _music_subject(inst: Instrument, params: dict[str, Any]) -> Subject:
    n0, n1, n2 = inst.nouns
    chord = f"{params['key']} {params['mode']} chord"
    octave = params["root_note"] // 12 - 1
    if params["kind"] == "note":
        nouns = (
            Noun(f"{n0} note"),
            Noun(f"{n1} note"),
            Noun(f"single note played on {_with_article(n2)}"),
        )
        extra = f"one sustained {n0} note, {params['key']}{octave}"
    elif params["kind"] == "chord":
        nouns = (
            Noun(f"{n0} chord"),
            Noun(f"chord played on {_with_article(n1)}"),
            Noun(f"{params['mode']} chord on {_with_article(n2)}"),
        )
        extra = f"{_with_article(chord)} played on {_with_article(n0)}"
    else:
        nouns = (
            Noun(f"{n0} melody"),
            Noun(f"tune played on {_with_article(n1)}"),
            Noun(f"{n2} solo"),
        )
        extra = (
            f"{_with_article(n0)} melody in {params['key']} {params['mode']} at {params['bpm']} BPM"
        )
    return Subject(nouns, extras=(extra,))


def _root(inst: Instrument, register: str, pitch_class: int, kind: str) -> int:
    """A note of the wanted pitch class inside the low, middle or high third of the range."""
    top = inst.high - (12 if kind != "note" else 0)  # room for a chord or melody above it
    span = max(top - inst.low, 12)
    third = {"low": 0, "medium": 1, "high": 2}[register]
    start = inst.low + span * third // 3
    note = start + (pitch_class - start) % 12
    return int(min(note, max(inst.low, top)))


def _words(params: dict[str, Any]) -> dict[str, str]:
    keys = ("pitch", "rate", "duration", *SCENE_KEYS)
    return {k: params[k] for k in keys if k in params}


def _with_article(text: str) -> str:
    first = text.split()[0]
    # Note names are read as letters: "an F major chord", "a C minor chord".
    vowel = first[0] in "AEF" if first in _NOTE_NAMES else first[0].lower() in "aeiou"
    return f"{'an' if vowel else 'a'} {text}"


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


# ---- rendering ---------------------------------------------------------------------------

Event = tuple[float, float, int, int, int]  # start s, end s, channel, note, velocity


def render_batch(items: list[tuple[dict[str, Any], np.random.Generator]]) -> list[np.ndarray]:
    """Render many clips with one fluidsynth run; returns each clip's dry audio."""
    messages: list[tuple[int, int, bytes]] = []
    starts: list[float] = []
    offset = 0.5
    for params, rng in items:
        messages += _clip_setup(params, offset - 0.4)
        for start, end, channel, note, velocity in _events(params, rng):
            if not 0.0 <= start < end <= params["duration_s"]:
                continue  # a note-off before its note-on would hang fluidsynth on a stuck note
            messages.append((_tick(offset + start), 2, bytes([0x90 | channel, note, velocity])))
            messages.append((_tick(offset + end), 0, bytes([0x80 | channel, note, 0])))
        starts.append(offset)
        offset += params["duration_s"] + _GAP_S
    messages += _clip_setup({"program": None}, offset - _GAP_S / 2)
    audio = _fluidsynth(_midi_file(messages, _tick(offset)), timeout=60.0 + offset)
    clips = []
    for (params, _), start in zip(items, starts, strict=True):
        first = round(start * SAMPLE_RATE)
        n = round(params["duration_s"] * SAMPLE_RATE)
        clip = audio[first : first + n]
        clips.append(np.concatenate([clip, np.zeros(n - len(clip))]))
    return clips


def _clip_setup(params: dict[str, Any], at: float) -> list[tuple[int, int, bytes]]:
    """Silence and reset both channels, then choose the clip's program."""
    tick = _tick(at)
    setup = []
    for channel in (0, _DRUM_CHANNEL):
        for control, value in ((120, 0), (123, 0), (121, 0), (7, 110), (10, 64)):
            setup.append((tick, 1, bytes([0xB0 | channel, control, value])))
    if isinstance(params["program"], int):
        setup.append((tick, 1, bytes([0xC0, params["program"]])))
    return setup


def _events(params: dict[str, Any], rng: np.random.Generator) -> list[Event]:
    velocity = int(rng.integers(*_VELOCITY[params["loudness"]]))
    end = params["duration_s"] - 0.5  # leave the release tail inside the clip
    kind = params["kind"]
    if kind == "drums":
        return _drum_events(params, velocity, end, rng)
    root = params["root_note"]
    if kind == "note":
        return [(0.05, end, 0, root, velocity)]
    if kind == "chord":
        return _chord_events(params, root, velocity, end, rng)
    if kind == "melody":
        return _melody_events(params, root, velocity, end, rng)
    period = {"slow": 2.5, "medium": 1.5, "fast": 0.8}[params["rate"]]
    starts = np.arange(0.05, max(end - 0.3, 0.1), period)
    return [(s, min(s + period * 0.8, end), 0, root, velocity) for s in starts]


def _chord_events(
    params: dict[str, Any], root: int, velocity: int, end: float, rng: np.random.Generator
) -> list[Event]:
    intervals: tuple[int, ...] = (0, 4, 7) if params["mode"] == "major" else (0, 3, 7)
    if rng.uniform() < 0.5:
        intervals += (12,)
    strikes = min(int(rng.integers(1, 4)), max(1, int((end - 0.05) / 0.3)))
    length = (end - 0.05) / strikes
    strum = float(rng.choice([0.0, 0.03]))
    return [
        (0.05 + k * length + i * strum, min(0.05 + (k + 1) * length, end), 0, root + iv, velocity)
        for k in range(strikes)
        for i, iv in enumerate(intervals)
    ]


def _melody_events(
    params: dict[str, Any], root: int, velocity: int, end: float, rng: np.random.Generator
) -> list[Event]:
    beat = 60.0 / params["bpm"]
    scale = _SCALES[params["mode"]]
    events: list[Event] = []
    t, degree = 0.05, 0
    while True:
        length = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
        if t + length > end and events:
            break
        octave, step = divmod(degree, 7)
        note = root + 12 * octave + scale[step]
        events.append((t, min(t + length * 0.95, end), 0, int(np.clip(note, 0, 127)), velocity))
        t += length
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 1, 1, 2, 0]), -3, 10))
    return events


def _drum_events(
    params: dict[str, Any], velocity: int, end: float, rng: np.random.Generator
) -> list[Event]:
    steps, per_beat, pattern = DRUM_STYLES[params["style"]]
    step_s = 60.0 / params["bpm"] / per_beat
    events: list[Event] = []
    bar = 0
    while (bar * steps) * step_s < end - 0.2:
        for note, hits in pattern.items():
            for step in hits:
                t = 0.05 + (bar * steps + step) * step_s
                if t < end:
                    accent = 1.0 if step == 0 else float(rng.uniform(0.75, 0.95))
                    events.append((t, t + 0.1, _DRUM_CHANNEL, note, int(velocity * accent)))
        bar += 1
    if rng.uniform() < 0.5:
        events.append((0.05, 0.15, _DRUM_CHANNEL, 49, velocity))  # crash on the first beat
    return events


def _tick(seconds: float) -> int:
    return int(round(seconds * _TICKS_PER_SECOND))


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def _midi_file(messages: list[tuple[int, int, bytes]], end_tick: int) -> bytes:
    """A format-0 Standard MIDI File; note-offs sort before note-ons at the same tick."""
    track = bytearray()
    now = 0
    for tick, _, message in sorted(messages, key=lambda m: (m[0], m[1])):
        track += _vlq(tick - now) + message
        now = tick
    track += _vlq(max(end_tick - now, 0)) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, _TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _fluidsynth(midi: bytes, timeout: float) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="foley-midi-") as tmp:
        mid, wav = Path(tmp) / "batch.mid", Path(tmp) / "batch.wav"
        mid.write_bytes(midi)
        cmd = [
            FLUIDSYNTH, "-ni", "-R", "0", "-C", "0", "-g", "0.6",
            "-F", str(wav), "-r", str(SAMPLE_RATE), str(SOUNDFONT), str(mid),
        ]  # fmt: skip
        subprocess.run(cmd, capture_output=True, check=True, timeout=timeout)
        audio, rate = sf.read(wav, dtype="float64", always_2d=True)
    if rate != SAMPLE_RATE:
        raise RuntimeError(f"fluidsynth wrote {rate} Hz instead of {SAMPLE_RATE} Hz")
    return audio.mean(axis=1)
