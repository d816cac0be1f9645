"""`foley train generator --stage vae|vocoder|unet`: train one part of the generator.

The stages share one checkpoint folder and its `config.json`; train them in order vae, then
vocoder and unet (either order). Each stage:
1. takes the train split (or a seeded sample: `train_clips`) and a fixed, seeded val batch;
2. trains with AdamW, a short warm-up then a cosine decay over the time budget (or over
   `max_steps`), logging the loss every `log_every` steps;
3. measures the val loss before and after, saves its part as fp16 safetensors and rewrites the
   model card from `training.json`.

- vae: random 2.56 s crops -> log-mel -> AutoencoderKL; L1 reconstruction + a small KL.
- vocoder: random 1 s crops; mel L1 + multi-resolution STFT loss (no discriminator yet); the
  val batch is also spoken by Griffin-Lim, the baseline.
- unet: the first `unet_seconds` of each clip -> frozen VAE latents; conditions: the clip's
  CLAP text (one caption at random) or audio embedding (`train_condition`), its neighbours
  among the other train clips by CLAP audio cosine (not itself, not its group, no near
  duplicates), a random k in 1..K of them, captions dropped at random, and condition dropout
  of text, retrieval or both. Noise-prediction MSE. Val loss with each condition dropped shows
  what the UNet uses.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from generative.clap.eval import Clip
from generative.generator.config import GeneratorConfig
from generative.generator.mel import MelFrontEnd
from generative.generator.model import (
    CARD_FILE,
    CONFIG_FILE,
    TRAINING_FILE,
    Conditions,
    LatentUNet,
    build_vae,
    load_part,
    part_digest,
    read_config,
    read_training,
    save_part,
    write_text,
)
from generative.generator.vocoder import Vocoder, stft_loss, vocoder_loss

log = logging.getLogger(__name__)

STAGES = ("vae", "vocoder", "unet")
VAL_BATCH = 16


@dataclass
class TrainOptions:
    seed: int = 0
    max_minutes: float = 55.0
    max_steps: int | None = None  # a fixed step count instead of the time budget
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 50
    train_clips: int | None = None
    threads: int = 2
    log_every: int = 25
    vae_seconds: float = 2.56
    vocoder_seconds: float = 1.0
    unet_seconds: float = 5.12
    train_condition: str | None = None  # overrides the config's unet.train_condition
    clap_checkpoint: str = ""
    init_unet: str = ""  # a generator folder whose UNet these weights start from
    command: str = ""
    config: GeneratorConfig = field(default_factory=GeneratorConfig)


class Schedule:
    """Warm-up then cosine over the step count or the time budget; `done` when it is over."""

    def __init__(self, opts: TrainOptions) -> None:
        self.opts = opts
        self.started = time.perf_counter()
        self.step = 0

    def progress(self) -> float:
        if self.opts.max_steps is not None:
            return self.step / max(1, self.opts.max_steps)
        return (time.perf_counter() - self.started) / (60.0 * self.opts.max_minutes)

    def done(self) -> bool:
        return self.progress() >= 1.0

    def lr(self) -> float:
        warm = min(1.0, (self.step + 1) / self.opts.warmup_steps)
        return self.opts.lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, self.progress())))


def crop(
    path: Path, sample_rate: int, seconds: float, rng: np.random.Generator | None
) -> np.ndarray:
    """`seconds` of a clip: from a random start (rng) or its start, silence-padded."""
    import soundfile as sf

    length = round(seconds * sample_rate)
    with sf.SoundFile(str(path)) as handle:
        if handle.samplerate != sample_rate:
            raise ValueError(f"{path} is at {handle.samplerate} Hz; the corpus is at {sample_rate}")
        start = 0 if rng is None else int(rng.integers(0, max(1, handle.frames - length + 1)))
        handle.seek(start)
        wave = handle.read(frames=length, dtype="float32", always_2d=True).mean(axis=1)
    return np.pad(wave, (0, length - len(wave)))


def waves(
    clips: Sequence[Clip], sample_rate: int, seconds: float, rng: np.random.Generator | None
) -> torch.Tensor:
    return torch.from_numpy(np.stack([crop(c.path, sample_rate, seconds, rng) for c in clips]))


def train_loop(
    opts: TrainOptions,
    params: Sequence[torch.nn.Parameter],
    step_loss: Callable[[np.random.Generator], torch.Tensor],
    name: str,
) -> dict[str, Any]:
    """Run steps until the budget is spent; returns the loss curve and timings."""
    rng = np.random.default_rng(opts.seed)
    optimiser = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    schedule = Schedule(opts)
    curve: list[tuple[int, float, float]] = []  # (step, mean loss since last, minutes)
    window: list[float] = []
    while not schedule.done():
        for group in optimiser.param_groups:
            group["lr"] = schedule.lr()
        loss = step_loss(rng)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step += 1
        window.append(float(loss.detach()))
        if schedule.step % opts.log_every == 0 or schedule.done():
            minutes = (time.perf_counter() - schedule.started) / 60
            curve.append((schedule.step, float(np.mean(window)), round(minutes, 2)))
            log.info(
                "%s step %d: loss %.4f (%.2f s/step, %.1f min)",
                name,
                schedule.step,
                curve[-1][1],
                60 * minutes / schedule.step,
                minutes,
            )
            window = []
    minutes = (time.perf_counter() - schedule.started) / 60
    return {
        "steps": schedule.step,
        "minutes": round(minutes, 2),
        "seconds_per_step": round(60 * minutes / max(1, schedule.step), 3),
        "curve": [[s, round(v, 5), m] for s, v, m in curve],
    }


# --- stages --------------------------------------------------------------------------------


def train_vae(opts: TrainOptions, train: list[Clip], val: list[Clip], out: Path) -> dict[str, Any]:
    config = opts.config
    front_end = MelFrontEnd(config.mel)
    sr = config.mel.sample_rate
    torch.manual_seed(opts.seed)
    vae = build_vae(config.vae)

    def loss_of(mel: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = vae.encode(mel[:, None]).latent_dist  # (B, 1, T, M) -> (B, C, T/d, M/d)
        z = posterior.sample() if sample else posterior.mode()
        recon = F.l1_loss(vae.decode(z).sample, mel[:, None])
        return recon, posterior.kl().mean() / mel[0].numel()

    def step(rng: np.random.Generator) -> torch.Tensor:
        batch = [train[i] for i in rng.integers(0, len(train), opts.batch_size)]
        with torch.no_grad():
            mel = front_end(waves(batch, sr, opts.vae_seconds, rng))
        recon, kl = loss_of(mel, sample=True)
        return recon + config.vae.kl_weight * kl

    val_mel = front_end(waves(val, sr, opts.vae_seconds, np.random.default_rng(1)))

    def val_loss() -> float:
        with torch.no_grad():
            return round(float(loss_of(val_mel, sample=False)[0]), 5)

    before = val_loss()
    vae.train()
    facts = train_loop(opts, list(vae.parameters()), step, "vae")
    vae.eval()
    facts.update(val_l1_before=before, val_l1_after=val_loss())
    save_part(vae, out, "vae")
    return facts


def train_vocoder(
    opts: TrainOptions, train: list[Clip], val: list[Clip], out: Path
) -> dict[str, Any]:
    config = opts.config
    front_end = MelFrontEnd(config.mel)
    sr = config.mel.sample_rate
    torch.manual_seed(opts.seed)
    vocoder = Vocoder(config.vocoder, config.mel)

    def step(rng: np.random.Generator) -> torch.Tensor:
        batch = [train[i] for i in rng.integers(0, len(train), opts.batch_size)]
        real = waves(batch, sr, opts.vocoder_seconds, rng)
        with torch.no_grad():
            mel = front_end(real)
        return vocoder_loss(front_end, vocoder(mel), real)[0]

    val_real = waves(val, sr, opts.vocoder_seconds, np.random.default_rng(1))
    val_mel = front_end(val_real)

    def measure(fake: torch.Tensor) -> dict[str, float]:
        _, mel_l1 = vocoder_loss(front_end, fake, val_real)
        return {
            "mel_l1": round(float(mel_l1), 4),
            "stft": round(float(stft_loss(fake, val_real)), 4),
        }

    with torch.no_grad():
        baseline = measure(front_end.griffin_lim(val_mel, config.vocoder.griffin_lim_iters))
        before = measure(vocoder(val_mel))
    vocoder.train()
    facts = train_loop(opts, list(vocoder.parameters()), step, "vocoder")
    vocoder.eval()
    with torch.no_grad():
        after = measure(vocoder(val_mel))
    facts.update(val_before=before, val_after=after, val_griffin_lim=baseline)
    save_part(vocoder, out, "vocoder")
    return facts


@dataclass
class UNetData:
    clips: list[Clip]
    audio: np.ndarray  # (N, D)
    text: np.ndarray  # (C, D)
    offsets: np.ndarray  # (N + 1,)
    neighbours: np.ndarray  # (N, K) indices into the train clips, -1 for none


def unet_data(
    corpus_dir: Path, clap: Any, clips: list[Clip], train: UNetData | None, k: int
) -> UNetData:
    """Clips with CLAP features and neighbours among the train clips (`train`, or themselves)."""
    from generative.generator.features import clip_features, clip_groups, train_neighbours

    feats = clip_features(corpus_dir, clap, clips)
    if train is None:
        neighbours = train_neighbours(feats.audio, clip_groups(corpus_dir, clips), k)
    else:  # val clips: their groups never reach the train split, so only near duplicates go
        sims = feats.audio @ train.audio.T  # (N, D) @ (D, Ntrain) -> (N, Ntrain)
        sims[sims > 0.98] = -np.inf
        neighbours = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return UNetData(clips, feats.audio, feats.text, feats.offsets, neighbours)


def conditions_for(
    data: UNetData,
    train: UNetData,
    rows: np.ndarray,
    opts: TrainOptions,
    rng: np.random.Generator,
    dropout: bool,
) -> Conditions:
    u = opts.config.unet
    b, k = len(rows), u.max_neighbours

    def a_caption(owner: UNetData, i: int) -> np.ndarray:
        start, end = owner.offsets[i], owner.offsets[i + 1]
        return owner.text[start + (rng.integers(0, end - start) if dropout else 0)]

    query = np.stack(
        [data.audio[i] if u.train_condition == "audio" else a_caption(data, i) for i in rows]
    )
    found = data.neighbours[rows]  # (B, K)
    present = found >= 0
    if dropout:  # a random k in 1..K, as a library search may return any number
        present &= np.arange(k)[None, :] < rng.integers(1, k + 1, size=(b, 1))
    safe = np.where(found >= 0, found, 0)
    audio = train.audio[safe] * present[..., None]
    text = np.stack([[a_caption(train, j) for j in row] for row in safe]) * present[..., None]
    captioned = present & (rng.random((b, k)) >= u.p_drop_caption if dropout else True)
    use_query, use_retrieval = np.ones(b, bool), np.ones(b, bool)
    if dropout:
        r = rng.random(b)
        p_t, p_r, p_b = u.p_drop_text, u.p_drop_retrieval, u.p_drop_both
        use_query[(r < p_t) | ((r >= p_t + p_r) & (r < p_t + p_r + p_b))] = False
        use_retrieval[(r >= p_t) & (r < p_t + p_r + p_b)] = False
    tensor = torch.from_numpy
    return Conditions(
        tensor(query.astype(np.float32)),
        tensor(audio.astype(np.float32)),
        tensor(text.astype(np.float32)),
        tensor(present),
        tensor(captioned),
        tensor(use_query),
        tensor(use_retrieval),
    )


def train_unet(
    opts: TrainOptions, train_clips: list[Clip], val_clips: list[Clip], out: Path, corpus_dir: Path
) -> dict[str, Any]:
    from diffusers import DDPMScheduler

    from generative.clap.load import load_clap

    config = opts.config
    u = config.unet
    front_end = MelFrontEnd(config.mel)
    sr = config.mel.sample_rate
    vae = load_part(build_vae(config.vae), out, "vae")
    vae.requires_grad_(False)
    # A warm start's folder is read now, so a wrong one fails before features and latents.
    started_from = read_config(Path(opts.init_unet)) if opts.init_unet else None
    clap = load_clap(Path(opts.clap_checkpoint))
    if clap.dim != u.clap_dim:
        raise ValueError(
            f"the CLAP makes {clap.dim}-d embeddings; the UNet config takes {u.clap_dim}"
        )
    train = unet_data(corpus_dir, clap, train_clips, None, u.max_neighbours)
    val = unet_data(corpus_dir, clap, val_clips, train, u.max_neighbours)
    multiple = config.frame_multiple
    frames = config.frames(opts.unet_seconds) // multiple * multiple
    seconds = frames * config.mel.hop / sr

    def latents_of(clips: Sequence[Clip]) -> torch.Tensor:
        with torch.no_grad():
            mel = front_end(waves(clips, sr, seconds, None))
            return vae.encode(mel[:, None]).latent_dist.mode()

    with torch.no_grad():
        val_latents = latents_of(val.clips)
    u.latent_scale = round(1.0 / float(val_latents.std()), 4)
    torch.manual_seed(opts.seed)
    unet = LatentUNet(u, config.vae.latent_channels)
    if started_from is not None:  # a warm start: the same UNet, its conditions from another CLAP
        load_part(unet, Path(opts.init_unet), "unet")
        log.info("UNet weights from %s", opts.init_unet)
    noise_schedule: Any = DDPMScheduler(
        num_train_timesteps=u.train_timesteps,
        beta_start=u.beta_start,
        beta_end=u.beta_end,
        beta_schedule=u.beta_schedule,
    )

    def loss_of(z0: torch.Tensor, c: Conditions, g: torch.Generator) -> torch.Tensor:
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(0, u.train_timesteps, (len(z0),), generator=g)
        noisy = noise_schedule.add_noise(z0, noise, t)
        return F.mse_loss(unet(noisy, t, c), noise)

    def step(rng: np.random.Generator) -> torch.Tensor:
        rows = rng.integers(0, len(train.clips), opts.batch_size)
        z0 = latents_of([train.clips[i] for i in rows]) * u.latent_scale
        c = conditions_for(train, train, rows, opts, rng, dropout=True)
        return loss_of(z0, c, torch.Generator().manual_seed(int(rng.integers(2**31))))

    val_rows = np.arange(len(val.clips))
    val_c = conditions_for(val, train, val_rows, opts, np.random.default_rng(1), dropout=False)

    def val_losses() -> dict[str, float]:
        out_: dict[str, float] = {}
        with torch.no_grad():
            for name, q, r in (
                ("all", False, False),
                ("no_retrieval", False, True),
                ("no_text", True, False),
                ("nothing", True, True),
            ):
                # The same noise and timesteps for each: only the conditions differ.
                g = torch.Generator().manual_seed(7)
                losses = [
                    loss_of(val_latents * u.latent_scale, val_c.with_dropped(q, r), g)
                    for _ in range(4)
                ]
                out_[name] = round(float(torch.stack(losses).mean()), 5)
        return out_

    before = val_losses()
    unet.train()
    facts = train_loop(opts, list(unet.parameters()), step, "unet")
    unet.eval()
    facts.update(
        val_before=before, val_after=val_losses(), latent_scale=u.latent_scale, crop_seconds=seconds
    )
    if started_from is not None:
        facts["init_unet"] = {"from": opts.init_unet, "clap_model_id": started_from.clap_model_id}
    config.clap_model_id = clap.model_id
    config.vae_id = part_digest(out, "vae")
    save_part(unet, out, "unet")
    return facts


# --- the command ---------------------------------------------------------------------------


def train_generator(stage: str, corpus_dir: Path, out: Path, opts: TrainOptions) -> Path:
    """Train one stage into the checkpoint folder `out` (its config.json, when present, is the
    config every stage shares)."""
    from generative.generator.features import sample_clips

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {stage!r}")
    out = Path(out)
    if (out / CONFIG_FILE).is_file():
        opts.config = read_config(out)
    elif stage == "unet":
        raise FileNotFoundError(f"{out} has no {CONFIG_FILE}: train the vae stage first")
    if opts.train_condition is not None:
        opts.config.unet.train_condition = opts.train_condition
    torch.set_num_threads(opts.threads)
    train = sample_clips(corpus_dir, "train", opts.train_clips, opts.seed)
    val = sample_clips(corpus_dir, "val", VAL_BATCH, opts.seed)
    log.info(
        "generator %s: %d train clips, %d val clips, %.0f min budget",
        stage,
        len(train),
        len(val),
        opts.max_minutes,
    )
    if stage == "vae":
        facts = train_vae(opts, train, val, out)
    elif stage == "vocoder":
        facts = train_vocoder(opts, train, val, out)
    else:
        facts = train_unet(opts, train, val, out, corpus_dir)
    facts.update(
        train_clips=len(train),
        seed=opts.seed,
        batch_size=opts.batch_size,
        lr=opts.lr,
        command=opts.command,
        machine=platform.machine(),
        threads=opts.threads,
    )
    training = read_training(out)
    training[stage] = facts
    write_text(out, CONFIG_FILE, opts.config.to_json())
    write_text(out, TRAINING_FILE, json.dumps(training, indent=2) + "\n")
    write_text(out, CARD_FILE, model_card(opts.config, training))
    log.info("generator %s written to %s", stage, out)
    return out


def model_card(config: GeneratorConfig, training: dict[str, Any]) -> str:
    lines = [
        "# Foley generator (Re-AudioLDM, compact)",
        "",
        "Retrieval-augmented latent diffusion trained on the Foley corpus only: a mel VAE "
        "(diffusers `AutoencoderKL`), a latent UNet (`UNet2DConditionModel`) conditioned on "
        "the query's CLAP embedding and, through cross-attention, on the retrieved "
        "neighbours' CLAP audio and caption embeddings; a Vocos-style vocoder. fp16 "
        "safetensors, one file per part. Code: `generative/generator/`.",
        "",
        f"CLAP: `{config.clap_model_id}`. VAE the UNet was trained on: `{config.vae_id}`.",
        "",
        "## Training",
        "",
    ]
    for stage in STAGES:
        if stage not in training:
            lines += [f"- {stage}: not trained", ""]
            continue
        facts = dict(training[stage])
        curve = facts.pop("curve", [])
        lines += [f"### {stage}", "", "```json", json.dumps(facts, indent=2), "```", ""]
        if curve:
            shown = curve[:: max(1, len(curve) // 8)] + ([curve[-1]] if len(curve) > 1 else [])
            lines += ["| step | loss | minutes |", "|---|---|---|"]
            lines += [f"| {s} | {v:.4f} | {m} |" for s, v, m in shown]
            lines.append("")
    lines += ["## Config", "", "```json", json.dumps(asdict(config), indent=2), "```", ""]
    return "\n".join(lines)
