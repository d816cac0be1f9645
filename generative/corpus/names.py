"""What a recorded file is, read from its path: keep or drop it, and its labels.

Sound libraries are labelled by their file names and folders, so the names are the labels:
`default_gravel_footstep.1.ogg` is a gravel footstep, `FootStepSnow2.ogg` a snow footstep.
The rules below are explicit and reviewed; the tests hold a table of real paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (pattern on the lower-cased path inside the package, why the file is not a sound effect)
DROP_RULES: tuple[tuple[str, str], ...] = (
    (r"(^|/)(music|tunes|songs?|soundtrack|jingles?)/", "music"),
    (r"anthem|_flag\.|required_your_turn_series|(^|/)game_(start|won)/", "music"),
    (r"(^|/)[^/]*(music|theme)[^/]*$", "music"),
    (r"remix|fanfare|flute|la_reine_et_ses_enfants|(^|/)jingle\d*\.", "music"),
    (r"(^|/)(intro\d*|track_intro|gp_end)\.|beneath_the_rabbit_hole|lenautile_restaurant", "music"),
    (r"_speech\.|_pa\.|(^|/)talk\.|radiomessage|tv_news|_merchant_\d", "voice line"),
    (r"tuxpaint/stamps/symbols/", "spoken letter or number"),
    (r"tuxpaint/stamps/.*_[a-z]{2}(_[a-z]{2})?\.ogg$", "spoken stamp name"),
    (r"(^|/)(menu|ui|gui|interface|geoscape|seq)/", "interface"),
    (r"(^|/|_)(ack|select)\d*\.", "unit voice line"),
    (r"(^|/)vo_|(^|/)voices?/|(^|/)announcer/|(^|/)taunts?/", "voice line"),
    (r"megaglest/techs/.*/units/.*_(die|hit)\d*\.", "unit voice line"),
    (r"(^|/)(click|button|beep|blip|select|hover)[_\-\d.]", "interface"),
    (r"chat_(message|join_game|slap)|click_(button|plot)", "interface"),
)
AUDIO_SUFFIXES = (".ogg", ".oga", ".wav", ".mp3", ".wv", ".flac")

# Game and library prefixes and filler words, never labels.
PREFIXES = frozenset(
    "default env sounds sound snd sfx wp foley fx amb tnt xpanes doors env_sounds".split()
)
_FILLER = frozenset(
    "the a an of and with in on no to loop loops looped left right l r mono stereo "
    "short long var alt new old final edit mix version v take".split()
)
# A reviewed dictionary: abbreviations, misspellings and synonyms -> the plain word(s).
SYNONYMS: dict[str, str] = {
    "footstep": "footstep",
    "footsteps": "footstep",
    "foot": "footstep",
    "step": "footstep",
    "steps": "footstep",
    "walk": "footstep",
    "swimstep": "swimming stroke",
    "expl": "explosion",
    "explosions": "explosion",
    "doors": "door",
    "engines": "engine",
    "weapons": "weapon",
    "impacts": "impact",
    "explode": "explosion",
    "explo": "explosion",
    "trafic": "traffic",
    "croud": "crowd",
    "shotty": "shotgun",
    "shotgn": "shotgun",
    "gren": "grenade",
    "mg": "machine gun",
    "minigun": "machine gun",
    "wpn": "weapon",
    "heli": "helicopter",
    "chopper": "helicopter",
    "engn": "engine",
    "eng": "engine",
    "amb": "ambience",
    "ambient": "ambience",
    "ambiance": "ambience",
    "wnd": "wind",
    "wtr": "water",
    "bg": "background",
    "dmg": "damage",
    "hit": "hit",
    "impct": "impact",
    "nightime": "night",
    "nighttime": "night",
    "day": "daytime",
    "desertday": "desert daytime",
    "sunny": "sunny",
    "policecar": "police car",
    "firetruck": "fire truck",
    "oceanwaves": "ocean waves",
    "nightcrickets": "night crickets",
    "cricket": "crickets",
    "breakglass": "glass breaking",
    "doorbell": "doorbell",
    "extinguish": "extinguishing",
    "flint": "flint",
    "dig": "digging",
    "dug": "digging",
    "swish": "swish",
    "woosh": "whoosh",
    "sheathe": "sheathing",
    "draw": "drawing",
    "rtn": "return",
    "sw": "sword",
    "axe": "axe",
    "cudgel": "club",
    "harvest": "harvesting",
    "chop": "chopping",
    "saber": "sabre",
    "kaboom": "explosion",
    "boom": "explosion",
    "zap": "zap",
    "spl": "splash",
    "lowlow": "low",
    "residentiallowlow": "residential",
    "cicada": "cicadas",
    "waterfall": "waterfall",
    "droplets": "drips",
    "drip": "drips",
}
# Head nouns that come first among the labels when they appear in a name.
_HEADS = frozenset(
    "footstep explosion shot gunfire door engine rain wind thunder fire water splash "
    "crickets bird birds owl wolf dog cow sheep horse rooster chicken helicopter train "
    "car traffic crowd waterfall creek river ocean waves drips whoosh impact hit crash "
    "glass sword knife axe hammer saw scythe".split()
)
# Heads that read better after their modifier: "snow footstep", "wooden door".
_HEAD_LAST = frozenset(("footstep", "door", "engine", "explosion", "impact", "crowd"))
# Folders that say nothing about the sound (install layout, game names, formats).
_NOISE_FOLDERS = frozenset(
    "usr share games game sounds sound sfx soundfx audio data wav ogg base mods mod "
    "assets techs megapack commondata globalmods none apoc stamps tuxpaint qabcs abcs all "
    "noises minetest minetest_game scorched3d btanks teeworlds lugaru flare fantasycore "
    "empyrean_campaign searchandrescue lincity-ng widelands redeclipse triplea megaglest "
    "ufoai supertuxkart extremetuxracer etr factions units tilesets world data2 "
    "homedecor sounds2 0snd.pk3 packages default".split()
)


@dataclass(frozen=True)
class Naming:
    """Labels (head noun first), the name as a phrase, and the folder path as context."""

    labels: tuple[str, ...]
    phrase: str
    context: str


def drop_reason(path: str) -> str | None:
    """Why a file is not a sound effect, or None to keep it."""
    lowered = path.lower()
    if not lowered.endswith(AUDIO_SUFFIXES):
        return "not audio"
    for pattern, reason in DROP_RULES:
        if re.search(pattern, lowered):
            return reason
    return None


def split_words(text: str) -> list[str]:
    """camelCase, snake_case, kebab-case and digits -> lower-case words, numbers dropped."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", text)
    return [w for w in re.split(r"[^a-zA-Z]+", text.lower()) if w]


def stem_of(path: str) -> str:
    """The file name without suffix and numbering: `default_gravel_footstep.1.ogg` -> ..."""
    name = path.rsplit("/", 1)[-1]
    for suffix in AUDIO_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"([._\- ]?\d+)+$", "", name)


def group_key(package: str, path: str) -> str:
    """Variations of one recording (step1..step5, gravel_footstep.1..3) share a group."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return f"{package}:{folder}/{stem_of(path).lower()}"


def name_sound(path: str) -> Naming:
    """Labels and a phrase from the file name, context from the folders."""
    parts = path.split("/")
    folders = [p for p in parts[:-1] if p.lower() not in _NOISE_FOLDERS]
    stem = stem_of(parts[-1])
    # A name that repeats its folder (triplea: battle_land/battle_land_04_sword_fighting).
    parent = parts[-2] if len(parts) > 1 else ""
    if parent and stem.lower().startswith(parent.lower() + "_"):
        stem = stem[len(parent) + 1 :]
    words = [w for w in split_words(stem) if len(w) > 1 or w in ("a",)]
    while words and words[0] in PREFIXES:
        words = words[1:]
    expanded: list[str] = []
    for word in words:
        if word in _FILLER:
            continue
        expanded += SYNONYMS.get(word, word).split()
    phrase_words = list(dict.fromkeys(expanded)) or [w for w in split_words(stem)][:1] or ["sound"]
    # A folder that names the sound (ufoai: footsteps/gravel1.ogg is a gravel footstep).
    folder_head = SYNONYMS.get(parent.lower(), parent.lower())
    if folder_head in _HEADS and folder_head not in phrase_words:
        phrase_words.append(folder_head)
    # "FootStepSnow" reads better as "snow footstep".
    if len(phrase_words) == 2 and phrase_words[0] in _HEAD_LAST:
        phrase_words.reverse()
    phrase = " ".join(phrase_words)
    heads = [w for w in phrase_words if w in _HEADS]
    head = heads[-1] if heads else phrase_words[-1]
    labels = (head, *[w for w in phrase_words if w != head])
    context = "/".join(_context_words(f) for f in folders)
    return Naming(labels, phrase, context.strip("/"))


def _context_words(folder: str) -> str:
    return " ".join(SYNONYMS.get(w, w) for w in split_words(folder))
