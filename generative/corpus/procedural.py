"""Procedural source: 50 synthesized sound classes with known parameters, and mixtures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from generative.corpus import synth
from generative.corpus.captions import Noun, Subject, compose, with_article
from generative.corpus.effects import fit_length, sample_duration, sample_scene, samples
from generative.corpus.recipes import Draft, Recipe, table_rows

# Whole classes held out of train/val/test: the out-of-domain split measures them.
OOD_CLASSES = ("heartbeat", "laser", "typing", "dripping")


@dataclass(frozen=True)
class SoundClass:
    name: str
    folder: str
    axes: tuple[str, ...]
    nouns: tuple[Noun, ...]
    synth: synth.Synth


# name | library folder | axes it varies | nouns... (a leading "~" marks an uncountable noun).
# The synthesizer is the function of the same name in synth.
_TABLE = """
siren | Vehicles/Sirens | pitch rate | siren | emergency siren | wailing siren
alarm | Alarms | pitch rate | alarm | alarm clock beeping | beeping alarm
car engine | Vehicles/Cars | pitch intensity | car engine | running car motor | idling engine
motorcycle | Vehicles/Motorcycles | pitch rate | motorcycle | revving motorbike | motorcycle engine
car horn | Vehicles/Horns | pitch rate | car horn | honking horn | vehicle horn
helicopter | Vehicles/Aircraft | pitch rate | helicopter | helicopter rotor | chopper overhead
train | Vehicles/Trains | pitch rate | steam train | chugging train | locomotive
whistle | Signals/Whistles | pitch rate | whistle | referee whistle | whistle blowing
beep | Electronic/Beeps | pitch rate | beep | electronic beep | beeping tone
buzzer | Electronic/Buzzers | pitch rate | buzzer | harsh buzzer | buzzing signal
phone ring | Household/Phones | pitch rate | phone ringing | ringing telephone | telephone bell
dial tone | Household/Phones |  | dial tone | telephone dial tone | ~steady phone tone
sonar ping | Electronic/Sonar | pitch rate | sonar ping | submarine sonar | echoing ping
rain | Nature/Rain | intensity | ~rain | ~rainfall | ~rain shower
wind | Nature/Wind | pitch intensity | ~wind | ~blowing wind | ~gusting wind
thunder | Nature/Thunder | intensity | ~thunder | thunderclap | ~rumbling thunder
stream | Nature/Water | pitch rate | babbling stream | ~running water | brook
ocean waves | Nature/Water | rate | ~ocean waves | ~surf on a beach | ~waves crashing
fire crackle | Nature/Fire | intensity | crackling fire | ~fire crackle | campfire
dripping | Household/Water | pitch rate | ~dripping water | dripping tap | ~water drops
crickets | Nature/Insects | pitch rate | ~crickets chirping | ~crickets | ~insects chirping at night
bird chirp | Nature/Birds | pitch rate | bird chirping | small bird | ~birdsong
frog croak | Nature/Frogs | pitch rate | frog croaking | croaking frog | ~frog calls
bubbling | Household/Water | pitch rate | ~bubbling water | ~boiling water | ~bubbles
footsteps | Foley/Footsteps | rate intensity | ~footsteps | ~steps | person walking
knock | Foley/Doors | pitch rate | knock on a door | ~knocking | door knock
doorbell | Household/Doorbells | pitch rate | doorbell | ding-dong doorbell | door chime
church bell | Bells/Church | pitch rate | church bell | tolling bell | bell tower
wind chimes | Bells/Chimes | pitch rate | ~wind chimes | ~tinkling chimes | ~metal chimes
click | Foley/Clicks | pitch rate | ~clicking | mouse click | ~clicks
clock tick | Household/Clocks | pitch rate | ticking clock | clock tick-tock | ~clock ticking
typing | Office/Keyboards | rate | ~typing on a keyboard | ~keyboard typing | ~keystrokes
electrical hum | Electrical/Hum | pitch intensity | electrical hum | ~mains buzz | transformer hum
fan | Household/Fans | pitch rate | electric fan | whirring fan | ventilation fan
glass clink | Foley/Glass | pitch | glass clink | ~clinking glasses | ~glasses touching
coins | Foley/Coins | rate | ~coins jingling | ~jingling change | ~coins
zipper | Foley/Cloth | rate | zipper | zip being pulled | ~zipping
camera shutter | Foley/Cameras | rate | camera shutter | camera click | ~shutter release
hammering | Tools/Hammers | pitch rate intensity | ~hammering | hammer on a nail | ~hammer blows
sawing | Tools/Saws | rate | ~sawing | hand saw cutting wood | ~saw strokes
bouncing ball | Foley/Balls | pitch rate | bouncing ball | ball bouncing | rubber ball bouncing
laser | Sci-Fi/Lasers | pitch rate | laser zap | laser blaster | ~sci-fi laser shots
whoosh | Transitions/Whooshes | rate | whoosh | swoosh | ~rushing air
sweep | Electronic/Sweeps | pitch rate direction | tone sweep | sine sweep | frequency sweep
radio static | Electronic/Static | intensity | ~radio static | ~static noise | ~crackling static
heartbeat | Body/Heart | rate | heartbeat | beating heart | ~heart thumping
impact | Impacts/Thuds | pitch intensity | thud | heavy impact | dull thump
explosion | Impacts/Explosions | intensity | explosion | ~blast | big boom
gunshot | Weapons/Guns | rate | gunshot | ~gunfire | pistol shot
applause | Crowds/Applause | intensity | ~applause | ~clapping crowd | ~audience clapping
"""


def _parse(cells: list[str]) -> SoundClass:
    name, folder, axes, *nouns = cells
    parsed = tuple(Noun(w.lstrip("~"), not w.startswith("~")) for w in nouns)
    fn = getattr(synth, name.replace(" ", "_"))
    return SoundClass(name, folder, tuple(axes.split()), parsed, fn)


CLASSES: tuple[SoundClass, ...] = tuple(map(_parse, table_rows(_TABLE)))
BY_NAME = {c.name: c for c in CLASSES}

_AXIS_VALUES = {
    "pitch": ("low", "medium", "high"),
    "rate": ("slow", "medium", "fast"),
    "intensity": ("light", "medium", "heavy"),
    "direction": ("up", "down"),
}
_KNOB_RANGES = {
    "pitch": {"low": (0.6, 0.78), "medium": (0.88, 1.12), "high": (1.3, 1.6)},
    "rate": {"slow": (0.5, 0.7), "medium": (0.85, 1.15), "fast": (1.5, 2.0)},
    "intensity": {"light": (0.1, 0.35), "medium": (0.4, 0.6), "heavy": (0.7, 1.0)},
}
_DEFAULT_KNOBS = {"pitch": 1.0, "rate": 1.0, "intensity": 0.5, "direction": 1.0}


def recipes() -> list[Recipe]:
    return [Recipe(c.name, c.name in OOD_CLASSES) for c in CLASSES]


def mixture_recipes() -> list[Recipe]:
    return [Recipe("mixture", False)]


def draft(key: str, rng: np.random.Generator) -> Draft:
    sound = BY_NAME[key]
    params: dict[str, Any] = {"class": key}
    for axis in sound.axes:
        value = str(rng.choice(_AXIS_VALUES[axis]))
        params[axis] = value
        if axis in _KNOB_RANGES:
            params[f"{axis}_factor"] = round(float(rng.uniform(*_KNOB_RANGES[axis][value])), 3)
    params.update(sample_duration(rng))
    params.update(sample_scene(rng))
    captions = compose(Subject(sound.nouns), _words(params), rng)
    words = [params[a] for a in sound.axes if params[a] not in ("medium",)]
    stem = "_".join([_slug(key), *words[:2]])
    title = " ".join([key.capitalize(), *words[:2]])
    return Draft([key], params, captions, stem, sound.folder, title)


def draft_mixture(key: str, rng: np.random.Generator) -> Draft:
    """Two in-domain classes at once, both labelled; the second sits a few dB lower."""
    names = [c.name for c in CLASSES if c.name not in OOD_CLASSES]
    first, second = (str(v) for v in rng.choice(names, size=2, replace=False))
    params: dict[str, Any] = {
        "class": f"{first}+{second}",
        "classes": [first, second],
        "balance_db": round(float(rng.uniform(-9.0, -3.0)), 2),
    }
    params.update(sample_duration(rng))
    params.update(sample_scene(rng))
    a, b = BY_NAME[first].nouns[0], BY_NAME[second].nouns[0]
    nouns = (
        Noun(f"{a.text} together with {with_article(b)}", a.countable),
        Noun(f"{a.text} with {with_article(b)} in the background", a.countable),
        Noun(f"{b.text} mixed with {with_article(a)}", b.countable),
        Noun(f"{a.text} and {with_article(b)}", a.countable),
    )
    captions = compose(Subject(nouns), _words(params), rng)
    stem = f"{_slug(first)}_with_{_slug(second)}"
    title = f"{first.capitalize()} with {second}"
    return Draft([first, second], params, captions, stem, "Ambiences/Mixed", title)


def render(params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    n = samples(params["duration_s"])
    if "classes" in params:
        first, second = params["classes"]
        a = _normalised(BY_NAME[first].synth(n, synth.Knobs(), rng))
        b = _normalised(BY_NAME[second].synth(n, synth.Knobs(), rng))
        return a + b * 10.0 ** (params["balance_db"] / 20.0)
    knobs = {k: params.get(f"{k}_factor", v) for k, v in _DEFAULT_KNOBS.items()}
    knobs["direction"] = -1.0 if params.get("direction") == "down" else 1.0
    return fit_length(BY_NAME[params["class"]].synth(n, synth.Knobs(**knobs), rng), n)


def _words(params: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in params.items() if isinstance(v, str) and k != "class"}


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-9)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")
