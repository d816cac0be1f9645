"""The corpus as the captioner sees it: clips with captions, labels and metadata, and the
metadata dropout that teaches it to caption with, without, and despite metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CaptionClip:
    id: str
    path: str
    captions: tuple[str, ...]
    labels: tuple[str, ...]
    split: str
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


def read_corpus(corpus_dir: Path) -> list[CaptionClip]:
    """Every clip of `<corpus>/manifest.jsonl`, with its `meta` (title, folder, file name)."""
    manifest = Path(corpus_dir) / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} does not exist: build the corpus first")
    clips = []
    with open(manifest) as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                clips.append(
                    CaptionClip(
                        id=row["id"], path=row["path"], captions=tuple(row["captions"]),
                        labels=tuple(row.get("labels", ())), split=row["split"],
                        source=row.get("source", ""), meta=row.get("meta") or {},
                    )
                )  # fmt: skip
    return clips


# Titles that say nothing about the sound, as recorders and DAWs name files.
_MEANINGLESS = (
    "clip_{n:04d}", "Audio Track {k}", "untitled {k}", "REC_{n:04d}", "take {k}",
    "sound {k}", "new recording {k}", "track{k:02d}", "ZOOM{n:04d}", "export {k}",
)  # fmt: skip


def meaningless_title(rng: np.random.Generator) -> str:
    pattern = _MEANINGLESS[int(rng.integers(len(_MEANINGLESS)))]
    return pattern.format(n=int(rng.integers(10000)), k=int(rng.integers(1, 40)))


@dataclass
class MetadataDropout:
    """Per training example: drop everything, the title, or the folder, or swap the title for
    a meaningless one (then the folder is dropped half of the time)."""

    p_none: float = 0.25
    p_drop_title: float = 0.15
    p_drop_folder: float = 0.15
    p_meaningless_title: float = 0.15

    def __call__(self, meta: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        u = rng.random()
        title, folder = meta.get("title"), meta.get("folder")
        if u < self.p_none:
            return {}
        u -= self.p_none
        if u < self.p_drop_title:
            return {"folder": folder}
        u -= self.p_drop_title
        if u < self.p_drop_folder:
            return {"title": title}
        u -= self.p_drop_folder
        if u < self.p_meaningless_title:
            return {
                "title": meaningless_title(rng),
                "folder": folder if rng.random() < 0.5 else None,
            }
        return {"title": title, "folder": folder}


def metadata_variant(meta: Mapping[str, Any], variant: str, index: int) -> dict[str, Any]:
    """The metadata an evaluation row gives a clip: "meta" (title and folder), "none", or
    "meaningless" (a meaningless title, no folder; drawn from the clip's index)."""
    if variant == "meta":
        return {"title": meta.get("title"), "folder": meta.get("folder")}
    if variant == "none":
        return {}
    if variant == "meaningless":
        return {"title": meaningless_title(np.random.default_rng(index))}
    raise ValueError(f"unknown metadata variant {variant!r}")
