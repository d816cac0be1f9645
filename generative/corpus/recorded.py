"""Recorded effects from Debian packages: OpenTTD's OpenSFX and two desktop sound themes.

OpenSFX ships its samples concatenated in one .cat file (a table of offsets, then for each
sample a length-prefixed title and a WAV); the themes ship .oga and .wav files whose names
describe them. Each recording yields several clips (pitch shifted, placed in a scene).
"""

from __future__ import annotations

import functools
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from generative.corpus.captions import Noun, Subject, compose
from generative.corpus.effects import SAMPLE_RATE, SCENE_KEYS, resample, sample_scene, to_mono
from generative.corpus.recipes import Draft, Recipe, table_rows

OPENSFX_CAT = Path("/usr/share/games/openttd/baseset/opensfx/opensfx.cat")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
DEEPIN_DIR = Path("/usr/share/sounds/deepin/stereo")

# prefix: (Debian package, the category its sounds are described as)
PACKAGES = {
    "opensfx": ("openttd-opensfx", "sound effect from a transport simulation game"),
    "freedesktop": ("sound-theme-freedesktop", "desktop event sound"),
    "deepin": ("deepin-sound-theme", "desktop event sound"),
}
# The Deepin theme and OpenSFX's animals never appear in train/val/test.
OOD_PACKAGES = ("deepin",)
OOD_LABELS = ("animal", "sheep", "cow", "horse", "lion", "monkey")

# key | library folder | labels (comma-separated) | nouns... (indented: continued)
_TABLE = """
opensfx/00 | Game/Jingles | jingle | cheerful fanfare | happy jingle | short celebratory tune
opensfx/01 | Game/Jingles | jingle | gloomy jingle | sad little tune | disappointed fanfare
opensfx/02 | Water/Splashes | splash | water splash | ~splashing water | splat of water
opensfx/03 | Industry/Whistles | whistle, factory | factory whistle | steam whistle
    | industrial whistle
opensfx/04 | Vehicles/Trains | train, steam train | steam train departing
    | steam locomotive pulling away
opensfx/05 | Vehicles/Trains | train, steam train | steam train entering a tunnel
    | steam engine whistle
opensfx/06 | Vehicles/Ships | ship horn, horn | ship horn | cargo ship foghorn | ship's horn blast
opensfx/07 | Vehicles/Ships | ship horn, horn | ferry horn | passenger ferry horn
    | harbour ship horn
opensfx/08 | Vehicles/Aircraft | airplane, propeller engine | propeller plane starting
    | light aircraft
opensfx/09 | Vehicles/Aircraft | airplane, jet engine | jet taking off | passenger jet departing
opensfx/0a | Vehicles/Trains | train | diesel train departing | electric train pulling out
opensfx/0b | Industry/Machinery | machinery | mining machinery | ~rumbling machinery
    | lift machinery
opensfx/0c | Electrical/Sparks | electric spark | ~electric sparking | ~crackling sparks
    | arcing spark
opensfx/0d | Vehicles/Trains | steam hiss | ~hissing steam | steam release | ~venting steam
opensfx/0e | Vehicles/Trains | level crossing bell, bell | level crossing bell
    | railroad crossing signal
opensfx/0f | Impacts/Metal | metal clang, impact | heavy metal clang | dropped metal object
opensfx/10 | Impacts/Metal | metal clang, impact | ~clanking metal | metal bin clatter
opensfx/11 | Impacts/Crashes | crash | crash | smash | collision
opensfx/12 | Impacts/Explosions | explosion | explosion | ~blast | detonation
opensfx/13 | Impacts/Crashes | crash | big crash | violent collision | loud smash
opensfx/14 | Household/Money | cash register | cash register | till drawer opening
    | cash till ringing
opensfx/15 | Electronic/Beeps | beep | beep | short electronic beep | blip
opensfx/16 | Electronic/Beeps | morse code, beep | ~morse code | ~morse code beeping
    | telegraph signal
opensfx/17 | Vehicles/Tyres | tire screech | tyre skid | tire screech | wheels touching down
opensfx/18 | Vehicles/Aircraft | helicopter | helicopter | helicopter rotor | chopper
opensfx/19 | Vehicles/Trucks | truck, engine | truck pulling away | lorry starting
    | old bus starting
opensfx/1a | Vehicles/Trucks | truck, engine, horn | truck starting with a horn | lorry honking
opensfx/1b | Vehicles/Buses | bus, engine | bus pulling away | city bus starting | modern bus
opensfx/1c | Vehicles/Buses | bus, engine | old bus starting | vintage bus engine | old bus
opensfx/1d | Crowds/Applause | applause, crowd | ~applause | ~enthusiastic audience
    | ~cheering crowd
opensfx/1e | Crowds/Reactions | crowd, gasp | crowd going oooh | ~impressed crowd | ~crowd gasping
opensfx/1f | Foley/Splats | splat | wet splat | squelch | ~squishy splat
opensfx/20 | Impacts/Thuds | impact, thud | dull thud | soft kick | short thump
opensfx/21 | Tools/Power | jackhammer, power tool | jackhammer | pneumatic drill | air hammer
opensfx/23 | Vehicles/Horns | car horn, horn | car horn | modern car honking | honk
opensfx/24 | Animals/Farm | animal, sheep | sheep bleating | bleating lamb | sheep
opensfx/25 | Animals/Farm | animal, cow | cow mooing | mooing cow | cow
opensfx/26 | Animals/Farm | animal, horse | horse neighing | whinnying horse | horse
opensfx/27 | Construction/Hammers | hammering, construction | bridge construction | ~building work
opensfx/28 | Industry/Saws | saw, machinery | sawmill | circular saw | saw cutting timber
opensfx/29 | Game/Toys | toy sound | toy blip | cartoon blip | tiny toy sound
opensfx/2a | Game/Toys | toy sound, machinery | toy factory machine | toy machine | cartoon factory
opensfx/2b | Game/Toys | toy sound, machinery | toy factory press | toy machinery | cartoon press
opensfx/2c | Game/Toys | toy sound, machinery | toy factory running | toy assembly line
opensfx/2d | Game/Toys | toy sound | toy click | small cartoon click | toy tick
opensfx/2e | Game/Toys | bubbles | ~bubbles forming | bubble machine | ~bubbling
opensfx/2f | Game/Toys | pop | bubble pop | plop | popping bubble
opensfx/30 | Game/Toys | toy sound | toffee quarry | cartoon quarry machine | sticky toy machine
opensfx/31 | Game/Toys | slurp | slurp | slurping bubble | sucking sound
opensfx/33 | Game/Toys | toy sound, machinery | plastic mine machine | toy mine | cartoon mine
opensfx/34 | Nature/Wind | wind | ~wind | ~blowing wind | breeze
opensfx/35 | Game/Comedy | comedy sound | cartoon breakdown | comedy crash | silly breakdown
opensfx/36 | Nature/Trees | tree falling, crash | tree crashing down | falling tree hitting ground
opensfx/37 | Nature/Trees | tree falling | falling tree | tree toppling | timber falling
opensfx/38 | Tools/Power | chainsaw, power tool | chainsaw | chainsaw cutting | motor saw
opensfx/39 | Nature/Wind | wind | ~heavy wind | ~strong wind | gale
opensfx/3a | Game/Comedy | comedy sound | cartoon train breakdown | silly train crash
    | comedy breakdown
opensfx/3b | Vehicles/Aircraft | airplane, jet engine | supersonic jet taking off | fighter jet
opensfx/3c | Game/Comedy | comedy sound, bus | cartoon bus starting | comedy bus | silly bus engine
opensfx/3d | Vehicles/Aircraft | airplane, jet engine | modern jet taking off | airliner departing
opensfx/3e | Game/Comedy | comedy sound, bus | cartoon bus pulling away | comedy bus horn
opensfx/3f | Game/Comedy | comedy sound, truck | cartoon truck starting | comedy truck
opensfx/40 | Game/Comedy | comedy sound, truck | cartoon truck pulling away | silly truck engine
opensfx/41 | Vehicles/Trains | train | maglev train departing | futuristic train | high-speed train
opensfx/42 | Animals/Birds | bird call | tropical bird call | exotic bird | jungle bird
opensfx/43 | Animals/Wild | animal, lion | lion roaring | roaring lion | big cat roar
opensfx/44 | Animals/Wild | animal, monkey | ~monkeys chattering | ~screeching monkeys
    | monkey troop
opensfx/45 | Game/Comedy | comedy sound, airplane | cartoon propeller plane | toy plane taking off
opensfx/46 | Game/Comedy | comedy sound, airplane | cartoon jet taking off | toy jet
opensfx/47 | Vehicles/Trains | train | monorail train departing | monorail | elevated train
opensfx/48 | Animals/Birds | bird call | tropical bird song | exotic bird calling
    | bird in the jungle
freedesktop/alarm-clock-elapsed | UI/Alarms | alarm | alarm clock ringing | wake-up alarm
freedesktop/audio-channel-front-center | UI/Voice | speech, announcement | voice saying front center
freedesktop/audio-channel-front-left | UI/Voice | speech, announcement | voice saying front left
freedesktop/audio-channel-front-right | UI/Voice | speech, announcement | voice saying front right
freedesktop/audio-channel-rear-center | UI/Voice | speech, announcement | voice saying rear center
freedesktop/audio-channel-rear-left | UI/Voice | speech, announcement | voice saying rear left
freedesktop/audio-channel-rear-right | UI/Voice | speech, announcement | voice saying rear right
freedesktop/audio-channel-side-left | UI/Voice | speech, announcement | voice saying side left
freedesktop/audio-channel-side-right | UI/Voice | speech, announcement | voice saying side right
freedesktop/audio-test-signal | UI/Test | test signal | audio test signal | speaker test sound
freedesktop/audio-volume-change | UI/Clicks | click, notification | volume change pop | soft click
freedesktop/bell | UI/Bells | bell, notification | bell ding | tiny bell | notification bell
freedesktop/camera-shutter | UI/Camera | camera shutter | camera shutter | shutter click
    | photo snap
freedesktop/complete | UI/Chimes | chime, notification | completion chime | task complete sound
freedesktop/device-added | UI/Devices | notification, chime | device connected sound | plug-in chime
freedesktop/device-removed | UI/Devices | notification, chime | device removed sound | unplug chime
freedesktop/dialog-error | UI/Alerts | alert, notification | error alert | error sound
    | warning tone
freedesktop/dialog-information | UI/Alerts | notification, chime | information chime | info alert
freedesktop/dialog-warning | UI/Alerts | alert, notification | warning alert | caution sound
    | warning chime
freedesktop/message | UI/Messages | notification | message alert | new message sound | message ping
freedesktop/message-new-instant | UI/Messages | notification | instant message pop
    | chat notification
freedesktop/network-connectivity-established | UI/Network | notification, chime
    | network connected chime
freedesktop/network-connectivity-lost | UI/Network | notification, alert | network lost alert
freedesktop/phone-incoming-call | UI/Phone | phone ring | incoming call ringtone | phone ringing
freedesktop/phone-outgoing-busy | UI/Phone | busy signal | busy signal | engaged tone | busy tone
freedesktop/phone-outgoing-calling | UI/Phone | ringback tone | ringback tone | outgoing call tone
freedesktop/power-plug | UI/Power | notification | power plugged in sound | charger connected blip
freedesktop/power-unplug | UI/Power | notification | power unplugged sound | charger removed blip
freedesktop/screen-capture | UI/Camera | camera shutter | screenshot shutter | screen capture click
freedesktop/service-login | UI/Session | chime, notification | login chime | welcome chime
    | logon sound
freedesktop/service-logout | UI/Session | chime, notification | logout chime | goodbye chime
freedesktop/suspend-error | UI/Alerts | alert | suspend error alert | failure tone | error beep
freedesktop/trash-empty | UI/Trash | paper crumpling | ~paper crumpling | trash emptying
    | ~crumpled paper
freedesktop/window-attention | UI/Alerts | alert, notification | attention alert
    | window attention ping
freedesktop/window-question | UI/Alerts | alert, notification | question prompt sound | query chime
deepin/audio-volume-change | UI/Clicks | click, notification | volume change click | soft pop
deepin/camera-shutter | UI/Camera | camera shutter | camera shutter | shutter snap | photo click
deepin/complete-copy | UI/Chimes | chime, notification | copy complete chime | done sound
deepin/complete-print | UI/Chimes | chime, notification | print complete chime | printing done
deepin/desktop-login | UI/Session | startup sound, chime | desktop startup melody | login jingle
deepin/desktop-logout | UI/Session | shutdown sound, chime | logout melody | goodbye jingle
deepin/device-added | UI/Devices | notification, chime | device connected blip | plug-in sound
deepin/device-removed | UI/Devices | notification, chime | device removed blip | unplug sound
deepin/dialog-error-critical | UI/Alerts | alert, notification | critical error alert
    | urgent alarm tone
deepin/dialog-error-serious | UI/Alerts | alert, notification | serious error alert | error tone
deepin/dialog-error | UI/Alerts | alert, notification | error alert | error blip | warning tone
deepin/message | UI/Messages | notification | message notification | new message chime
deepin/power-plug | UI/Power | notification | charger plugged in | power connected sound
deepin/power-unplug-battery-low | UI/Power | notification, alert | low battery warning
deepin/power-unplug | UI/Power | notification | charger unplugged | power disconnected sound
deepin/screen-capture-complete | UI/Camera | camera shutter | screenshot taken
    | capture complete click
deepin/screen-capture | UI/Camera | camera shutter | screen capture click | screenshot shutter
deepin/suspend-resume | UI/Session | chime, notification | resume from sleep chime | wake-up sound
deepin/system-shutdown | UI/Session | shutdown sound, chime | system shutdown melody
    | power-off jingle
deepin/trash-empty | UI/Trash | paper crumpling | ~paper crumpling | trash emptying
    | ~rustling paper
deepin/x-deepin-app-sent-to-desktop | UI/Desktop | notification, whoosh | app sent to desktop whoosh
"""


@dataclass(frozen=True)
class Recording:
    key: str
    folder: str
    labels: tuple[str, ...]
    nouns: tuple[Noun, ...]

    @property
    def package(self) -> str:
        return self.key.split("/")[0]


def _parse(cells: list[str]) -> Recording:
    key, folder, labels, *nouns = cells
    parsed = tuple(Noun(n.lstrip("~"), not n.startswith("~")) for n in nouns)
    return Recording(key, folder, tuple(x.strip() for x in labels.split(",")), parsed)


RECORDINGS = {r.key: r for r in map(_parse, table_rows(_TABLE))}

# Playback-rate changes as (up, down) resampling factors: slower is lower, faster is higher.
_PITCH_SHIFTS = {"low": ((5, 4), (4, 3)), "medium": ((1, 1),), "high": ((4, 5), (3, 4))}
_MAX_SECONDS = 8.0
_MIN_SECONDS = 1.0


def recipes() -> list[Recipe]:
    return [Recipe(k, _is_ood(r)) for k, r in RECORDINGS.items()]


def draft(key: str, rng: np.random.Generator) -> Draft:
    rec = RECORDINGS[key]
    package, category = PACKAGES[rec.package]
    title, region = original_title(key)
    params: dict[str, Any] = {"package": package, "recording": key, "original_title": title}
    params["pitch"] = str(rng.choice(list(_PITCH_SHIFTS), p=[0.25, 0.5, 0.25]))
    choices = _PITCH_SHIFTS[params["pitch"]]
    up, down = choices[int(rng.integers(len(choices)))]
    params["resample"] = [up, down]
    params["lead_s"] = round(float(rng.uniform(0.05, 0.4)), 2)
    params.update(sample_scene(rng))
    described = title.lower() + (f" ({region.lower()})" if region else "")
    subject = Subject(rec.nouns, extras=(f"{described}, {_with_article(category)}",))
    words = {k: params[k] for k in ("pitch", *SCENE_KEYS)}
    captions = compose(subject, words, rng)
    stem = "_".join([_slug(title), *([params["pitch"]] if params["pitch"] != "medium" else [])])
    return Draft(list(rec.labels), params, captions, stem, rec.folder, title)


def render(params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    up, down = params["resample"]
    x = load_recording(params["recording"])
    if (up, down) != (1, 1):
        from scipy import signal

        x = signal.resample_poly(x, up, down)
    x = np.concatenate([np.zeros(int(params["lead_s"] * SAMPLE_RATE)), x])
    x = x[: int(_MAX_SECONDS * SAMPLE_RATE)]
    return np.concatenate([x, np.zeros(max(int(_MIN_SECONDS * SAMPLE_RATE) - len(x), 0))])


def original_title(key: str) -> tuple[str, str]:
    """The recording's own name, from the .cat title or the file name, and its game region."""
    package, name = key.split("/")
    if package != "opensfx":
        return name.removeprefix("x-deepin-").replace("-", " ").capitalize(), ""
    raw = opensfx_index()[int(name, 16)][0]
    quoted = re.match(r'"([^"]+)"', raw)
    title = re.sub(r"\s*\(\d\)\s*$", "", quoted.group(1) if quoted else raw).strip()
    region, _, rest = title.rpartition(": ")
    return rest.strip().rstrip(")").capitalize(), region


@functools.lru_cache(maxsize=1)
def opensfx_index() -> list[tuple[str, int, int]]:
    """(title, offset, length) of every sample in opensfx.cat.

    The file starts with (offset, size) pairs of little-endian uint32; the first offset, with
    its top flag bit cleared, is also the table's length, hence the sample count.
    """
    data = OPENSFX_CAT.read_bytes()
    count = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
    entries = []
    for i in range(count):
        offset, size = struct.unpack_from("<II", data, i * 8)
        offset &= 0x7FFFFFFF
        name_len = data[offset]
        title = data[offset + 1 : offset + 1 + name_len].rstrip(b"\0").decode("latin-1")
        entries.append((title, offset + 1 + name_len, size - 1 - name_len))
    return entries


@functools.cache
def load_recording(key: str) -> np.ndarray:
    """A recording as mono float64 at 16 kHz (cached: each worker decodes each file once)."""
    package, name = key.split("/")
    if package == "opensfx":
        _, offset, length = opensfx_index()[int(name, 16)]
        with OPENSFX_CAT.open("rb") as f:
            f.seek(offset)
            audio, rate = sf.read(io.BytesIO(f.read(length)), dtype="float64")
    else:
        folder = FREEDESKTOP_DIR if package == "freedesktop" else DEEPIN_DIR
        path = next(p for p in (folder / f"{name}.oga", folder / f"{name}.wav") if p.exists())
        audio, rate = sf.read(path, dtype="float64")
    return resample(to_mono(audio), rate, SAMPLE_RATE)


def _is_ood(rec: Recording) -> bool:
    return rec.package in OOD_PACKAGES or bool(set(rec.labels) & set(OOD_LABELS))


def _with_article(text: str) -> str:
    return f"{'an' if text[0] in 'aeiou' else 'a'} {text}"


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
