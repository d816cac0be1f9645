"""The Debian packages the corpus is built from, installed on demand."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable

from generative.corpus.midi import FLUIDSYNTH, SOUNDFONT
from generative.corpus.recorded import DEEPIN_DIR, FREEDESKTOP_DIR, OPENSFX_CAT
from generative.corpus.speech import ESPEAK

logger = logging.getLogger(__name__)

# Debian package -> how to tell it is installed (what the build actually reads or runs).
PACKAGES: dict[str, Callable[[], bool]] = {
    "espeak-ng": lambda: shutil.which(ESPEAK) is not None,
    "fluidsynth": lambda: shutil.which(FLUIDSYNTH) is not None,
    "fluid-soundfont-gm": SOUNDFONT.is_file,
    "openttd-opensfx": OPENSFX_CAT.is_file,
    "sound-theme-freedesktop": FREEDESKTOP_DIR.is_dir,
    "deepin-sound-theme": DEEPIN_DIR.is_dir,
}


# What decoding the recorded Debian packages needs beyond libsndfile (MP3 and WavPack).
DECODERS: dict[str, Callable[[], bool]] = {"ffmpeg": lambda: shutil.which("ffmpeg") is not None}


class CorpusSourceError(RuntimeError):
    """A package the corpus needs is missing and could not be installed."""


def missing_packages(packages: dict[str, Callable[[], bool]] = PACKAGES) -> list[str]:
    return [name for name, present in packages.items() if not present()]


def ensure_sources(
    install: bool = True, packages: dict[str, Callable[[], bool]] = PACKAGES
) -> None:
    """Install the missing Debian packages with apt-get, or explain how to."""
    missing = missing_packages(packages)
    if not missing:
        return
    command = f"apt-get install -y {' '.join(missing)}"
    if not install:
        raise CorpusSourceError(f"missing Debian packages {missing}; install them with: {command}")
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise CorpusSourceError(
            f"missing Debian packages {missing} and cannot install them here "
            f"(needs apt-get and root); run as root: {command}"
        )
    logger.info("installing Debian packages: %s", ", ".join(missing))
    if _apt(["install", "-y", "--no-install-recommends", *missing]) != 0:
        # A fresh machine may have no package lists yet.
        _apt(["update"])
        _apt(["install", "-y", "--no-install-recommends", *missing])
    still = missing_packages(packages)
    if still:
        raise CorpusSourceError(f"apt-get could not install {still}; try by hand: {command}")


def _apt(args: list[str]) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        logger.warning("apt-get %s failed: %s", args[0], result.stderr.strip()[-500:])
    return result.returncode
