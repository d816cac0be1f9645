"""`foley eval generate`: how well generated sounds fit their description, with and without
retrieval, for head, tail and unseen classes, beside the copy baseline.

1. Classes are clips' first labels. From `test`: head classes (top third by train count) and
   tail classes (bottom third); from `ood`: unseen classes (none in train). Per group, up to
   `classes` classes with at least 4 clips in their split, drawn with the seed.
2. A class's clips are split by alternation: references (what real sounds of the class are)
   and library clips. The retrieval database is the train split plus every split clip that
   is not a reference: a user's library holds a few sounds of a rare class, which is what
   retrieval is for.
3. Prompt: the first caption of the class's first reference clip. Per setting (no retrieval;
   k = 1, 3, 5, 10; then steps, guidance and the query mix at k = 5) `per_class` sounds,
   seeds 0, 1, ...; each generated wave is embedded by the same CLAP.
4. Per group and setting:
   - FD: Frechet distance between the generated and the reference CLAP audio embeddings,
     both projected on the top `FD_DIMS` principal components of the train embeddings
     (a few dozen clips cannot estimate a 256-d covariance);
   - CLAP score: mean cosine of the generated audio with the prompt's text embedding;
   - hit@1, hit@10: the generated clip searched by example in the split's library (all its
     clips): the share whose top 1 / top 10 holds a clip of the class;
   - copy: mean highest cosine between a generated clip and its neighbours (near 1: a copy).
   The copy baseline returns the top neighbour itself (searched without itself).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generative.clap.eval import Clip, read_manifest
from generative.generator.features import clip_features

if TYPE_CHECKING:
    from generative.clap.model import ClapModel
    from generative.generator.pipeline import Generator

log = logging.getLogger(__name__)

FD_DIMS = 16
MIN_CLIPS = 4
GROUPS = ("head", "tail", "unseen")


@dataclass(frozen=True)
class Setting:
    name: str
    k: int  # neighbours; 0: no retrieval
    steps: int | None = None  # None: the checkpoint's
    guidance: float | None = None
    mix: float | None = None  # the neighbours' share of the query slot; None: the checkpoint's


def default_settings() -> list[Setting]:
    rows = [Setting("no retrieval", 0)] + [Setting(f"k = {k}", k) for k in (1, 3, 5, 10)]
    rows += [Setting("k = 5, 10 steps", 5, steps=10), Setting("k = 5, 50 steps", 5, steps=50)]
    rows += [Setting(f"k = 5, guidance {g:g}", 5, guidance=g) for g in (1.0, 2.5, 7.5)]
    rows += [Setting(f"k = 5, query mix {m:g}", 5, mix=m) for m in (0.5, 1.0)]
    return rows


@dataclass
class EvalClass:
    group: str
    label: str
    prompt: str
    references: list[int]  # rows of the split's clips


@dataclass
class Scene:
    """One class's setting: the split's library (first labels and audio embeddings), the
    retrieval database and the prompt's text embedding."""

    label: str
    labels: list[str]
    library: np.ndarray  # (L, D)
    database: np.ndarray  # (M, D)
    prompt_text: np.ndarray  # (D,)

    def score(self, audio: np.ndarray, neighbours: np.ndarray, skip: int = -1) -> dict[str, float]:
        """A generated sound's CLAP score, class hits searched by example (leaving out library
        row `skip`), and its highest cosine with its neighbours."""
        sims = self.library @ audio  # (L, D) @ (D,) -> (L,)
        if skip >= 0:
            sims[skip] = -np.inf
        hits = [self.labels[j] == self.label for j in np.argsort(-sims, kind="stable")[:10]]
        copy = float(np.max(self.database[neighbours] @ audio)) if len(neighbours) else 0.0
        return {"clap": float(audio @ self.prompt_text), "hit1": float(hits[0]),
                "hit10": float(any(hits)), "copy": copy}  # fmt: skip


EXAMPLE_SETTINGS = ("no retrieval", "k = 5")


class Examples:
    """The listening examples of `run_eval(examples=DIR)`: per group, its first class's real
    reference and generated sounds as `<group>-<label>-<what>.wav`, and `spectrograms.png`."""

    def __init__(self, folder: Path, generator: Generator, seconds: float) -> None:
        self.folder, self.generator, self.seconds = Path(folder), generator, seconds
        self.folder.mkdir(parents=True, exist_ok=True)
        self.groups: dict[str, str] = {}  # group -> the class shown
        self.rows: list[tuple[str, np.ndarray]] = []

    def wants(self, cls: EvalClass) -> bool:
        return self.groups.setdefault(cls.group, cls.label) == cls.label

    def add(self, cls: EvalClass, what: str, sound: Any) -> None:
        import soundfile as sf
        import torch

        from generative.clap.eval import decode_clip

        sr = self.generator.sample_rate
        if isinstance(sound, Path):  # a real clip: its first `seconds`, through the front end
            wave = decode_clip(sound, sr)[: round(self.seconds * sr)]
            with torch.no_grad():
                mel = self.generator.front_end(torch.from_numpy(wave)[None])[0].numpy()
        else:
            wave, mel = sound.wave, sound.mel
        stem = "-".join(re.sub(r"[^a-z0-9]+", "_", x.lower()) for x in (cls.group, cls.label, what))
        sf.write(str(self.folder / f"{stem}.wav"), wave, sr, subtype="PCM_16")
        self.rows.append((f"{cls.group}: {cls.label} - {what} ({cls.prompt!r})", mel))

    def finish(self) -> None:
        from generative.generator.picture import spectrogram_sheet

        if self.rows:
            spectrogram_sheet(self.rows, self.folder / "spectrograms.png")


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of `a` and of `b`."""
    from scipy import linalg

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.cov(a, rowvar=False) + 1e-6 * np.eye(a.shape[1])
    cov_b = np.cov(b, rowvar=False) + 1e-6 * np.eye(b.shape[1])
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def choose_classes(
    train: Sequence[Clip], splits: dict[str, list[Clip]], classes: int, seed: int
) -> list[EvalClass]:
    """Head and tail classes from `test`, unseen ones from `ood` (see the module's step 1)."""
    rng = np.random.default_rng(seed)
    train_counts = Counter(c.labels[0] for c in train if c.labels)
    ranked = [label for label, _ in train_counts.most_common()]
    third = max(1, len(ranked) // 3)
    pools = {"head": set(ranked[:third]), "tail": set(ranked[-third:]), "unseen": None}
    chosen = []
    for group, pool in pools.items():
        clips = splits["ood" if group == "unseen" else "test"]
        rows: dict[str, list[int]] = {}
        for i, clip in enumerate(clips):
            if clip.labels:
                rows.setdefault(clip.labels[0], []).append(i)
        eligible = sorted(
            label for label, found in rows.items()
            if len(found) >= MIN_CLIPS and (label in pool if pool is not None
                                             else label not in train_counts)
        )  # fmt: skip
        for label in rng.permutation(eligible)[:classes].tolist():
            references = rows[label][::2]
            chosen.append(EvalClass(group, label, clips[references[0]].captions[0], references))
    return chosen


def run_eval(
    corpus_dir: Path, generator: Generator, clap: ClapModel, *, classes: int = 5,
    per_class: int = 2, seconds: float = 5.0, seed: int = 0,
    settings: Sequence[Setting] | None = None, examples: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Generate for every chosen class and setting; returns the report (see `format_report`).
    `examples`: a folder for the first class of each group: its first real reference and the
    sounds made without retrieval and with k = 5, as .wav files and one spectrogram sheet."""
    from generative.generator.pipeline import Neighbours

    settings = list(settings or default_settings())
    clips = read_manifest(corpus_dir)
    train = [c for c in clips if c.split == "train"]
    splits = {s: [c for c in clips if c.split == s] for s in ("test", "ood")}
    chosen = choose_classes(train, splits, classes, seed)
    if not chosen:
        raise ValueError(f"no class in {corpus_dir} has {MIN_CLIPS} clips in test or ood")
    feats = {s: clip_features(corpus_dir, clap, c) for s, c in [("train", train), *splits.items()]}
    # The projection for FD: top principal components of the train audio embeddings.
    centred = feats["train"].audio - feats["train"].audio.mean(axis=0)
    basis = np.linalg.svd(centred, full_matrices=False)[2][:FD_DIMS].T  # (D, FD_DIMS)
    started = time.perf_counter()
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    shown = Examples(examples, generator, seconds) if examples is not None else None
    for cls in chosen:
        split = "ood" if cls.group == "unseen" else "test"
        split_clips, split_feats = splits[split], feats[split]
        labels = [c.labels[0] if c.labels else "" for c in split_clips]
        reference = set(cls.references)
        library_rows = [i for i in range(len(split_clips)) if i not in reference]
        db_audio = np.concatenate([feats["train"].audio, split_feats.audio[library_rows]])
        db_text = np.stack([feats["train"].captions_of(i)[0] for i in range(len(train))]
                           + [split_feats.captions_of(i)[0] for i in library_rows])  # fmt: skip
        # Database row -> the split's row (-1: a train clip), to leave a copy out of its search.
        db_split_row = np.asarray([-1] * len(train) + library_rows)
        prompt_text = clap.embed_text([cls.prompt])[0]
        order = np.argsort(-(db_audio @ prompt_text), kind="stable")  # nearest by CLAP text

        scene = Scene(cls.label, labels, split_feats.audio, db_audio, prompt_text)
        show = shown if shown is not None and shown.wants(cls) else None
        if show is not None:
            show.add(cls, "real", split_clips[cls.references[0]].path)
        per_setting = rows.setdefault(cls.group, {})
        for setting in settings:
            near = order[: setting.k]
            given = None if setting.k == 0 else Neighbours(
                audio=db_audio[near], text=db_text[near], has_caption=np.ones(len(near), bool),
                ids=near.tolist())  # fmt: skip
            for j in range(per_class):
                made = generator(cls.prompt, seconds=seconds, neighbours=given, seed=j,
                                 steps=setting.steps, guidance=setting.guidance,
                                 text_embedding=prompt_text, query_mix=setting.mix)  # fmt: skip
                audio = clap.embed_audio([made.wave])[0]
                if show is not None and j == 0 and setting.name in EXAMPLE_SETTINGS:
                    show.add(cls, setting.name, made)
                per_setting.setdefault(setting.name, []).append(
                    {**scene.score(audio, near), "audio": audio.tolist(), "label": cls.label}  # type: ignore[dict-item]
                )
        top = order[:1]
        copy = scene.score(db_audio[top[0]], top, skip=int(db_split_row[top[0]]))
        per_setting.setdefault("copy baseline", []).append(
            {**copy, "audio": db_audio[top[0]].tolist(), "label": cls.label}  # type: ignore[dict-item]
        )
        log.info("%s class %r done (%.0f s)", cls.group, cls.label, time.perf_counter() - started)
    if shown is not None:
        shown.finish()
    report: dict[str, Any] = {
        "clap": clap.model_id, "generator": generator.model_id, "seconds": seconds,
        "per_class": per_class, "classes": [asdict(c) for c in chosen],
        "settings": [asdict(s) for s in settings], "groups": {},
    }  # fmt: skip
    for group, per_setting in rows.items():
        refs = np.concatenate([feats["ood" if group == "unseen" else "test"].audio[c.references]
                               for c in chosen if c.group == group])  # fmt: skip
        report["groups"][group] = {
            name: _summary(made, refs @ basis, basis) for name, made in per_setting.items()
        }
    return report


def _summary(made: list[dict[str, Any]], refs: np.ndarray, basis: np.ndarray) -> dict[str, float]:
    audio = np.asarray([m["audio"] for m in made]) @ basis
    fd = frechet(audio, refs) if len(audio) > 1 and len(refs) > 1 else float("nan")
    out = {key: float(np.mean([m[key] for m in made])) for key in ("clap", "hit1", "hit10", "copy")}
    return {"fd": fd, **out, "sounds": len(made)}


def format_report(report: dict[str, Any]) -> str:
    """One Markdown table per group: FD, CLAP score, hit@1, hit@10, copy, per setting."""
    lines = [
        f"Generator `{report['generator']}` over CLAP `{report['clap']}`, "
        f"{report['seconds']:g} s sounds, {report['per_class']} per class and setting.",
        "",
    ]
    for group in GROUPS:
        if group not in report["groups"]:
            continue
        names = [c["label"] for c in report["classes"] if c["group"] == group]
        lines += [f"**{group}** ({len(names)} classes: {', '.join(names)})", "",
                  "| setting | FD (lower is better) | CLAP score | hit@1 | hit@10 | copy |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, m in report["groups"][group].items():
            lines.append(f"| {name} | {m['fd']:.3f} | {m['clap']:.3f} | {m['hit1']:.2f} | "
                         f"{m['hit10']:.2f} | {m['copy']:.3f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


# --- the decoder side: VAE and vocoder against Griffin-Lim ---------------------------------


def decoder_report(
    corpus_dir: Path, generator: Generator, clap: ClapModel, *, clips: int = 64,
    seconds: float = 2.56, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """How well real val clips survive mel -> wave (Griffin-Lim, the trained vocoder), alone and
    after a VAE round trip (what generation feeds the vocoder): mel L1 and multi-resolution
    STFT distance to the real wave, CLAP audio cosine with the real clip, and seconds taken."""
    import torch

    from generative.generator.features import sample_clips
    from generative.generator.train import waves
    from generative.generator.vocoder import stft_loss, vocoder_loss

    g = generator
    if g.vocoder is None:
        raise ValueError("this generator has no trained vocoder to compare with Griffin-Lim")
    chosen = sample_clips(corpus_dir, "val", clips, seed)
    real = waves(chosen, g.sample_rate, seconds, None)  # (N, samples)
    real_audio = clap.embed_audio(list(real.numpy()))
    rows: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        mel = g.front_end(real)
        frames = mel.shape[1] // g.config.frame_multiple * g.config.frame_multiple
        mel, real = mel[:, :frames], real[:, : frames * g.config.mel.hop]
        started = time.perf_counter()
        through_vae = g.vae.decode(g.vae.encode(mel[:, None]).latent_dist.mode()).sample[:, 0]
        vae_s = time.perf_counter() - started
        iters = g.config.vocoder.griffin_lim_iters
        decoders = (("Griffin-Lim", lambda m: g.front_end.griffin_lim(m, iters)),
                    ("vocoder", g.vocoder))  # fmt: skip
        for source, given, extra_s in (("mel", mel, 0.0), ("VAE round trip", through_vae, vae_s)):
            for name, decode in decoders:
                started = time.perf_counter()
                fake = decode(given)
                taken = time.perf_counter() - started + extra_s
                audio = clap.embed_audio(list(fake.numpy()))
                rows[f"{source} -> {name}"] = {
                    "mel_l1": float(vocoder_loss(g.front_end, fake, real)[1]),
                    "stft": float(stft_loss(fake, real)),
                    "clap_cosine": float(np.mean(np.sum(audio * real_audio, axis=1))),
                    "ms_per_audio_second": 1000 * taken / (len(real) * seconds),
                }
    return {"clips": len(chosen), "seconds": seconds, "generator": g.model_id, "rows": rows}


def format_decoder_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['clips']} val clips of {report['seconds']:g} s, "
        f"generator `{report['generator']}`.",
        "",
        "| path | mel L1 (lower is better) | multi-resolution STFT (lower is better) "
        "| CLAP cosine with the real clip | ms per second of audio |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in report["rows"].items():
        lines.append(f"| {name} | {m['mel_l1']:.4f} | {m['stft']:.3f} | {m['clap_cosine']:.3f} "
                     f"| {m['ms_per_audio_second']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"
