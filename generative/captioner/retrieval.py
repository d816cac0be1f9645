"""`foley train caption-bank`: give a trained captioner its caption bank and tune consensus
reranking on val (`consensus.py`), without touching its weights.

1. The bank: the first caption of every train clip and its CLAP audio embedding (the frames
   cache holds them), written into the checkpoint (`bank.safetensors`, `bank.json`).
2. On a seeded val sample, with metadata and without: the beams and the k nearest clips'
   captions of every clip, scored once by the model and by their CLAP fit to the sound; then
   every (k, temperature, weight, clap weight) is a choice among them. Per k, the best
   (temperature, weight, clap weight) with metadata and the best
   without (where the model knows less, the neighbours' agreement may count for more, and
   the closest of them most); the k with the best sum of the two is kept in `config.json`
   (`consensus_k`, `consensus_weight`, `consensus_temperature`, `consensus_clap_weight` and
   their `_bare` twins),
   unless reranking does not beat the beam search's own caption, in which case it stays off.
   The table goes into `training.json`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generative.captioner.consensus import DocumentFrequency, agreement, near_weights
from generative.captioner.data import metadata_variant, read_corpus
from generative.captioner.tokenizer import metadata_text

if TYPE_CHECKING:
    from generative.captioner.pipeline import Candidates

log = logging.getLogger(__name__)

NEAR = (5, 10)
CLAP_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
CLAP_MIN_GAIN = 0.01  # val CIDEr-D (1 point x 100) the CLAP fit must add to be used
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
TEMPERATURES = (0.0, 0.05, 0.02, 0.01, 0.005)  # 0: the near clips weigh the same
VARIANTS = ("meta", "none")


def build_caption_bank(
    corpus_dir: Path, checkpoint: Path, clap_checkpoint: Path, *, seed: int = 0,
    val_clips: int = 400, threads: int = 2,
) -> dict[str, Any]:  # fmt: skip
    """Write the bank and the tuned reranking into `checkpoint`; returns the tuning table."""
    import torch

    from generative.captioner.bank import CaptionBank
    from generative.captioner.eval import cider_d, sample_clips
    from generative.captioner.features import corpus_frames
    from generative.captioner.model import CONFIG_FILE
    from generative.captioner.pipeline import load_captioner
    from generative.captioner.train import TRAINING_FILE
    from generative.clap.load import load_clap

    torch.set_num_threads(threads)
    checkpoint = Path(checkpoint)
    clap = load_clap(clap_checkpoint)
    captioner = load_captioner(checkpoint, clap=clap)
    clips = read_corpus(corpus_dir)
    train = [c for c in clips if c.split == "train"]
    val = sample_clips([c for c in clips if c.split == "val"], val_clips, seed=seed)
    frames = corpus_frames(corpus_dir, clap, train + val)
    train_audio = frames.embedding[frames.rows([c.id for c in train])]
    bank = CaptionBank([c.captions[0] for c in train], train_audio, clap.model_id)
    captioner.bank = bank
    refs = {c.id: list(c.captions) for c in val}
    rows = frames.rows([c.id for c in val])
    found = {
        variant: captioner.caption_candidates(
            [frames.clip_frames(r) for r in rows],
            frames.embedding[rows],
            [metadata_text(metadata_variant(c.meta, variant, i)) for i, c in enumerate(val)],
            consensus_k=max(NEAR),
            with_fit=True,
        )  # fmt: skip
        for variant in VARIANTS
    }
    log.info("scored the candidates of %d val clips", len(val))

    @functools.cache
    def scored(captions: tuple[str, ...], variant: str) -> float:
        """Val CIDEr-D of one caption per clip (many cells choose the same captions)."""
        return cider_d(refs, dict(zip(refs, captions, strict=True)))

    def cider(pick: Any) -> dict[str, float]:
        return {v: scored(tuple(pick(c) for c in found[v]), v) for v in VARIANTS}

    table: dict[str, dict[str, float]] = {"off": cider(lambda c: c.texts[0])}
    for k in NEAR:
        for temperature in TEMPERATURES:
            # The candidates' parts that no weight changes, computed once per (k, temperature).
            parts = {v: [_parts(c, k, temperature, bank.frequency) for c in found[v]]
                     for v in VARIANTS}  # fmt: skip
            for weight in WEIGHTS:
                for clap_weight in CLAP_WEIGHTS:
                    table[_row(k, temperature, weight, clap_weight)] = {
                        v: scored(tuple(_pick(p, weight, clap_weight) for p in parts[v]), v)
                        for v in VARIANTS
                    }
    # Per k: the best (temperature, weight, clap weight) for each variant (the first, lowest,
    # on a tie).
    choices: dict[str, tuple[int, dict[str, tuple[float, float, float]], float]] = {
        "off": (0, {v: (0.0, 0.0, 0.0) for v in VARIANTS}, sum(table["off"].values()))
    }
    for k in NEAR:
        cells = [(t, w, cw) for t in TEMPERATURES for w in WEIGHTS for cw in CLAP_WEIGHTS]

        def val_cider(
            cell: tuple[float, float, float], variant: str, k: int = k
        ) -> tuple[float, ...]:
            return table[_row(k, *cell)][variant], -cell[0], -cell[1], -cell[2]

        best_cell = {}
        for v in VARIANTS:
            found = max(cells, key=partial(val_cider, variant=v))
            plain = max((c for c in cells if c[2] == 0), key=partial(val_cider, variant=v))
            # The CLAP fit must earn its place: a gain within the noise of 400 clips is not
            # taken (one such, +0.3 with metadata on val, cost 7 points on ood-real).
            gain = table[_row(k, *found)][v] - table[_row(k, *plain)][v]
            best_cell[v] = found if gain >= CLAP_MIN_GAIN else plain
        total = sum(table[_row(k, *best_cell[v])][v] for v in VARIANTS)
        choices[f"k {k}"] = (k, best_cell, total)
    best = max(choices, key=lambda name: (choices[name][2], name == "off"))
    log.info("consensus reranking on val: %s; chose %s", table, choices[best])
    config = json.loads((checkpoint / CONFIG_FILE).read_text())
    k, cell, _ = choices[best]
    (temperature, with_meta, clap_meta) = cell["meta"]
    (temperature_bare, bare, clap_bare) = cell["none"]
    config.update(consensus_k=k, consensus_weight=with_meta, consensus_weight_bare=bare,
                  consensus_temperature=temperature,
                  consensus_temperature_bare=temperature_bare,
                  consensus_clap_weight=clap_meta,
                  consensus_clap_weight_bare=clap_bare)  # fmt: skip
    bank.save(checkpoint)
    facts = json.loads((checkpoint / TRAINING_FILE).read_text())
    facts["consensus"] = {"val_clips": len(val), "bank_clips": len(bank),
                          "chosen": {"k": k, "weight": with_meta, "weight_bare": bare,
                                     "temperature": temperature,
                                     "temperature_bare": temperature_bare,
                                     "clap_weight": clap_meta, "clap_weight_bare": clap_bare},
                          "val_cider_d": table}  # fmt: skip
    for name, text in ((CONFIG_FILE, json.dumps(config, indent=2) + "\n"),
                       (TRAINING_FILE, json.dumps(facts, indent=2) + "\n")):  # fmt: skip
        tmp = checkpoint / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, checkpoint / name)
    return facts["consensus"]


def _row(k: int, temperature: float, weight: float, clap_weight: float) -> str:
    return f"k {k}, temperature {temperature:g}, weight {weight:g}, clap weight {clap_weight:g}"


def _parts(
    c: Candidates, k: int, temperature: float, frequency: DocumentFrequency
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """One clip's candidates with the k nearest clips' captions (the beams, and the captions of
    the k nearest of the 10 scored), and per candidate its log-probability, agreement and fit."""
    kept = [i for i, t in enumerate(c.texts) if t not in c.near[k:]]
    weights = near_weights(c.near_similarity[:k], temperature)
    texts = [c.texts[i] for i in kept]
    return (texts, np.asarray([c.logprob[i] for i in kept]),
            np.asarray([agreement(t, c.near[:k], frequency, weights) for t in texts]),
            np.asarray([c.fit[i] for i in kept]))  # fmt: skip


def _pick(parts: tuple[list[str], np.ndarray, np.ndarray, np.ndarray], weight: float,
          clap_weight: float) -> str:  # fmt: skip
    """`consensus.choose` on precomputed parts: the best score, the first on a tie."""
    texts, logprob, agreed, fit = parts
    return texts[int(np.argmax(logprob + weight * agreed + clap_weight * fit))]
