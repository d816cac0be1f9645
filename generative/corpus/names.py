"""What a recorded file is, read from its path: keep or drop it, and its labels.

Sound libraries are labelled by their file names and folders, so the names are the labels:
`default_gravel_footstep.1.ogg` is a gravel footstep, `FootStepSnow2.ogg` a snow footstep.
The labels are the search queries of the evaluation (clips sharing a label are relevant
to it), so each must name a sound on its own. The rules, in order:

1. Words: camelCase, snake_case and digits split into lower-case words; a leading game
   prefix (`default_`, `sfx_`) and filler (`loop`, `left`, `sounds`) go. A name whose
   digits belong to it (`f16_1.wav`) is looked up whole first (`CODED_NAMES`).
2. The reviewed dictionary (`words.SYNONYMS`) expands abbreviations and fixes spellings
   (`exp` -> explosion, `trafic` -> traffic).
3. A word of six letters or more outside the vocabulary is split into the fewest
   vocabulary words of three letters or more (`carhorn` -> car horn, `machinegun` ->
   machine gun); a word that cannot be split whole stays as it is.
4. A folder that names the sound adds its head noun (`explosions/small.wav` -> small
   explosion, `shoot/laser.wav` -> laser shot), unless a word already starts with it
   (`saw/sawing` stays sawing).
5. Modifiers (high, small, empty ...) stay in the phrase but are never a label; at the
   end of a name they move to its front (`fire_large` -> large fire). Compounds whose
   words mislead alone (machine gun, fire truck) are one label; a word of one or two
   letters is never a label. A name left with no label takes its folder's word
   (`inventory/inventory_heavy.ogg` -> heavy inventory).
6. The head noun comes first among the labels; the others follow in phrase order.
7. Checked first: LinCity-NG names its sounds after the map tile they play for
   (Residential, PowerCoal, Tip), not after what is heard. Those names are looked up in
   `words.PLACES`, which gives what the place sounds like and its labels: the tile's
   everyday sound where it has one ("quiet power station hum", "heavy traffic"), else
   "<place> ambience" as one label ("hospital ambience"), never the tile name alone.

The word lists live in `words`; the tests hold a table of real paths.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from generative.corpus.words import (
    CODED_NAMES,
    COMPOUNDS,
    FILLER,
    FOLDER_HEADS,
    HEAD_LAST,
    HEADS,
    MODIFIERS,
    PLACES,
    PREFIXES,
    SYNONYMS,
    VOCABULARY,
)

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
    # LinCity-NG's window sounds and Widelands' chat, message and alert signals.
    (r"lincity-ng/sounds/window(open|close)\.", "interface"),
    (r"widelands/data/sound/(lobby_|message_|create_construction_site|military/)", "interface"),
)
AUDIO_SUFFIXES = (".ogg", ".oga", ".wav", ".mp3", ".wv", ".flac")

# Folders that say nothing about the sound (install layout, game names, formats).
_NOISE_FOLDERS = frozenset(
    "usr share games game sounds sound sfx soundfx audio data wav ogg base mods mod "
    "assets techs megapack commondata globalmods none apoc stamps tuxpaint qabcs abcs all "
    "noises minetest minetest_game scorched3d btanks teeworlds lugaru flare fantasycore "
    "empyrean_campaign searchandrescue lincity-ng widelands redeclipse triplea megaglest "
    "ufoai supertuxkart extremetuxracer etr factions units tilesets world data2 "
    "homedecor sounds2 0snd.pk3 packages default".split()
)
_MIN_SPLIT = 6  # shorter words are never split
_MIN_PIECE = 3  # nor split into pieces shorter than this


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
    name = _without_suffix(path.rsplit("/", 1)[-1])
    return re.sub(r"([._\- ]?\d+)+$", "", name)


def group_key(package: str, path: str) -> str:
    """Variations of one recording (step1..step5, gravel_footstep.1..3) share a group."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return f"{package}:{folder}/{stem_of(path).lower()}"


def segment(word: str) -> list[str]:
    """A compound -> the fewest vocabulary words it is made of, else [word] (rule 3)."""
    if len(word) < _MIN_SPLIT or word in VOCABULARY or word in SYNONYMS or word in FILLER:
        return [word]
    return list(_pieces(word) or (word,))


def name_sound(path: str) -> Naming:
    """Labels and a phrase from the file name, context from the folders."""
    parts = path.split("/")
    folders = [p for p in parts[:-1] if p.lower() not in _NOISE_FOLDERS]
    context = "/".join(_context_words(f) for f in folders).strip("/")
    stem = stem_of(parts[-1])
    place = PLACES.get("".join(split_words(stem))) if "lincity-ng/sounds/" in path else None
    if place is not None:  # rule 7
        return Naming(place[1], place[0], context)
    units = _units(_phrase_words(parts, stem))
    labels = [u for u in units if u not in MODIFIERS and len(u) > 2]
    if not labels and folders:  # rule 5: only modifiers left, the folder names the sound
        labels = [" ".join(split_words(folders[-1]))]
        units.append(labels[0])
    phrase = " ".join(units) or "sound"
    heads = [u for u in labels if u.split()[-1] in HEADS]
    first = heads[-1] if heads else labels[-1] if labels else phrase
    return Naming((first, *[u for u in labels if u != first]), phrase, context)


def _phrase_words(parts: list[str], stem: str) -> list[str]:
    """Rules 1-5 up to the labels: the name's words in phrase order."""
    parent = parts[-2].lower() if len(parts) > 1 else ""
    # A name that repeats its folder (triplea: battle_land/battle_land_04_sword_fighting).
    if parent and stem.lower().startswith(parent + "_"):
        stem = stem[len(parent) + 1 :]
    coded = re.match(r"([a-z]+\d+)([._\-]\d+)?$", _without_suffix(parts[-1]).lower())
    if coded and coded.group(1) in CODED_NAMES:
        stem = CODED_NAMES[coded.group(1)]
    words = _name_words(stem)
    # A folder that names the sound (ufoai: footsteps/gravel1.ogg is a gravel footstep).
    head = FOLDER_HEADS.get(parent) or SYNONYMS.get(parent, parent)
    if (head in HEADS or parent in FOLDER_HEADS) and not any(w.startswith(head) for w in words):
        words.append(head)
    else:  # "fire_large" -> large fire (before a folder's head they already read well)
        kept = _strip_modifiers(words)
        words = words[len(kept) :] + kept
    # "FootStepSnow" reads better as "snow footstep".
    if len(words) == 2 and words[0] in HEAD_LAST:
        words.reverse()
    return words


def _name_words(stem: str) -> list[str]:
    """Rules 1-3: the name's words, prefixes and filler dropped, expanded and split."""
    words = [w for w in split_words(stem) if len(w) > 1]
    while words and words[0] in PREFIXES:
        words = words[1:]
    expanded: list[str] = []
    for word in words:
        for piece in segment(word):
            if piece not in FILLER:
                expanded += SYNONYMS.get(piece, piece).split()
    return list(dict.fromkeys(expanded)) or split_words(stem)[:1]


def _strip_modifiers(words: list[str]) -> list[str]:
    """The words without their trailing modifiers ("energy bar full" -> energy bar)."""
    end = len(words)
    while end and words[end - 1] in MODIFIERS:
        end -= 1
    return words[:end]


def _units(words: list[str]) -> list[str]:
    """Words -> label units: a reviewed compound's two words become one unit."""
    units: list[str] = []
    for word in words:
        if units and f"{units[-1]} {word}" in COMPOUNDS:
            units[-1] = f"{units[-1]} {word}"
        else:
            units.append(word)
    return units


@functools.lru_cache(maxsize=4096)
def _pieces(word: str) -> tuple[str, ...] | None:
    """The fewest known pieces (vocabulary, filler, dictionary keys) that spell `word`."""
    if _known(word):
        return (word,)
    best: tuple[str, ...] | None = None
    for cut in range(_MIN_PIECE, len(word) - _MIN_PIECE + 1):
        head, rest = word[:cut], _pieces(word[cut:])
        if _known(head) and rest and (best is None or len(rest) + 1 < len(best)):
            best = (head, *rest)
    return best


def _known(piece: str) -> bool:
    if len(piece) < _MIN_PIECE:
        return False
    return piece in VOCABULARY or piece in FILLER or piece in SYNONYMS


def _without_suffix(name: str) -> str:
    for suffix in AUDIO_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _context_words(folder: str) -> str:
    return " ".join(SYNONYMS.get(w, w) for w in split_words(folder))
