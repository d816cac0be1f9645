"""`foley train diffatr`: train the DiffATR reranker over frozen CLAP features of the corpus.

1. Every clip's audio and every caption are embedded once with the CLAP checkpoint and cached
   in `<corpus>/cache/`, keyed by the CLAP's model id.
2. For each train caption the K candidates are its clip plus K-1 hard negatives drawn from the
   clips CLAP ranks highest for it within a random shard of the train split the size of a
   library (redrawn every epoch), in shuffled order.
3. The loss is the generation loss: cross-entropy between the denoiser's predicted clean
   distribution (from a noisy one at a random noise level) and the one-hot positive, plus a
   contrastive loss that trains the query and audio adapters against every train clip.
4. DDIM steps and alpha are chosen on the val split; the checkpoint is saved as fp16.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generative.clap.features import CorpusFeatures, corpus_features
from generative.diffatr.model import DiffATRConfig

if TYPE_CHECKING:
    import torch

    from generative.diffatr.model import DiffATRDenoiser

log = logging.getLogger(__name__)

DEFAULT_COMMAND = "foley train diffatr --corpus DIR"
# DDIM step counts tried on val; each step costs a fraction of a millisecond at search time.
TUNE_STEPS = (1, 2, 5, 10, 20)
TRAINING_FILE = "training.json"


def hard_negatives(
    text: np.ndarray, audio: np.ndarray, target: np.ndarray, pool: int, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Each caption's CLAP top `pool` clips as the search would return them: (C, pool - 1)
    negatives, hardest first, and (C,) whether the caption's own clip is in that top `pool`."""
    negatives = np.zeros((len(text), pool - 1), dtype=np.int64)
    reachable = np.zeros(len(text), dtype=bool)
    for start in range(0, len(text), chunk):
        own = target[start : start + chunk]
        rows = np.arange(len(own))
        sims = text[start : start + chunk] @ audio.T  # (c, D) @ (D, M) -> (c, M)
        reachable[start : start + chunk] = (sims > sims[rows, own][:, None]).sum(axis=1) < pool
        sims[rows, own] = -np.inf
        top = np.argpartition(-sims, pool - 2, axis=1)[:, : pool - 1]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        negatives[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return negatives, reachable


@dataclass
class TrainOptions:
    seed: int = 0
    max_minutes: float = 25.0  # the loop stops here whatever `epochs` says
    epochs: int = 40
    batch_size: int = 256
    candidates: int = 32  # K during training, drawn from the caption's top `pool`
    pool: int = 64  # candidates come from each caption's CLAP top `pool` (its clip among them)
    # Negatives are mined in random shards of this many train clips, redrawn every epoch (the
    # val and test splits hold about 2,200 clips each); 0 mines in the whole train split.
    shard_clips: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.01
    timestep_power: float = 1.0  # training noise levels t = T * u^power, u uniform
    feature_noise: float = 0.0  # std of Gaussian noise on text features (then renormalised)
    contrastive_weight: float = 1.0  # weight of the adapters' contrastive loss
    contrastive_scale: float = 30.0  # its logit scale (1 / temperature)
    threads: int = 2
    log_every: int = 100
    model: DiffATRConfig = field(default_factory=DiffATRConfig)


class Batches:
    """Training examples: (query, K candidates in random order, position of the positive).

    Hard negatives are mined within shards of `shard_clips` train clips, redrawn every epoch:
    a search-time list is a query's top N in one library, and a shard the size of a library
    gives lists as hard as those (in the whole train split a caption's clip is rarely in its
    top N, and the lists are harder than any search of a smaller library)."""

    def __init__(self, features: CorpusFeatures, opts: TrainOptions) -> None:
        clips = np.flatnonzero(features.splits == "train")
        local = np.full(len(features.splits), -1)
        local[clips] = np.arange(len(clips))
        captions = features.split_captions("train")
        self.text = features.text[captions]  # (C, D)
        self.audio = features.audio[clips]  # (M, D)
        self.target = local[features.caption_clip[captions]]  # (C,)
        shard = opts.shard_clips if opts.shard_clips > 0 else len(clips)
        self.shards = max(1, round(len(clips) / shard))
        self.pool = min(opts.pool, len(clips) // self.shards)
        self.k = min(opts.candidates, self.pool)
        self.opts = opts
        self.rng = np.random.default_rng(opts.seed)
        self.negatives = np.zeros((len(self.text), self.pool - 1), dtype=np.int64)
        self.reachable = np.zeros(len(self.text), dtype=bool)
        self.mine()

    def mine(self) -> None:
        """Each caption's hard negatives from its clip's shard, with a fresh draw of shards."""
        self.shard_of = shard_of = self.rng.permutation(len(self.audio)) % self.shards  # (M,)
        for shard in range(self.shards):
            members = np.flatnonzero(shard_of == shard)
            local = np.full(len(self.audio), -1)
            local[members] = np.arange(len(members))
            rows = np.flatnonzero(shard_of[self.target] == shard)
            negatives, reachable = hard_negatives(
                self.text[rows], self.audio[members], local[self.target[rows]], self.pool
            )
            self.negatives[rows], self.reachable[rows] = members[negatives], reachable
        log.debug("%d of %d train captions have their clip in the CLAP top %d of their shard",
                  self.reachable.sum(), len(self.text), self.pool)  # fmt: skip

    def __len__(self) -> int:
        return len(self.text)

    def sample(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """rows (B,) -> query (B, D), candidates (B, K, D), positive position (B,), and
        whether the positive is in the caption's CLAP top `pool` (B,)."""
        b, pool = len(rows), self.negatives.shape[1]
        picks = np.argsort(self.rng.random((b, pool)), axis=1)[:, : self.k - 1]  # (B, K-1)
        negatives = np.take_along_axis(self.negatives[rows], picks, axis=1)
        members = np.concatenate([self.target[rows, None], negatives], axis=1)  # (B, K)
        order = np.argsort(self.rng.random(members.shape), axis=1)  # a shuffle per row
        members = np.take_along_axis(members, order, axis=1)
        positive = np.argmax(order == 0, axis=1)  # where column 0 (the positive) went
        query = self.text[rows]
        if self.opts.feature_noise > 0:
            query = query + self.rng.normal(0, self.opts.feature_noise, query.shape)
            query /= np.linalg.norm(query, axis=1, keepdims=True)
        return query.astype(np.float32), self.audio[members], positive, self.reachable[rows]


def generation_loss(
    model: torch.nn.Module,
    sampler: Any,
    query: torch.Tensor,
    audio: torch.Tensor,
    positive: torch.Tensor,
    generator: torch.Generator,
    timestep_power: float = 1.0,
) -> torch.Tensor:
    """Noise the one-hot distribution at a random level; cross-entropy of the prediction."""
    import torch
    import torch.nn.functional as F

    from generative.diffatr.model import relevance_to_sample

    b, k = audio.shape[:2]
    clean = relevance_to_sample(F.one_hot(positive, k).float())  # (B, K) in [-1, 1]
    steps = sampler.config.train_timesteps
    # t = T * u^power: power 1 is uniform, below 1 leans to high noise, where the features and
    # not x_t must carry the answer (as at the first DDIM step, from pure noise).
    u = torch.rand((b,), generator=generator) ** timestep_power
    timesteps = (u * steps).long().clamp_max(steps - 1)  # (B,)
    noise = torch.randn(clean.shape, generator=generator)
    noisy = sampler.add_noise(clean, noise, timesteps)  # (B, K)
    logits = model(noisy, timesteps, query, audio)  # (B, K)
    return F.cross_entropy(logits, positive)


def contrastive_loss(
    model: DiffATRDenoiser,
    query: torch.Tensor,
    bank: torch.Tensor,
    target: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """InfoNCE of the adapted queries (B, D) against every adapted train clip (M, D): the
    caption's own clip (B,) is the positive, the rest of the train split the negatives."""
    import torch.nn.functional as F

    logits = model.adapt_query(query) @ model.adapt_audio(bank).T  # (B, D) @ (D, M) -> (B, M)
    return F.cross_entropy(logits * scale, target)


def learning_rate(peak: float, step: int, total: int, warmup: float = 0.05) -> float:
    """Linear warm-up over the first `warmup` of the steps, then a cosine down to zero."""
    progress = step / max(1, total)
    if progress < warmup:
        return peak * (step + 1) / max(1, warmup * total)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def fit_to_budget(step: int, planned: int, elapsed: float, budget: float) -> int:
    """The planned step count cut to what the time left allows at the pace so far, so the
    schedule reaches its end within the budget (re-grown if the pace improves, never past the
    plan)."""
    return min(planned, max(step + 1, int(step + (budget - elapsed) / (elapsed / step) * 0.97)))


def fit(features: CorpusFeatures, opts: TrainOptions) -> tuple[Any, dict[str, Any]]:
    """Train a denoiser; returns it (eval mode) and facts about the run."""
    import torch

    from generative.diffatr.model import build_denoiser
    from generative.diffatr.sampler import DiffATRSampler

    torch.set_num_threads(opts.threads)
    data = Batches(features, opts)
    model = build_denoiser(opts.model, seed=opts.seed).train()
    sampler = DiffATRSampler(opts.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    per_epoch = max(1, len(data) // opts.batch_size)
    total = planned = per_epoch * opts.epochs
    generator = torch.Generator().manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    bank = torch.from_numpy(data.audio)  # (M, D) every train clip, the contrastive negatives
    started, losses, step, reachable_shares = time.perf_counter(), [], 0, []
    budget = opts.max_minutes * 60
    while step < total and time.perf_counter() - started < budget:
        if step > 0:
            data.mine()
        reachable_shares.append(float(data.reachable.mean()))
        for rows in np.array_split(rng.permutation(len(data)), per_epoch):
            query, audio, positive, reachable = (torch.from_numpy(a) for a in data.sample(rows))
            target = torch.from_numpy(data.target[rows])
            loss = torch.zeros(())
            if bool(reachable.any()):
                q, a, p = query[reachable], audio[reachable], positive[reachable]
                loss = generation_loss(model, sampler, q, a, p, generator, opts.timestep_power)
            if opts.contrastive_weight > 0:
                extra = contrastive_loss(model, query, bank, target, opts.contrastive_scale)
                loss = loss + opts.contrastive_weight * extra
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(opts.lr, step, total)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step == 50 or step % per_epoch == 0:
                fitted = fit_to_budget(step, planned, time.perf_counter() - started, budget)
                if fitted != total:
                    pace = 1e3 * (time.perf_counter() - started) / step
                    log.info("at %.0f ms a step the budget allows %d of %d planned steps",
                             pace, fitted, planned)  # fmt: skip
                total = fitted
            if step % opts.log_every == 0:
                recent = np.mean(losses[-opts.log_every :])
                elapsed = time.perf_counter() - started
                log.info("step %d/%d loss %.4f (%.0f s)", step, total, recent, elapsed)
            if step >= total or time.perf_counter() - started >= budget:
                break
    facts = {
        "train_captions": len(data),
        "generation_captions": int(round(np.mean(reachable_shares) * len(data))),
        "train_clips": len(data.audio),
        "candidates": data.k,
        "reachable_share": round(float(np.mean(reachable_shares)), 4),
        "shards": data.shards,
        "steps": step,
        "epochs": round(step / per_epoch, 2),
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "final_loss": round(float(np.mean(losses[-100:])), 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {opts.threads} threads",
    }
    return model.eval(), facts


def train_diffatr(
    corpus_dir: Path,
    out_dir: Path,
    clap_checkpoint: Path,
    *,
    seed: int = 0,
    max_minutes: float = 25.0,
    train_clips: int | None = None,
    command: str = DEFAULT_COMMAND,
    **overrides: Any,
) -> Path:
    """Train on the train split, choose DDIM steps and alpha on val, save to `out_dir`."""
    import torch

    from generative.clap.load import load_clap
    from generative.diffatr.eval import ALPHA_GRID, split_lists, tune
    from generative.diffatr.model import save_diffatr
    from generative.diffatr.pipeline import DiffATR

    opts = TrainOptions(seed=seed, max_minutes=max_minutes, **overrides)
    torch.set_num_threads(opts.threads)
    clap = load_clap(clap_checkpoint)
    features = corpus_features(corpus_dir, clap, train_clips)
    opts.model.feature_dim = features.audio.shape[1]
    opts.model.clap_model_id = clap.model_id
    model, facts = fit(features, opts)
    val = split_lists(features, "val", opts.model.top_n)
    steps, alpha, rows = tune(DiffATR(model, opts.model), val, TUNE_STEPS, ALPHA_GRID)
    opts.model.sample_steps, opts.model.alpha = steps, alpha
    log.info("chose %d DDIM steps and alpha %g on val (%d captions)", steps, alpha, len(val.text))
    facts.update(seed=seed, command=command, val_captions=len(val.text), val_tuning=rows)
    facts["options"] = {k: v for k, v in asdict(opts).items() if k != "model"}
    out = save_diffatr(model, opts.model, Path(out_dir), card=model_card(opts.model, facts, None))
    (out / TRAINING_FILE).write_text(json.dumps(facts, indent=2) + "\n")
    return out


def model_card(config: DiffATRConfig, facts: dict[str, Any], table: str | None) -> str:
    """The checkpoint's README.md: what it is, how it was trained, how it measures."""
    opts = facts["options"]
    full = [r for r in facts["val_tuning"] if r["captions"] == facts["val_captions"]]
    val_clap = next(r for r in full if r["alpha"] == 0.0)
    val_best = next(r for r in full if r["alpha"] == config.alpha)
    lines = [
        "# diffatr",
        "",
        "Foley's DiffATR reranker: diffusion over the distribution of relevance across the top-N "
        "candidates of a text query, conditioned on frozen compact-CLAP features "
        "(`generative/diffatr/`). Final score = CLAP cosine + alpha x generated probability. "
        "fp16 safetensors; load with `generative.diffatr.pipeline.load_diffatr`.",
        "",
        "## Settings chosen on val",
        "",
        f"- alpha = {config.alpha}, DDIM steps = {config.sample_steps}, top N = {config.top_n} "
        f"(val R@1 {100 * val_clap['R@1']:.1f} -> {100 * val_best['R@1']:.1f} %, "
        f"{facts['val_captions']} val captions).",
        f"- CLAP features: `{config.clap_model_id}`.",
        "",
        "## Training",
        "",
        f"- Data: the corpus train split, {facts['train_captions']} captions of "
        f"{facts['train_clips']} clips, cut into {facts['shards']} random shards of about "
        f"{facts['train_clips'] // facts['shards']} clips (a library's size), redrawn every "
        f"epoch; per caption K = {facts['candidates']} candidates: its clip and "
        f"{facts['candidates'] - 1} negatives drawn from the {opts['pool']} clips of its shard "
        "CLAP ranks highest, shuffled. The generation loss uses the captions whose clip is in "
        f"that CLAP top {opts['pool']} ({100 * facts['reachable_share']:.0f} % of all, on "
        "average over epochs); the contrastive loss uses all.",
        "- Loss: cross-entropy between the predicted clean distribution and the one-hot "
        f"positive, at a uniform random timestep of {config.train_timesteps} "
        f"({config.beta_schedule} schedule), plus {opts['contrastive_weight']:g} x the "
        "contrastive loss of the query and audio adapters over all train clips (logit scale "
        f"{opts['contrastive_scale']:g}); AdamW lr {opts['lr']:g}, weight decay "
        f"{opts['weight_decay']:g}, warm-up then cosine schedule fitted to the time budget, "
        f"batch {opts['batch_size']}, text feature noise {opts['feature_noise']:g}.",
        f"- {facts['steps']} steps ({facts['epochs']} epochs) in {facts['minutes']} min on "
        f"{facts['machine']}; final loss {facts['final_loss']}.",
        f"- Command: `{facts['command']}` (seed {facts['seed']}).",
        "",
        "## Evaluation",
        "",
        "Measured by `foley eval rerank` (`generative/diffatr_eval.py`).",
        "",
        table if table is not None else "(not evaluated yet)",
        "",
    ]
    if facts.get("notes"):
        lines += ["## What was tried", "", facts["notes"], ""]
    lines += ["## Config", "", "```json", json.dumps(asdict(config), indent=2), "```", ""]
    return "\n".join(lines)


def update_card(checkpoint: Path, table: str) -> None:
    """Rewrite the checkpoint's README.md with an evaluation table, keeping its
    "What was tried" section."""
    from generative.diffatr.model import CARD_FILE, CONFIG_FILE

    checkpoint = Path(checkpoint)
    facts = json.loads((checkpoint / TRAINING_FILE).read_text())
    config = DiffATRConfig.from_dict(json.loads((checkpoint / CONFIG_FILE).read_text()))
    card_path = checkpoint / CARD_FILE
    if card_path.is_file():
        found = re.search(r"## What was tried\n\n(.*?)\n+(?=## |\Z)", card_path.read_text(), re.S)
        if found:
            facts["notes"] = found.group(1).strip()
    tmp = checkpoint / f".{CARD_FILE}.tmp"
    tmp.write_text(model_card(config, facts, table))
    os.replace(tmp, card_path)
