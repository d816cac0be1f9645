"""`foley caption FILE...`: the captioner's caption, tags and per-segment captions of files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.config import Settings
from foley.common import CommandError

BATCH = 8


def cmd_caption(args: argparse.Namespace, settings: Settings) -> int:
    from core.audio import AudioError, DecodeLimits, decode
    from index_builder.captions import caption_rate, caption_waves, captioner_for, sound_metadata
    from index_builder.scan import title_from_path

    paths = [Path(p).expanduser() for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CommandError(f"not a file: {', '.join(missing)}")
    captioner, why = captioner_for(settings)
    if captioner is None:
        raise CommandError(f"no captioner to caption with: {why}")
    limits = DecodeLimits.from_settings(settings)
    rate = caption_rate(captioner)
    failed = 0
    for start in range(0, len(paths), BATCH):
        waves, ready = [], []
        for path in paths[start : start + BATCH]:
            try:
                wave, _ = decode(path.read_bytes(), target_sr=rate, limits=limits, name=path.name)
            except (OSError, AudioError) as exc:
                print(f"foley: {path}: {exc}", file=sys.stderr)
                failed += 1
                continue
            waves.append(wave)
            ready.append(path)
        metadata = [sound_metadata(title_from_path(p), p, p.parent.parent) for p in ready]
        for path, words in zip(ready, caption_waves(captioner, waves, metadata), strict=True):
            _print(path, words, as_json=args.json)
    return 1 if failed else 0


def _print(path: Path, words: Any, *, as_json: bool) -> None:
    if as_json:
        row = {
            "file": str(path),
            "caption": words.caption,
            "tags": words.tags,
            "segments": words.segments,
            "model_id": words.model_id,
        }
        print(json.dumps(row, ensure_ascii=False))
        return
    print(path)
    print(f"  caption: {words.caption}")
    print(f"  tags: {', '.join(words.tags)}")
    if len(words.segments) > 1:
        for segment in words.segments:
            print(f"  {segment['start_s']:7.1f}-{segment['end_s']:7.1f} s  {segment['caption']}")


def add_caption_commands(sub: Any) -> None:
    p = sub.add_parser("caption", help="caption and tag sound files with the captioner")
    p.add_argument("files", nargs="+", help="audio files")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=cmd_caption)
