"""The recorded sounds of the unpacked Debian packages, decoded once and described.

Scanning walks every package, keeps sound effects by the path rules in `names`, drops
exact repeats (content hash) and near repeats (a coarse fingerprint of the decoded audio),
cuts long recordings into segments of at most ten seconds, and measures what captions
say about each: level, length, pitch range, and whether it loops or repeats. Speech with a
known text (spoken stamp descriptions, phone prompts, spoken words) is listed beside it.

Decoded audio (mono, 16 kHz FLAC) and the catalogue itself are cached beside the packages,
keyed by the package versions, so a rebuild decodes nothing.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import shutil
import subprocess
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from generative.corpus.debian import Unpacked, licence
from generative.corpus.effects import SAMPLE_RATE, resample, to_mono
from generative.corpus.names import AUDIO_SUFFIXES, drop_reason, group_key, name_sound

logger = logging.getLogger(__name__)

# Bump when scanning, decoding, measuring or naming changes, so cached catalogues are rebuilt.
CATALOGUE_VERSION = 5
SEGMENT_SECONDS = 10.0
MAX_SEGMENTS = 6
MIN_SECONDS = 0.06
SPEECH_PER_LANGUAGE = 120
_NEAR_DUPLICATE = 0.985

LANGUAGE_NAMES = {
    "en": "english",
    "en_gb": "english",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "ru": "russian",
    "ro": "romanian",
    "ca": "catalan",
    "bg": "bulgarian",
    "be": "belarusian",
    "el": "greek",
    "da": "danish",
    "lt": "lithuanian",
    "nl": "dutch",
    "de": "german",
    "pl": "polish",
    "uk": "ukrainian",
}


@dataclass
class Segment:
    """One recorded clip source: a whole short file or a ten-second slice of a long one."""

    key: str
    package: str
    version: str
    licence: str
    path: str
    group: str
    audio: str  # decoded FLAC, relative to the cache
    start_s: float
    length_s: float
    kind: str  # "effect" or "speech"
    labels: list[str]
    phrase: str
    context: str
    level_db: float = 0.0
    centroid_hz: float = 0.0
    pattern: str = ""  # "looping", "repeating" or ""
    language: str = ""
    text: str = ""
    voice: str = ""


@dataclass
class Catalogue:
    segments: dict[str, Segment]
    # package -> reason -> files dropped; "kept" counts kept files.
    tally: dict[str, dict[str, int]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Candidate:
    package: str
    path: str  # inside the package; "archive.pk3!member" for a file inside a zip
    kind: str
    language: str = ""
    text: str = ""
    voice: str = ""


def load_catalogue(cache: Path, packages: dict[str, Unpacked], workers: int = 2) -> Catalogue:
    """The catalogue for these package versions, from the cache or scanned now."""
    digest = hashlib.sha1(
        json.dumps(
            [CATALOGUE_VERSION, sorted((p.name, p.version) for p in packages.values())]
        ).encode()
    ).hexdigest()[:12]
    cached = cache / f"catalogue-{digest}.json"
    if cached.is_file():
        data = json.loads(cached.read_text(encoding="utf-8"))
        segments = {k: Segment(**v) for k, v in data["segments"].items()}
        return Catalogue(segments, data["tally"], data["versions"])
    catalogue = scan(cache, packages, workers)
    data = {
        "segments": {k: asdict(s) for k, s in catalogue.segments.items()},
        "tally": catalogue.tally,
        "versions": catalogue.versions,
    }
    cached.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return catalogue


def scan(cache: Path, packages: dict[str, Unpacked], workers: int = 2) -> Catalogue:
    tally: dict[str, Counter[str]] = {name: Counter() for name in packages}
    candidates: list[_Candidate] = []
    for package in packages.values():
        for candidate, reason in _candidates(package, packages):
            if reason:
                tally[package.name][reason] += 1
            else:
                candidates.append(candidate)
    decoded = _decode_all(cache, packages, candidates, workers)
    seen_hashes: set[str] = set()
    kept: list[tuple[_Candidate, dict[str, Any]]] = []
    for candidate, info in zip(candidates, decoded, strict=True):
        if info is None:
            tally[candidate.package]["undecodable"] += 1
        elif info["duration"] < MIN_SECONDS or info["level_db"] < -60.0:
            tally[candidate.package]["silent or too short"] += 1
        elif info["sha"] in seen_hashes:
            tally[candidate.package]["exact duplicate"] += 1
        else:
            seen_hashes.add(info["sha"])
            kept.append((candidate, info))
    effects = [k for k in kept if k[0].kind == "effect"]
    effects, near = remove_near_duplicates(effects)
    kept = [k for k in kept if k[0].kind != "effect"] + effects
    kept.sort(key=lambda k: (k[0].package, k[0].path))
    for candidate in near:
        tally[candidate.package]["near duplicate"] += 1
    segments: dict[str, Segment] = {}
    for candidate, info in kept:
        tally[candidate.package]["kept"] += 1
        for segment in _segments(candidate, info, packages[candidate.package]):
            segments[segment.key] = segment
    logger.info("catalogue: %d segments from %d files", len(segments), len(kept))
    return Catalogue(
        segments,
        {name: dict(sorted(c.items())) for name, c in tally.items()},
        {p.name: p.version for p in packages.values()},
    )


def remove_near_duplicates(
    kept: list[tuple[_Candidate, dict[str, Any]]],
) -> tuple[list[tuple[_Candidate, dict[str, Any]]], list[_Candidate]]:
    """Drop files whose decoded audio matches an earlier one's (same length, same shape).

    Two files are near duplicates when their lengths agree within 3% and their coarse
    fingerprints (log band energies over time) correlate above 0.985: re-encodings and
    the same recording copied between a game's tilesets, not merely similar sounds.
    """
    order = sorted(range(len(kept)), key=lambda i: kept[i][1]["duration"])
    dropped: set[int] = set()
    for a_pos, a in enumerate(order):
        if a in dropped:
            continue
        fa = np.asarray(kept[a][1]["fingerprint"])
        for b in order[a_pos + 1 :]:
            if kept[b][1]["duration"] > kept[a][1]["duration"] * 1.03:
                break
            if b in dropped:
                continue
            fb = np.asarray(kept[b][1]["fingerprint"])
            if float(np.dot(fa, fb)) >= _NEAR_DUPLICATE:
                dropped.add(max(a, b))  # the later file in package order goes
                if max(a, b) == a:
                    break
    return [k for i, k in enumerate(kept) if i not in dropped], [
        kept[i][0] for i in sorted(dropped)
    ]


def fingerprint(x: np.ndarray) -> list[float]:
    """Log energies of 8 bands in 16 time slices, z-scored and unit length (128 numbers)."""
    n_fft = 512
    if len(x) < n_fft:
        x = np.concatenate([x, np.zeros(n_fft - len(x))])
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    edges = np.geomspace(2, power.shape[1], 9).astype(int)
    bands = np.stack(
        [power[:, lo:hi].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:], strict=True)], axis=1
    )
    slices = np.array_split(np.arange(len(bands)), 16)
    grid = np.stack([bands[s].mean(axis=0) if len(s) else np.zeros(8) for s in slices])
    # A 40 dB floor below the loudest cell: encoder noise in quiet tails does not count.
    v = np.log10(grid + grid.max() * 1e-4 + 1e-12).ravel()
    v = (v - v.mean()) / (v.std() + 1e-9)
    return [round(float(f), 4) for f in v / (np.linalg.norm(v) + 1e-9)]


def measure(x: np.ndarray) -> dict[str, Any]:
    """Level (active RMS, dBFS), spectral centroid, and repetition of the loudness envelope."""
    hop = SAMPLE_RATE // 100
    n = len(x) // hop
    env = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)) if n else np.zeros(1)
    active = env[env > env.max() * 0.1] if env.max() > 0 else env
    level_db = 20 * np.log10(float(np.sqrt(np.mean(active**2))) + 1e-9)
    spectrum = np.abs(np.fft.rfft(x[: SAMPLE_RATE * 10]))
    freqs = np.fft.rfftfreq(min(len(x), SAMPLE_RATE * 10), 1 / SAMPLE_RATE)
    centroid = float(np.sum(freqs * spectrum) / (np.sum(spectrum) + 1e-12))
    return {"level_db": round(level_db, 1), "centroid_hz": round(centroid, 0)}


def repeats(x: np.ndarray) -> bool:
    """A loudness envelope that recurs at a lag of 0.15 to 2 s (steps, knocks, engines)."""
    hop = SAMPLE_RATE // 100
    n = len(x) // hop
    if n < 100:
        return False
    env = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    env = env - env.mean()
    ac = np.correlate(env, env, mode="full")[n - 1 :]
    ac /= ac[0] + 1e-12
    window = ac[15 : min(200, n // 2)]
    return bool(len(window) and window.max() > 0.6 and env.std() > 0.2 * (np.abs(env).max()))


def voice_of(x: np.ndarray) -> str:
    """ "man" or "woman", from the median pitch of the voiced 40 ms frames."""
    size = SAMPLE_RATE // 25
    pitches = []
    for start in range(0, len(x) - size, size):
        frame = x[start : start + size] - x[start : start + size].mean()
        if np.sqrt(np.mean(frame**2)) < 0.01:
            continue
        ac = np.correlate(frame, frame, mode="full")[size - 1 :]
        lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 70
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            pitches.append(SAMPLE_RATE / lag)
    return "woman" if pitches and float(np.median(pitches)) > 165.0 else "man"


def decode_bytes(data: bytes, suffix: str) -> np.ndarray:
    """Any of the packages' formats -> mono float64 at 16 kHz; ffmpeg where libsndfile can't."""
    if suffix not in (".wv", ".mp3"):
        try:
            audio, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
            return resample(to_mono(audio), rate, SAMPLE_RATE)
        except (sf.LibsndfileError, RuntimeError):
            pass
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError(f"ffmpeg is needed to decode {suffix} files (apt-get install ffmpeg)")
    done = subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-i",
            "pipe:0",
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "-f",
            "f64le",
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        check=True,
    )
    return np.frombuffer(done.stdout, dtype="<f8").astype(np.float64)


def read_source(root: Path, path: str) -> bytes:
    if "!" in path:
        archive, member = path.split("!", 1)
        with zipfile.ZipFile(root / archive) as z:
            return z.read(member)
    return (root / path).read_bytes()


@functools.lru_cache(maxsize=64)
def load_decoded(cache: str, audio: str) -> np.ndarray:
    x, _ = sf.read(Path(cache) / audio, dtype="float64")
    return np.asarray(x)


def _decode_all(
    cache: Path, packages: dict[str, Unpacked], candidates: list[_Candidate], workers: int
) -> list[dict[str, Any] | None]:
    jobs = [(str(cache), str(packages[c.package].root), c.path, c.kind) for c in candidates]
    logger.info("decoding %d recorded files", len(jobs))
    if workers <= 1:
        return [_decode_one(j) for j in jobs]
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        return list(pool.imap(_decode_one, jobs, chunksize=8))


def _decode_one(job: tuple[str, str, str, str]) -> dict[str, Any] | None:
    cache, root, path, kind = job
    try:
        data = read_source(Path(root), path)
        sha = hashlib.sha256(data).hexdigest()
        target = Path(cache) / "decoded" / sha[:2] / f"{sha[:24]}.flac"
        if target.is_file():
            x = np.asarray(sf.read(target, dtype="float64")[0])
        else:
            x = decode_bytes(data, Path(path).suffix.lower())
            peak = float(np.max(np.abs(x))) if len(x) else 0.0
            if peak > 1.0:
                x = x / peak
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{os.getpid()}.tmp")  # two workers may share a file
            sf.write(tmp, x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            tmp.replace(target)
    except (OSError, RuntimeError, subprocess.CalledProcessError, zipfile.BadZipFile) as exc:
        logger.warning("cannot decode %s: %s", path, exc)
        return None
    info: dict[str, Any] = {
        "sha": sha,
        "audio": str(target.relative_to(cache)),
        "duration": round(len(x) / SAMPLE_RATE, 3),
        **measure(x),
    }
    if kind == "effect":
        info["fingerprint"] = fingerprint(x)
        info["repeats"] = repeats(x[: int(SEGMENT_SECONDS * SAMPLE_RATE)])
    else:
        info["fingerprint"] = [0.0]
        info["voice"] = voice_of(x)
    return info


def _segments(c: _Candidate, info: dict[str, Any], package: Unpacked) -> Iterator[Segment]:
    naming = name_sound(c.path.replace("!", "/"))
    labels, phrase = list(naming.labels), naming.phrase
    pattern = ""
    if c.kind == "effect":
        pattern = "looping" if "loop" in c.path.lower() else "repeating" if info["repeats"] else ""
    else:
        labels, phrase = ["speech", LANGUAGE_NAMES[c.language]], c.text
    duration = info["duration"]
    count = 1 if c.kind == "speech" else min(int(np.ceil(duration / SEGMENT_SECONDS)), MAX_SEGMENTS)
    for k in range(count):
        start = k * SEGMENT_SECONDS
        length = min(SEGMENT_SECONDS, duration - start)
        if k and length < 2.0:
            break
        yield Segment(
            key=f"{c.package}/{c.path}#{k}",
            package=c.package,
            version=package.version,
            licence=licence(package),
            path=c.path,
            group=group_key(c.package, c.path),
            audio=info["audio"],
            start_s=start,
            length_s=round(length, 3),
            kind=c.kind,
            labels=labels,
            phrase=phrase,
            context=naming.context if c.kind == "effect" else "",
            level_db=info["level_db"],
            centroid_hz=info["centroid_hz"],
            pattern=pattern,
            language=c.language,
            text=c.text,
            voice=c.voice or info.get("voice", ""),
        )


def _candidates(
    package: Unpacked, packages: dict[str, Unpacked]
) -> Iterator[tuple[_Candidate, str | None]]:
    """Every audio file of a package, with the reason it is dropped (None: kept)."""
    name = package.name
    if name.startswith("asterisk-core-sounds-"):
        yield from _asterisk(package, packages)
        return
    for path in _audio_paths(package.root):
        if name == "tuxpaint-stamps-default" and "_desc" in path:
            yield _tuxpaint_speech(package, path)
        elif name == "qabcs-data" and "/sounds/words/" in path:
            language = path.split("/abcs/")[1].split("/")[0]
            word = Path(path).stem.replace("_", " ")
            sampled = _sampled(path, f"{name}/{language}")
            candidate = _Candidate(name, path, "speech", language, word)
            yield candidate, None if sampled else "speech not sampled"
        elif name == "qabcs-data" and "/noises/" not in path:
            yield _Candidate(name, path, "effect"), "spoken letter"
        else:
            yield _Candidate(name, path, "effect"), drop_reason(path)


def _audio_paths(root: Path) -> Iterator[str]:
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel.lower().endswith(AUDIO_SUFFIXES):
            yield rel
        elif rel.lower().endswith(".pk3"):
            with zipfile.ZipFile(file) as z:
                for member in sorted(z.namelist()):
                    if member.lower().endswith(AUDIO_SUFFIXES):
                        yield f"{rel}!{member}"


def _tuxpaint_speech(package: Unpacked, path: str) -> tuple[_Candidate, str | None]:
    match = re.match(r"(.*)_desc(?:_([a-z]{2}))?\.ogg$", path)
    if not match:
        return _Candidate(package.name, path, "speech"), "unmatched description"
    stem, language = match.group(1), match.group(2) or "en"
    text = _stamp_texts(package.root / f"{stem}.txt").get(language, "")
    if not text or language not in LANGUAGE_NAMES:
        return _Candidate(package.name, path, "speech"), "description without text"
    if not _sampled(path, f"{package.name}/{language}"):
        return _Candidate(package.name, path, "speech"), "speech not sampled"
    return _Candidate(package.name, path, "speech", language, text), None


@functools.lru_cache(maxsize=4096)
def _stamp_texts(txt: Path) -> dict[str, str]:
    if not txt.is_file():
        return {}
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    texts = {"en": lines[0].strip()} if lines else {}
    for line in lines[1:]:
        match = re.match(r"([a-z]{2})\.utf8=(.+)$", line.strip())
        if match:
            texts[match.group(1)] = match.group(2).strip()
    return texts


def _asterisk(
    package: Unpacked, packages: dict[str, Unpacked]
) -> Iterator[tuple[_Candidate, str | None]]:
    if not package.name.endswith("-wav"):
        return
    code = package.name.removeprefix("asterisk-core-sounds-").removesuffix("-wav")
    texts_pkg = packages.get(f"asterisk-core-sounds-{code}")
    texts = _asterisk_texts(texts_pkg, code) if texts_pkg else {}
    for path in _audio_paths(package.root):
        voice_dir = path.split("/sounds/")[1].split("/")[0]  # e.g. fr_CA_f_June
        voice = "woman" if "_f_" in voice_dir else "man"
        prompt = path.split(f"{voice_dir}/", 1)[1].rsplit(".", 1)[0]
        text = texts.get(prompt, "")
        if not text:
            yield _Candidate(package.name, path, "speech"), "prompt without text"
        elif not _sampled(path, package.name):
            yield _Candidate(package.name, path, "speech"), "speech not sampled"
        else:
            yield _Candidate(package.name, path, "speech", code, text, voice), None


def _asterisk_texts(package: Unpacked, code: str) -> dict[str, str]:
    path = package.root / "usr/share/doc" / package.name / f"core-sounds-{code}.txt.gz"
    if not path.is_file():
        return {}
    texts = {}
    for line in gzip.decompress(path.read_bytes()).decode("utf-8", "replace").splitlines():
        key, sep, text = line.partition(":")
        if sep and not line.startswith(";") and text.strip():
            texts[key.strip()] = text.strip()
    return texts


def _sampled(path: str, pool: str) -> bool:
    """A fixed share of each speech pool, chosen by a hash of the path (stable, seedless)."""
    share = _pool_share(pool)
    digest = int(hashlib.sha1(path.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < share


_POOL_SIZES = {
    "tuxpaint-stamps-default": 900,
    "asterisk-core-sounds": 680,
    "qabcs-data": 150,
}


def _pool_share(pool: str) -> float:
    size = next((n for prefix, n in _POOL_SIZES.items() if pool.startswith(prefix)), 150)
    return min(1.0, SPEECH_PER_LANGUAGE / size)
