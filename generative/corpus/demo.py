"""A demo sound library made from held-out corpus clips, laid out as a user's library would be.

Only held-out clips are used (test, ood, and every `ood-real` recording: whole recorded packages
no model trained on), so a model trained on the corpus has never heard them; captions are left
behind, as a real library has only file names, folders and titles.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from generative.corpus.build import DEMO_SPLITS
from generative.corpus.manifest import read_manifest

logger = logging.getLogger(__name__)


def build_demo_library(corpus_dir: Path, out: Path, max_clips: int = 3000, seed: int = 0) -> int:
    """Link or copy up to `max_clips` held-out clips to out/<folder>/<file_name>, every
    `ood-real` recording among them; returns the count."""
    corpus_dir, out = Path(corpus_dir), Path(out)
    held_out = [e for e in read_manifest(corpus_dir) if e["split"] in DEMO_SPLITS]
    entries = [e for e in held_out if e["split"] == "ood-real"][:max_clips]
    rest = [e for e in held_out if e["split"] != "ood-real"]
    room = max_clips - len(entries)
    if len(rest) > room:
        keep = np.random.default_rng(seed).choice(len(rest), size=room, replace=False)
        rest = [rest[i] for i in sorted(keep)]
    entries += rest
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
