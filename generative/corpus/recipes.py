"""What every source hands the planner: its recipes, and a drafted clip per draw."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Recipe:
    """One kind of clip a source can make (a class, a voice, an instrument, a recording)."""

    key: str
    ood: bool


@dataclass
class Draft:
    """A planned clip before it has an id, a split or a numbered file name."""

    labels: list[str]
    params: dict[str, Any]
    captions: list[str]
    stem: str
    folder: str
    title: str
    # A split fixed by the source (by recording group or held-out package), else drawn.
    split: str = ""
    # Extra manifest metadata: original path, package, version, licence.
    meta: dict[str, Any] = field(default_factory=dict)


def zipf_counts(
    recipes: list[Recipe], total: int, group: str, exponent: float, minimum: int
) -> list[int]:
    """Long-tailed clip counts: recipe at rank r gets a share proportional to 1 / r**exponent.

    Ranks come from a permutation fixed per group (not per seed), so the head and tail
    classes are the same in every build and results stay comparable across seeds.
    """
    n = len(recipes)
    ranks = np.empty(n, dtype=int)
    ranks[np.random.default_rng(zlib.crc32(group.encode())).permutation(n)] = np.arange(1, n + 1)
    weights = 1.0 / ranks.astype(float) ** exponent
    spare = max(total - minimum * n, 0)
    exact = spare * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    # Largest remainders take the leftover clips, ties broken by rank.
    leftover = spare - int(counts.sum())
    order = sorted(range(n), key=lambda i: (-(exact[i] - counts[i]), ranks[i]))
    for i in order[:leftover]:
        counts[i] += 1
    return [int(c) + minimum for c in counts]


def table_rows(text: str) -> list[list[str]]:
    """Cells of a "|"-separated table; an indented line continues the row above it."""
    rows: list[str] = []
    for line in text.strip("\n").splitlines():
        if line[:1].isspace() and rows:
            rows[-1] += " " + line.strip()
        elif line.strip():
            rows.append(line.strip())
    return [[cell.strip() for cell in row.split("|")] for row in rows]
