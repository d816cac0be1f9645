"""A demo sound library made from held-out corpus clips, laid out as a user's library would be.

Only test and ood clips are used, so a model trained on the corpus has never heard them;
captions are left behind, as a real library has only file names, folders and titles.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from generative.corpus.manifest import read_manifest

logger = logging.getLogger(__name__)

DEMO_SPLITS = ("test", "ood")


def build_demo_library(corpus_dir: Path, out: Path, max_clips: int = 3000, seed: int = 0) -> int:
    """Link or copy up to `max_clips` held-out clips to out/<folder>/<file_name>; returns count."""
    corpus_dir, out = Path(corpus_dir), Path(out)
    entries = [e for e in read_manifest(corpus_dir) if e["split"] in DEMO_SPLITS]
    if len(entries) > max_clips:
        keep = np.random.default_rng(seed).choice(len(entries), size=max_clips, replace=False)
        entries = [entries[i] for i in sorted(keep)]
    written = 0
    for entry in entries:
        target = out / entry["meta"]["folder"] / entry["meta"]["file_name"]
        if target.exists():
            continue  # a previous run already placed it
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(corpus_dir / entry["path"], target)
        written += 1
    logger.info("demo library: %d clips in %s (%d new)", len(entries), out, written)
    return len(entries)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)
