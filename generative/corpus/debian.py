"""Debian packages of recorded sounds, fetched with apt-get download and unpacked into a cache.

Nothing is installed system-wide: each package is unpacked with `dpkg-deb -x` into
`<cache>/root/<package>/`, next to a `.version` file, and reused on later builds.
The cache defaults to ~/.cache/foley/debian and can be moved with FOLEY_DEBIAN_CACHE.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV = "FOLEY_DEBIAN_CACHE"
_VERSION_FILE = ".version"

# Recorded effects; the last three are optional (skipped with a warning if unavailable).
EFFECT_PACKAGES = (
    "ufoai-sound",
    "minetest-data",
    "triplea",
    "scorched3d-data",
    "qabcs-data",
    "tuxpaint-stamps-default",
    "lugaru-data",
    "flare-game",
    "searchandrescue-data",
    "lincity-ng-data",
    "teeworlds-data",
    "btanks-data",
    "megaglest-data",
    "widelands-data",
    "redeclipse-data",
)
OPTIONAL_PACKAGES = ("supertuxkart-data", "minetest-mod-homedecor", "extremetuxracer-data")
ASTERISK_LANGUAGES = ("en", "es", "fr", "it", "ru")
# Phone prompts (the -wav packages) and their transcripts (the plain packages).
SPEECH_PACKAGES = tuple(
    name
    for code in ASTERISK_LANGUAGES
    for name in (f"asterisk-core-sounds-{code}-wav", f"asterisk-core-sounds-{code}")
)
ALL_PACKAGES = (*EFFECT_PACKAGES, *OPTIONAL_PACKAGES, *SPEECH_PACKAGES)


@dataclass(frozen=True)
class Unpacked:
    """A package unpacked in the cache: its files live under `root`."""

    name: str
    version: str
    root: Path


def default_cache() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "foley" / "debian"


def unpacked(cache: Path) -> dict[str, Unpacked]:
    """The packages already unpacked in the cache (nothing is fetched)."""
    found = {}
    for marker in sorted((cache / "root").glob(f"*/{_VERSION_FILE}")):
        name = marker.parent.name
        found[name] = Unpacked(name, marker.read_text().strip(), marker.parent)
    return found


def fetch_packages(cache: Path, names: tuple[str, ...] = ALL_PACKAGES) -> dict[str, Unpacked]:
    """Download and unpack every missing package; a package that fails is skipped, warned."""
    have = unpacked(cache)
    missing = [n for n in names if n not in have]
    if missing and shutil.which("apt-get") and shutil.which("dpkg-deb"):
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        for name in missing:
            deb = _download(name, debs)
            if deb is not None:
                _unpack(deb, name, cache)
    elif missing:
        logger.warning("apt-get or dpkg-deb not found: cannot fetch %s", ", ".join(missing))
    have = unpacked(cache)
    for name in names:
        if name not in have:
            logger.warning("Debian package %s is unavailable; the corpus goes without it", name)
    return {n: have[n] for n in names if n in have}


def _download(name: str, debs: Path) -> Path | None:
    existing = sorted(debs.glob(f"{name}_*.deb"))
    if existing:
        return existing[-1]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    logger.info("downloading Debian package %s", name)
    for attempt in range(2):
        done = subprocess.run(
            ["apt-get", "download", name], cwd=debs, capture_output=True, text=True, env=env
        )
        if done.returncode == 0:
            break
        if attempt == 0:  # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "update"], capture_output=True, env=env)
    found = sorted(debs.glob(f"{name}_*.deb"))
    return found[-1] if found else None


def _unpack(deb: Path, name: str, cache: Path) -> None:
    target = cache / "root" / name
    partial = target.with_name(name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    (partial / _VERSION_FILE).write_text(version + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    logger.info("unpacked %s %s", name, version)


def licence(package: Unpacked) -> str:
    """The short licence names in the package's machine-readable copyright file."""
    path = package.root / "usr" / "share" / "doc" / package.name / "copyright"
    if not path.is_file():
        return "unknown"
    text = path.read_text(encoding="utf-8", errors="replace")
    names = re.findall(r"^License:[ \t]*(\S[^\n]*)$", text, flags=re.MULTILINE)
    unique = list(dict.fromkeys(n.strip() for n in names))
    if unique:
        return ", ".join(unique)
    # Older, free-form copyright files name the licence in prose.
    if "GNU General Public License" in text:
        return "GPL (free-form copyright file)"
    return "see copyright file"
