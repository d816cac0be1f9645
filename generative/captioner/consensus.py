"""Choosing a caption among candidates: the model's beams and the captions of the training
clips nearest to the sound in CLAP audio space (`bank.py`), by the model's own likelihood of
each candidate (given the audio and the metadata) plus how well the candidate agrees with the
near clips' captions (consensus reranking, as in nearest-neighbour captioning: the caption
most like its neighbours' captions is the safest).

score(c) = mean log-probability per token of c under the model + weight x agreement(c)
agreement(c) = weighted mean over the near clips' captions n (other than c itself) of
               CIDEr-D's similarity of c to n: the mean over n-gram orders 1..4 of the
               cosine of their tf-idf vectors (the candidate's counts clipped to n's), times
               a Gaussian penalty on their length difference (sigma 6 words). A near clip
               weighs softmax(s_n / temperature), s_n its CLAP audio cosine to the sound: at
               a low temperature the closest clips decide where they are much closer than
               the rest (a sound of a class the bank knows), and all count alike where the
               near clips are about as far (a sound of a class it does not); temperature 0
               weighs all the same.

The n-grams' document frequencies are those of the bank's captions, so words every caption
has ("the sound of") count for little and the words that name the sound for much. It replaced
the mean n-gram F1 (the comparison is in the captioner's model card).

The weight, the temperature and the number of near clips are chosen on val
(`retrieval.py`) and kept in the config.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

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


LENGTH_SIGMA = 6.0  # words, as in CIDEr-D
_VECTOR_CACHE = 100_000  # texts whose tf-idf vectors a DocumentFrequency keeps

Vector = tuple[tuple[dict[tuple[str, ...], float], float], ...]  # per order: weights, norm


class DocumentFrequency:
    """How many of a set of captions hold each n-gram (orders 1-4): the idf of CIDEr."""

    def __init__(self, captions: Sequence[str]) -> None:
        self.count = len(captions)
        self.frequency: Counter[tuple[str, ...]] = Counter()
        for text, copies in Counter(captions).items():  # each caption counts, repeats too
            for grams in _grams(text):
                self.frequency.update(dict.fromkeys(grams, copies))
        self._vectors: dict[str, tuple[Vector, int]] = {}

    def idf(self, gram: tuple[str, ...]) -> float:
        return math.log(max(self.count, 1) / max(self.frequency.get(gram, 0), 1))

    def vector(self, text: str) -> tuple[Vector, int]:
        """The text's tf-idf weights per order with their norms, and its length in words."""
        found = self._vectors.get(text)
        if found is None:
            if len(self._vectors) >= _VECTOR_CACHE:
                self._vectors.clear()
            found = self._vectors[text] = _vector(_grams(text), self.idf)
        return found


def _vector(
    grams: tuple[Counter[tuple[str, ...]], ...], idf: Callable[[tuple[str, ...]], float]
) -> tuple[Vector, int]:
    orders = []
    for counts in grams:
        weights = {gram: count * idf(gram) for gram, count in counts.items()}
        orders.append((weights, math.sqrt(sum(w * w for w in weights.values()))))
    return tuple(orders), sum(grams[0].values())


def _uniform(_gram: tuple[str, ...]) -> float:
    return 1.0


def near_weights(similarity: Sequence[float], temperature: float) -> np.ndarray:
    """The near clips' weights: softmax of their audio similarity over `temperature`
    (all 1 at temperature 0)."""
    s = np.asarray(similarity, dtype=np.float64)
    if temperature <= 0 or not len(s):
        return np.ones(len(s))
    return np.exp((s - s.max()) / temperature)


def agreement(
    candidate: str,
    others: Sequence[str],
    frequency: DocumentFrequency | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
) -> float:
    """Mean CIDEr-D similarity of `candidate` to each of `others` (itself left out),
    weighted by `weights` (default all the same); without document frequencies every n-gram
    weighs the same."""

    def vector(text: str) -> tuple[Vector, int]:
        return frequency.vector(text) if frequency else _vector(_grams(text), _uniform)

    mine, length = vector(candidate)
    total, weight_sum = 0.0, 0.0
    for other, weight in zip(others, np.ones(len(others)) if weights is None else weights,
                             strict=True):  # fmt: skip
        if other == candidate:
            continue
        theirs, their_length = vector(other)
        cosine = 0.0
        for (a, norm_a), (b, norm_b) in zip(mine, theirs, strict=True):
            if norm_a and norm_b:
                shared = sum(min(w, b[g]) * b[g] for g, w in a.items() if g in b)
                cosine += shared / (norm_a * norm_b)
        penalty = math.exp(-((length - their_length) ** 2) / (2 * LENGTH_SIGMA**2))
        similarity = cosine / len(ORDERS) * penalty
        total += weight * similarity
        weight_sum += weight
    return total / weight_sum if weight_sum else 0.0


def candidates_of(beams: Sequence[str], near: Sequence[str]) -> list[str]:
    """The beams, then the near clips' captions, each text once, in that order."""
    return list(dict.fromkeys([*beams, *near]))


def choose(
    candidates: Sequence[str],
    logprob: Sequence[float],
    near: Sequence[str],
    weight: float,
    frequency: DocumentFrequency | None = None,
    near_similarity: Sequence[float] | None = None,
    temperature: float = 0.0,
) -> str:
    """The candidate with the best likelihood + weight x agreement; the first on a tie.
    `near_similarity`: the near clips' audio similarity to the sound, weighed at
    `temperature` (`near_weights`)."""
    weights = None if near_similarity is None else near_weights(near_similarity, temperature)
    scores = [
        lp + weight * agreement(c, near, frequency, weights)
        for c, lp in zip(candidates, logprob, strict=True)
    ]
    return candidates[int(np.argmax(scores))]
