"""`foley train caption-bank`: give a trained captioner its caption bank and tune consensus
reranking on val (`consensus.py`), without touching its weights.

1. The bank: the first caption of every train clip and its CLAP audio embedding (the frames
   cache holds them), written into the checkpoint (`bank.safetensors`, `bank.json`).
2. On a seeded val sample, with metadata and without: the beams and the k nearest clips'
   captions of every clip, scored once by the model; then every (k, temperature, weight)
   is a choice among them. Per k, the best (temperature, weight) with metadata and the best
   without (where the model knows less, the neighbours' agreement may count for more, and
   the closest of them most); the k with the best sum of the two is kept in `config.json`
   (`consensus_k`, `consensus_weight`, `consensus_temperature` and their `_bare` twins),
   unless reranking does not beat the beam search's own caption, in which case it stays off.
   The table goes into `training.json`.
"""

from __future__ import annotations

import json
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

from generative.captioner.data import metadata_variant, read_corpus
from generative.captioner.tokenizer import metadata_text

log = logging.getLogger(__name__)

NEAR = (5, 10)
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
    from generative.captioner.consensus import choose
    from generative.captioner.eval import caption_metrics, sample_clips
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
        )  # fmt: skip
        for variant in VARIANTS
    }
    log.info("scored the candidates of %d val clips", len(val))

    def cider(pick: Any) -> dict[str, float]:
        out = {}
        for variant in VARIANTS:
            captions = [pick(c) for c in found[variant]]
            out[variant] = caption_metrics(refs, dict(zip(refs, captions, strict=True)),
                                           meteor=False)["CIDEr-D"]  # fmt: skip
        return out

    table: dict[str, dict[str, float]] = {"off": cider(lambda c: c.texts[0])}
    for k in NEAR:
        for temperature in TEMPERATURES:
            for weight in WEIGHTS:

                def pick(c: Any, k: int = k, weight: float = weight,
                         temperature: float = temperature) -> str:  # fmt: skip
                    # The beams, and the captions of the k nearest clips (of the 10 scored).
                    kept = [t for t in c.texts if t not in c.near[k:]]
                    logprob = [c.logprob[c.texts.index(t)] for t in kept]
                    return choose(kept, logprob, c.near[:k], weight, bank.frequency,
                                  c.near_similarity[:k], temperature)  # fmt: skip

                table[_row(k, temperature, weight)] = cider(pick)
    # Per k: the best (temperature, weight) for each variant (the first, lowest, on a tie).
    choices: dict[str, tuple[int, dict[str, tuple[float, float]], float]] = {
        "off": (0, {v: (0.0, 0.0) for v in VARIANTS}, sum(table["off"].values()))
    }
    for k in NEAR:
        cells = [(t, w) for t in TEMPERATURES for w in WEIGHTS]

        def val_cider(cell: tuple[float, float], variant: str, k: int = k) -> tuple[float, ...]:
            return table[_row(k, *cell)][variant], -cell[0], -cell[1]

        best_cell = {v: max(cells, key=partial(val_cider, variant=v)) for v in VARIANTS}
        total = sum(table[_row(k, *best_cell[v])][v] for v in VARIANTS)
        choices[f"k {k}"] = (k, best_cell, total)
    best = max(choices, key=lambda name: (choices[name][2], name == "off"))
    log.info("consensus reranking on val: %s; chose %s", table, choices[best])
    config = json.loads((checkpoint / CONFIG_FILE).read_text())
    k, cell, _ = choices[best]
    (temperature, with_meta), (temperature_bare, bare) = cell["meta"], cell["none"]
    config.update(consensus_k=k, consensus_weight=with_meta, consensus_weight_bare=bare,
                  consensus_temperature=temperature,
                  consensus_temperature_bare=temperature_bare)  # fmt: skip
    bank.save(checkpoint)
    facts = json.loads((checkpoint / TRAINING_FILE).read_text())
    facts["consensus"] = {"val_clips": len(val), "bank_clips": len(bank),
                          "chosen": {"k": k, "weight": with_meta, "weight_bare": bare,
                                     "temperature": temperature,
                                     "temperature_bare": temperature_bare},
                          "val_cider_d": table}  # fmt: skip
    for name, text in ((CONFIG_FILE, json.dumps(config, indent=2) + "\n"),
                       (TRAINING_FILE, json.dumps(facts, indent=2) + "\n")):  # fmt: skip
        tmp = checkpoint / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, checkpoint / name)
    return facts["consensus"]


def _row(k: int, temperature: float, weight: float) -> str:
    return f"k {k}, temperature {temperature:g}, weight {weight:g}"
