"""Speech source: espeak-ng voices, male and female, in eight languages and three paces."""

from __future__ import annotations

import subprocess
import unicodedata
from typing import Any

import numpy as np

from generative.corpus.captions import Noun, Subject, compose
from generative.corpus.effects import SAMPLE_RATE, SCENE_KEYS, resample, sample_scene
from generative.corpus.recipes import Draft, Recipe

ESPEAK = "espeak-ng"

# code: (label, adjective, phrases). Italian and Dutch are held out for the ood split.
LANGUAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "en": (
        "english",
        "English",
        (
            "Good morning, how are you today?",
            "The train to the city leaves in ten minutes.",
            "Please close the door behind you.",
            "I think it is going to rain this afternoon.",
            "Can you hear the music next door?",
            "Thank you very much for your help.",
            "We should meet again next week.",
        ),
    ),
    "de": (
        "german",
        "German",
        (
            "Guten Morgen, wie geht es dir heute?",
            "Der Zug in die Stadt fährt in zehn Minuten ab.",
            "Bitte schließen Sie die Tür hinter sich.",
            "Ich glaube, heute Nachmittag wird es regnen.",
            "Vielen Dank für Ihre Hilfe.",
            "Wir sehen uns nächste Woche wieder.",
        ),
    ),
    "fr": (
        "french",
        "French",
        (
            "Bonjour, comment allez-vous aujourd'hui ?",
            "Le train pour la ville part dans dix minutes.",
            "Fermez la porte derrière vous, s'il vous plaît.",
            "Je crois qu'il va pleuvoir cet après-midi.",
            "Merci beaucoup pour votre aide.",
            "Nous nous reverrons la semaine prochaine.",
        ),
    ),
    "es": (
        "spanish",
        "Spanish",
        (
            "Buenos días, ¿cómo estás hoy?",
            "El tren a la ciudad sale en diez minutos.",
            "Por favor, cierra la puerta detrás de ti.",
            "Creo que va a llover esta tarde.",
            "Muchas gracias por tu ayuda.",
            "Nos vemos la próxima semana.",
        ),
    ),
    "pt": (
        "portuguese",
        "Portuguese",
        (
            "Bom dia, como você está hoje?",
            "O comboio para a cidade parte daqui a dez minutos.",
            "Por favor, feche a porta.",
            "Acho que vai chover esta tarde.",
            "Muito obrigado pela sua ajuda.",
        ),
    ),
    "sv": (
        "swedish",
        "Swedish",
        (
            "God morgon, hur mår du i dag?",
            "Tåget till staden går om tio minuter.",
            "Stäng dörren efter dig, tack.",
            "Jag tror att det kommer att regna i eftermiddag.",
            "Tack så mycket för hjälpen.",
        ),
    ),
    "it": (
        "italian",
        "Italian",
        (
            "Buongiorno, come stai oggi?",
            "Il treno per la città parte tra dieci minuti.",
            "Per favore, chiudi la porta.",
            "Penso che pioverà questo pomeriggio.",
            "Grazie mille per il tuo aiuto.",
        ),
    ),
    "nl": (
        "dutch",
        "Dutch",
        (
            "Goedemorgen, hoe gaat het vandaag?",
            "De trein naar de stad vertrekt over tien minuten.",
            "Doe de deur achter je dicht, alstublieft.",
            "Ik denk dat het vanmiddag gaat regenen.",
            "Heel erg bedankt voor je hulp.",
        ),
    ),
}
OOD_LANGUAGES = ("it", "nl")
OOD_LABELS = ("italian", "dutch", "whispering")

# espeak-ng voice variants by speaker kind; whispering is held out for the ood split.
VARIANTS = {
    "male": ("m1", "m2", "m3", "m4", "m5", "m6", "m7"),
    "female": ("f1", "f2", "f3", "f4", "f5"),
    "whisper-male": ("whisper",),
    "whisper-female": ("whisperf",),
}
_WPM = {"slow": (105, 130), "medium": (150, 180), "fast": (210, 250)}
_ESPEAK_PITCH = {"low": (15, 30), "medium": (42, 58), "high": (70, 90)}


def recipes() -> list[Recipe]:
    keys = [f"{lang}/{kind}" for lang in LANGUAGES for kind in ("male", "female")]
    keys += ["en/whisper-male", "en/whisper-female", "de/whisper-female"]
    return [Recipe(k, _is_ood(k)) for k in keys]


def draft(key: str, rng: np.random.Generator) -> Draft:
    lang, kind = key.split("/")
    label, adjective, phrases = LANGUAGES[lang]
    gender = kind.removeprefix("whisper-")
    variant = str(rng.choice(VARIANTS[kind]))
    params: dict[str, Any] = {
        "language": label,
        "gender": gender,
        "voice": f"{lang}+{variant}",
        "whisper": kind.startswith("whisper"),
        "text": str(rng.choice(phrases)),
        "rate": str(rng.choice(list(_WPM), p=[0.3, 0.4, 0.3])),
        "pitch": str(rng.choice(list(_ESPEAK_PITCH), p=[0.3, 0.4, 0.3])),
    }
    params["words_per_minute"] = int(rng.integers(*_WPM[params["rate"]]))
    params["espeak_pitch"] = int(rng.integers(*_ESPEAK_PITCH[params["pitch"]]))
    params["lead_s"] = round(float(rng.uniform(0.1, 0.4)), 2)
    params.update(sample_scene(rng))
    labels = ["speech", "whispering" if params["whisper"] else f"{gender} voice", label]
    if params["whisper"]:
        labels.insert(2, f"{gender} voice")
    words = {k: params[k] for k in ("rate", "pitch", *SCENE_KEYS)}
    captions = compose(_subject(params, adjective), words, rng)
    style = ["whisper"] if params["whisper"] else []
    stem = "_".join([label, gender, *style, _ascii(" ".join(params["text"].split()[:2]))])
    manner = "whisper" if params["whisper"] else "voice"
    title = f'{adjective} {gender} {manner}: "{params["text"]}"'
    return Draft(labels, params, captions, stem, f"Voices/{adjective}", title)


def render(params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Run espeak-ng to WAV on stdout and resample its 22.05 kHz output to 16 kHz."""
    cmd = [
        ESPEAK, "-v", params["voice"], "-s", str(params["words_per_minute"]),
        "-p", str(params["espeak_pitch"]), "--stdout", params["text"],
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    rate, pcm = _parse_wav(result.stdout)
    voice = resample(pcm, rate, SAMPLE_RATE)
    lead = np.zeros(int(params["lead_s"] * SAMPLE_RATE))
    return np.concatenate([lead, voice, np.zeros(int(0.25 * SAMPLE_RATE))])


def _parse_wav(data: bytes) -> tuple[int, np.ndarray]:
    """espeak-ng streams WAV with a placeholder length, so read the chunks by hand."""
    rate = int.from_bytes(data[24:28], "little")
    start = data.index(b"data") + 8
    body = data[start : start + (len(data) - start) // 2 * 2]
    return rate, np.frombuffer(body, dtype="<i2").astype(np.float64) / 32768.0


def _subject(params: dict[str, Any], adjective: str) -> Subject:
    person = "man" if params["gender"] == "male" else "woman"
    nouns: tuple[Noun, ...]
    if params["whisper"]:
        nouns = (
            Noun(f"{person} whispering in {adjective}"),
            Noun(f"whispered {adjective} speech from a {person}", countable=False),
            Noun(f"{params['gender']} voice whispering {adjective}"),
        )
        says = f'a {person} whispers "{params["text"]}" in {adjective}'
    else:
        nouns = (
            Noun(f"{params['gender']} voice speaking {adjective}"),
            Noun(f"{person} talking in {adjective}"),
            Noun(f"{adjective} {params['gender']} speech", countable=False),
            Noun(f"{adjective}-speaking {person}"),
        )
        says = f'a {person} says "{params["text"]}" in {adjective}'
    return Subject(nouns, extras=(says,))


def _is_ood(key: str) -> bool:
    lang, kind = key.split("/")
    return lang in OOD_LANGUAGES or kind.startswith("whisper")


def _ascii(text: str) -> str:
    """A file-name-safe, lower-case, accent-free form of a phrase."""
    plain = unicodedata.normalize("NFKD", text.lower())
    keep = "".join(ch for ch in plain if ch.isascii() and (ch.isalnum() or ch == " "))
    return "_".join(keep.split())
