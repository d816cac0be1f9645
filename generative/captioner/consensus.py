"""Choosing a caption among candidates: the model's beams and the captions of the training
clips nearest to the sound in CLAP audio space (`bank.py`), by the model's own likelihood of
each candidate (given the audio and the metadata) plus how well the candidate agrees with the
near clips' captions (consensus reranking, as in nearest-neighbour captioning: the caption
most like its neighbours' captions is the safest).

score(c) = mean log-probability per token of c under the model + weight x agreement(c)
agreement(c) = mean over the near clips' captions n (other than c itself) of the mean over
               n-gram orders 1..4 of the n-gram F1 between c and n.

The weight and the number of near clips are chosen on val (`tune`) and kept in the config.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

ORDERS = (1, 2, 3, 4)


@functools.lru_cache(maxsize=65536)
def _grams(text: str) -> tuple[Counter[tuple[str, ...]], ...]:
    """The n-gram counts of orders 1..4 (cached: a near clip's caption is compared with every
    candidate, and the bank's captions recur across sounds; callers never change them)."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return tuple(
        Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1)) for n in ORDERS
    )


def agreement(candidate: str, others: Sequence[str]) -> float:
    """Mean n-gram F1 (orders 1-4) of `candidate` with each of `others` (itself left out)."""
    mine = _grams(candidate)
    scores = []
    for other in others:
        if other == candidate:
            continue
        theirs = _grams(other)
        f1 = []
        for a, b in zip(mine, theirs, strict=True):
            total = sum(a.values()) + sum(b.values())
            f1.append(2 * sum((a & b).values()) / total if total else 0.0)
        scores.append(float(np.mean(f1)))
    return float(np.mean(scores)) if scores else 0.0


def candidates_of(beams: Sequence[str], near: Sequence[str]) -> list[str]:
    """The beams, then the near clips' captions, each text once, in that order."""
    return list(dict.fromkeys([*beams, *near]))


def choose(
    candidates: Sequence[str], logprob: Sequence[float], near: Sequence[str], weight: float
) -> str:
    """The candidate with the best likelihood + weight x agreement; the first on a tie."""
    scores = [lp + weight * agreement(c, near) for c, lp in zip(candidates, logprob, strict=True)]
    return candidates[int(np.argmax(scores))]
