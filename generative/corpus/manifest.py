"""The corpus's records: one line per clip in manifest.jsonl, and the class and size stats."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generative.corpus.effects import SAMPLE_RATE
from generative.corpus.recipes import Draft

MANIFEST = "manifest.jsonl"
CLASSES = "classes.json"
STATS_JSON = "stats.json"
STATS_MD = "stats.md"
SPLITS = ("train", "val", "test", "ood", "ood-real")
SOURCES = ("procedural", "speech", "midi", "recorded", "recorded-speech")
# Splits a model may learn from or be tuned on; the others are held out.
IN_DOMAIN = ("train", "val", "test")


@dataclass
class Clip:
    index: int
    source: str
    draft: Draft
    split: str
    file_name: str

    @property
    def id(self) -> str:
        return f"c{self.index:06d}"

    @property
    def path(self) -> str:
        group = "_".join(self.draft.labels[0].split())
        return f"audio/{self.source}/{group}/{self.id}.flac"

    def entry(self, n_samples: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "captions": self.draft.captions,
            "labels": self.draft.labels,
            "source": self.source,
            "split": self.split,
            "duration": round(n_samples / SAMPLE_RATE, 4),
            "sample_rate": SAMPLE_RATE,
            "meta": {
                "file_name": self.file_name,
                "folder": self.draft.folder,
                "title": self.draft.title,
                **self.draft.meta,
            },
            "params": self.draft.params,
        }


@dataclass
class CorpusStats:
    out: str
    size: str
    seed: int
    clips: int
    hours: float
    per_source: dict[str, int]
    per_split: dict[str, int]
    per_class: dict[str, int]
    head: list[str]
    tail: list[str]
    ood_classes: list[str]
    build_seconds: float = 0.0
    per_source_split: dict[str, dict[str, int]] = field(default_factory=dict)
    # Debian package -> split -> clips, for the recorded sources.
    per_package: dict[str, dict[str, int]] = field(default_factory=dict)


def summarise(entries: list[dict[str, Any]], out: Path, size: str, seed: int) -> CorpusStats:
    per_class = Counter(label for e in entries for label in e["labels"])
    ranked = sorted(per_class, key=lambda c: (-per_class[c], c))
    # Head: the top tenth of classes by clip count; tail: the bottom quarter.
    head = ranked[: max(5, len(ranked) // 10)]
    tail = ranked[-max(5, len(ranked) // 4) :]
    in_domain = {label for e in entries if e["split"] in IN_DOMAIN for label in e["labels"]}
    ood_only = sorted(
        {label for e in entries if e["split"] == "ood" for label in e["labels"]} - in_domain
    )
    by_source_split: dict[str, dict[str, int]] = {s: dict.fromkeys(SPLITS, 0) for s in SOURCES}
    by_package: dict[str, dict[str, int]] = {}
    for e in entries:
        by_source_split[e["source"]][e["split"]] += 1
        if "package_version" in e["meta"]:
            package = by_package.setdefault(e["meta"]["package"], dict.fromkeys(SPLITS, 0))
            package[e["split"]] += 1
    return CorpusStats(
        out=str(out),
        size=size,
        seed=seed,
        clips=len(entries),
        hours=round(sum(e["duration"] for e in entries) / 3600.0, 3),
        per_source=dict(Counter(e["source"] for e in entries)),
        per_split={s: sum(1 for e in entries if e["split"] == s) for s in SPLITS},
        per_class={c: per_class[c] for c in ranked},
        head=head,
        tail=tail,
        ood_classes=ood_only,
        per_source_split=by_source_split,
        per_package=dict(sorted(by_package.items())),
    )


def write_outputs(out: Path, entries: list[dict[str, Any]], stats: CorpusStats) -> None:
    """Write the class and size stats, then the manifest last and atomically.

    A build that stops early therefore never leaves a manifest behind, and a manifest's
    presence means every clip it names was written.
    """
    classes = {
        "counts": stats.per_class,
        "head": stats.head,
        "tail": stats.tail,
        "ood": stats.ood_classes,
        "rules": {
            "head": "top tenth of classes by clip count",
            "tail": "bottom quarter of classes by clip count",
            "ood": "classes of the ood split never seen in train, val or test",
        },
    }
    _write_atomic(out / CLASSES, json.dumps(classes, indent=2, ensure_ascii=False) + "\n")
    _write_atomic(out / STATS_JSON, json.dumps(asdict(stats), indent=2) + "\n")
    _write_atomic(out / STATS_MD, stats_markdown(stats))
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
    _write_atomic(out / MANIFEST, lines)


def read_manifest(corpus_dir: Path) -> list[dict[str, Any]]:
    path = corpus_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the corpus first (foley corpus build)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def stats_markdown(stats: CorpusStats) -> str:
    lines = [
        "# Foley corpus",
        "",
        f"{stats.clips} clips, {stats.hours:.2f} hours, size `{stats.size}`, seed {stats.seed}, "
        f"built in {stats.build_seconds:.0f} s.",
        "",
        "| source | " + " | ".join(SPLITS) + " | total |",
        "|---|" + "---|" * (len(SPLITS) + 1),
    ]
    for source, splits in stats.per_source_split.items():
        row = " | ".join(str(splits[s]) for s in SPLITS)
        lines.append(f"| {source} | {row} | {sum(splits.values())} |")
    totals = " | ".join(str(stats.per_split[s]) for s in SPLITS)
    lines += [f"| all | {totals} | {stats.clips} |", ""]
    if stats.per_package:
        lines += ["## Recorded Debian packages (clips per split)", ""]
        lines += ["| package | " + " | ".join(SPLITS) + " | total |"]
        lines += ["|---|" + "---|" * (len(SPLITS) + 1)]
        for package, splits in stats.per_package.items():
            row = " | ".join(str(splits[s]) for s in SPLITS)
            lines.append(f"| {package} | {row} | {sum(splits.values())} |")
        lines.append("")
    lines += ["## Classes (clips per label)", ""]
    lines += ["| class | clips | group |", "|---|---|---|"]
    for name, count in stats.per_class.items():
        group = "head" if name in stats.head else "tail" if name in stats.tail else ""
        group = f"{group} ood".strip() if name in stats.ood_classes else group
        lines.append(f"| {name} | {count} | {group} |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
