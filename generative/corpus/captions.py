"""Paraphrased captions: the same clip described with other words, order and detail.

Every attribute a clip varies (pitch, rate, room, distance, ...) is named in words, so a
search for "a high, fast siren in a large hall" has clips that truly match it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Words that go before the noun ("a high, fast siren"). The first synonym is the plain one.
ADJECTIVES: dict[str, dict[str, tuple[str, ...]]] = {
    "loudness": {"quiet": ("quiet", "soft", "faint"), "loud": ("loud", "powerful", "very loud")},
    "duration": {"short": ("short", "brief", "momentary"), "long": ("long", "lengthy", "extended")},
    "distance": {"far": ("distant", "far-off", "remote"), "near": ("close", "close-up", "nearby")},
    "pitch": {"low": ("low", "low-pitched", "deep"), "high": ("high", "high-pitched", "shrill")},
    "rate": {"slow": ("slow", "slow-paced", "unhurried"), "fast": ("fast", "rapid", "quick")},
    "intensity": {"light": ("light", "gentle", "weak"), "heavy": ("heavy", "intense", "strong")},
    "direction": {"up": ("rising", "upward", "ascending"), "down": ("falling", "downward")},
    "pattern": {
        "repeating": ("repeating", "rhythmic", "recurring"),
        "looping": ("looping", "continuous", "seamless looping"),
    },
}

# Phrases that follow the noun ("... in a large hall, far away, with background hum").
PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "room": {
        "small room": ("in a small room", "inside a small, boxy room", "in a little room"),
        "large hall": ("in a large hall", "echoing in a big hall", "in a reverberant hall"),
    },
    "distance": {
        "far": ("far away", "in the distance", "heard from far away"),
        "near": ("up close", "close to the microphone", "close by"),
    },
    "background": {
        "hum": ("with background hum", "over a low electrical hum", "with mains hum behind it"),
        "hiss": ("with background hiss", "over steady static hiss", "with hissing noise behind"),
        "rumble": ("with background rumble", "over a distant low rumble", "with rumble behind"),
    },
}

_ADJECTIVE_ORDER = (
    "loudness",
    "duration",
    "distance",
    "pitch",
    "rate",
    "intensity",
    "direction",
    "pattern",
)
_PHRASE_ORDER = ("room", "distance", "background")


@dataclass(frozen=True)
class Noun:
    """One way to name the sound; uncountable nouns ("rain", "speech") take no article."""

    text: str
    countable: bool = True


@dataclass(frozen=True)
class Subject:
    nouns: tuple[Noun, ...]
    # Whole captions with extra detail (a transcript, the original title), used as they are.
    extras: tuple[str, ...] = field(default_factory=tuple)


def mentioned(attrs: dict[str, str]) -> dict[str, str]:
    """Attributes worth a word: the unremarkable middle values go unsaid."""
    return {k: v for k, v in attrs.items() if v in ADJECTIVES.get(k, {}) or v in PHRASES.get(k, {})}


def compose(subject: Subject, attrs: dict[str, str], rng: np.random.Generator) -> list[str]:
    """At least three distinct captions; the first two name every mentioned attribute.

    Wording draws come from a child generator, so rewording captions never shifts the
    caller's later draws (a clip's parameters and split stay put).
    """
    rng = rng.spawn(1)[0]
    said = mentioned(attrs)
    nouns = list(subject.nouns)
    order = rng.permutation(len(nouns))
    full = _adjectival(nouns[order[0]], said, rng, plain=True)
    reordered = _descriptive(nouns[order[1 % len(nouns)]], said, rng)
    short = _short(nouns[order[2 % len(nouns)]], said, rng)
    captions = [full, reordered, short, *(_with_scene(e, said, rng) for e in subject.extras)]
    captions = list(dict.fromkeys(c for c in captions if c))
    fallbacks = [f"the sound of {_article(nouns[i], [])}" for i in order]
    fallbacks += [f"{nouns[i].text} sound effect" for i in order]
    for extra in fallbacks:
        if len(captions) >= 3:
            break
        if extra not in captions:
            captions.append(extra)
    return captions


def _article(noun: Noun, adjectives: list[str]) -> str:
    phrase = ", ".join(adjectives)
    phrase = f"{phrase} {noun.text}" if phrase else noun.text
    if not noun.countable:
        return phrase
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def _pick(words: tuple[str, ...], rng: np.random.Generator, plain: bool) -> str:
    return words[0] if plain else words[int(rng.integers(len(words)))]


def _adjectival(noun: Noun, said: dict[str, str], rng: np.random.Generator, plain: bool) -> str:
    adjectives = [
        _pick(ADJECTIVES[k][said[k]], rng, plain)
        for k in _ADJECTIVE_ORDER
        if k in said and said[k] in ADJECTIVES[k]
    ]
    tail = [
        _pick(PHRASES[k][said[k]], rng, plain)
        for k in _PHRASE_ORDER
        if k != "distance" and k in said
    ]
    return " ".join([_article(noun, adjectives), *tail])


def _descriptive(noun: Noun, said: dict[str, str], rng: np.random.Generator) -> str:
    adjectives = [
        _pick(ADJECTIVES[k][said[k]], rng, plain=False)
        for k in _ADJECTIVE_ORDER
        if k != "distance" and k in said and said[k] in ADJECTIVES[k]
    ]
    parts = [noun.text]
    if adjectives:
        head = ", ".join(adjectives[:-1])
        parts.append(f"{head} and {adjectives[-1]}" if head else adjectives[-1])
    phrases = [_pick(PHRASES[k][said[k]], rng, plain=False) for k in _PHRASE_ORDER if k in said]
    parts += [phrases[i] for i in rng.permutation(len(phrases))]
    return ", ".join(parts)


def _short(noun: Noun, said: dict[str, str], rng: np.random.Generator) -> str:
    keys = [k for k in _ADJECTIVE_ORDER if k in said and said[k] in ADJECTIVES[k]]
    chosen = sorted(rng.permutation(keys)[:2].tolist(), key=keys.index) if keys else []
    adjectives = [_pick(ADJECTIVES[k][said[k]], rng, plain=False) for k in chosen]
    return _article(noun, adjectives)


def _with_scene(extra: str, said: dict[str, str], rng: np.random.Generator) -> str:
    """A detailed caption plus one scene phrase, so it too reads like a recording."""
    scene = [k for k in _PHRASE_ORDER if k in said]
    if not scene:
        return extra
    key = scene[int(rng.integers(len(scene)))]
    return f"{extra}, {_pick(PHRASES[key][said[key]], rng, plain=False)}"


def with_article(noun: Noun) -> str:
    """The noun as it reads inside a longer phrase: "a siren", "rain"."""
    return _article(noun, [])
