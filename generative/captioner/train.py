"""`foley train captioner`: train AutoCap on frozen CLAP frames of the corpus.

1. Every clip's first 10 s segment goes through the CLAP once; frames and pooled embeddings are
   cached in `<corpus>/cache/`, keyed by the CLAP's model id.
2. A byte-level BPE tokenizer is trained on the train split's captions, titles and folders.
3. The caption bank (`bank.py`): each train clip's first caption and CLAP embedding, and for
   each train clip its nearest other clips, outside its own recording group, and outside its
   whole class.
4. Each step takes a batch of train clips, one of each clip's captions at random, the clip's
   metadata after dropout (none, no title, no folder, a meaningless title: `data.py`) and the
   captions of its nearest clips (none for a share of the examples, and for another share
   those outside its class, as for a sound of a class it never heard); the loss is BART's
   teacher-forced cross-entropy. AdamW, warm-up then cosine, with the step
   count fitted to the time budget.
5. On a seeded val sample: the beam size (1, 2, 3) with the best CIDEr-D, then the tags'
   caption weight and per-tag thresholds. The checkpoint is saved as fp16 with a model card.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generative.captioner.data import CaptionClip, MetadataDropout, read_corpus
from generative.captioner.model import CARD_FILE, CONFIG_FILE, CaptionerConfig
from generative.captioner.tokenizer import clean_field, metadata_text

if TYPE_CHECKING:
    from generative.captioner.bank import CaptionBank
    from generative.captioner.features import CorpusFrames
    from generative.captioner.model import AutoCap
    from generative.captioner.tokenizer import CaptionTokenizer

log = logging.getLogger(__name__)

DEFAULT_COMMAND = "foley train captioner --corpus DIR"
TRAINING_FILE = "training.json"
VAL_CLIPS = 400


@dataclass
class TrainOptions:
    seed: int = 0
    max_minutes: float = 40.0
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.03
    vocab_size: int = 3000
    tag_min_count: int = 3
    train_clips: int | None = None  # a seeded sample of the train split (None: all)
    threads: int = 2
    log_every: int = 50
    # Captions of similar training clips for the encoder to read (0: none). Tried with 3: in a
    # 50 min budget it learned to lean on them and captioned worse than without (model card).
    neighbours: int = 0
    p_no_neighbours: float = 0.1
    p_unseen_class: float = 0.3  # neighbours chosen outside the clip's class
    # Start from this captioner checkpoint (its tokenizer and weights; the same architecture)
    # instead of from scratch: a captioner carried over to a retrained CLAP.
    init: Path | None = None
    dropout: MetadataDropout = field(default_factory=MetadataDropout)
    model: CaptionerConfig = field(default_factory=CaptionerConfig)


def learning_rate(peak: float, step: int, total: int, warmup: float) -> float:
    progress = step / max(1, total)
    if progress < warmup:
        return peak * (step + 1) / max(1, warmup * total)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def tokenizer_texts(clips: list[CaptionClip]) -> list[str]:
    texts = [caption for clip in clips for caption in clip.captions]
    texts += [clean_field(clip.meta.get("title")) for clip in clips]
    texts += [clean_field(clip.meta.get("folder")) for clip in clips]
    return [t for t in texts if t]


def recording_group(clip: CaptionClip) -> str:
    """Variants of one recording share its group; a synthesized clip is its own."""
    return str(clip.meta.get("group") or clip.id)


def example_neighbours(
    near: tuple[np.ndarray, np.ndarray], i: int, opts: TrainOptions, rng: np.random.Generator
) -> list[int]:
    """The bank rows a training example reads: none, outside its class, or outside its group."""
    u = rng.random()
    if u < opts.p_no_neighbours:
        return []
    rows = near[1][i] if u < opts.p_no_neighbours + opts.p_unseen_class else near[0][i]
    return [int(j) for j in rows if j >= 0]


def fit(
    model: AutoCap, tokenizer: CaptionTokenizer, frames: CorpusFrames, train: list[CaptionClip],
    opts: TrainOptions, bank: CaptionBank | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train in place; returns facts about the run. `bank` holds one caption per train clip,
    in the order of `train`."""
    import torch

    from generative.captioner.bank import training_neighbours
    from generative.captioner.model import collate

    config = opts.model
    rng = np.random.default_rng(opts.seed)
    torch.manual_seed(opts.seed)
    rows = frames.rows([c.id for c in train])
    near = (np.zeros((len(train), 0), np.int64),) * 2
    if config.neighbours and bank is not None:
        near = training_neighbours(bank.embeddings, [recording_group(c) for c in train],
                                   [c.labels[0] if c.labels else c.id for c in train],
                                   config.neighbours)  # fmt: skip
        log.info("nearest training clips of %d clips found", len(train))
    labels = [[tokenizer.encode_caption(t, config.max_caption_tokens) for t in c.captions]
              for c in train]  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    per_epoch = max(1, len(train) // opts.batch_size)
    total = planned = per_epoch * opts.epochs
    budget, started, step, losses = opts.max_minutes * 60, time.perf_counter(), 0, []
    model.train()
    while step < total:
        for batch_rows in np.array_split(rng.permutation(len(train)), per_epoch):
            texts = [metadata_text(opts.dropout(train[i].meta, rng), keep_uninformative=True)
                     for i in batch_rows]  # fmt: skip
            similar = [[bank.captions[j] for j in example_neighbours(near, i, opts, rng)]
                       if bank is not None else [] for i in batch_rows]  # fmt: skip
            meta = [tokenizer.encode_inputs(t, s, config.max_meta_tokens,
                                            config.max_neighbour_tokens)
                    for t, s in zip(texts, similar, strict=True)]  # fmt: skip
            caps = [labels[i][int(rng.integers(len(labels[i])))] for i in batch_rows]
            batch = collate([frames.clip_frames(rows[i]) for i in batch_rows],
                            frames.embedding[rows[batch_rows]], meta, caps, config)  # fmt: skip
            loss = model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(opts.lr, step, total, opts.warmup)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            elapsed = time.perf_counter() - started
            if step in (20, 100) or step % per_epoch == 0:
                # Fit the schedule to the budget at the pace so far (never past the plan).
                fitted = min(
                    planned, max(step + 1, int(step + (budget - elapsed) / (elapsed / step) * 0.97))
                )
                if fitted != total:
                    log.info("at %.2f s a step the budget allows %d of %d planned steps",
                             elapsed / step, fitted, planned)  # fmt: skip
                total = fitted
            if step % opts.log_every == 0:
                log.info("step %d/%d loss %.3f (%.0f s)", step, total,
                         np.mean(losses[-opts.log_every :]), elapsed)  # fmt: skip
            if step >= total or elapsed >= budget:
                total = step
                break
    model.eval()
    return {
        "train_clips": len(train),
        "steps": step,
        "epochs": round(step / per_epoch, 2),
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "final_loss": round(float(np.mean(losses[-100:])), 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {opts.threads} threads",
    }


def train_captioner(
    corpus_dir: Path,
    out_dir: Path,
    clap_checkpoint: Path,
    *,
    seed: int = 0,
    max_minutes: float = 40.0,
    command: str = DEFAULT_COMMAND,
    **overrides: Any,
) -> Path:
    """Train on the train split, choose the beam and calibrate tags on val, save to `out_dir`."""
    import torch

    from generative.captioner.bank import CaptionBank
    from generative.captioner.eval import caption_metrics, generate, sample_clips
    from generative.captioner.features import corpus_frames
    from generative.captioner.model import build_autocap, load_autocap
    from generative.captioner.pipeline import Captioner, save_captioner
    from generative.captioner.tags import TagScorer, build_vocabulary, calibrate
    from generative.captioner.tokenizer import CaptionTokenizer, train_tokenizer
    from generative.clap.load import load_clap

    opts = TrainOptions(seed=seed, max_minutes=max_minutes, **overrides)
    torch.set_num_threads(opts.threads)
    clap = load_clap(clap_checkpoint)
    clips = read_corpus(corpus_dir)
    train = sample_clips([c for c in clips if c.split == "train"], opts.train_clips, seed=seed)
    val = sample_clips([c for c in clips if c.split == "val"], VAL_CLIPS, seed=seed)
    frames = corpus_frames(corpus_dir, clap, train + val)
    start = None  # the captioner to start from, if any
    if opts.init is not None:
        start = load_autocap(Path(opts.init))
        tokenizer = CaptionTokenizer.load(Path(opts.init))
        # Its architecture; consensus reranking is tuned again by `foley train caption-bank`.
        opts.model = replace(start.config, consensus_k=0, consensus_weight=0.0,
                             consensus_weight_bare=0.0, consensus_temperature=0.0,
                             consensus_temperature_bare=0.0)  # fmt: skip
        opts.neighbours = opts.model.neighbours
    else:
        tokenizer = CaptionTokenizer(train_tokenizer(tokenizer_texts(train), opts.vocab_size))
    config = opts.model
    config.vocab_size = tokenizer.vocab_size
    config.pad_id, config.bos_id, config.eos_id = (
        tokenizer.pad_id,
        tokenizer.bos_id,
        tokenizer.eos_id,
    )
    config.frame_dim, config.clap_dim = frames.frames.shape[1], frames.embedding.shape[1]
    config.clap_model_id = clap.model_id
    config.neighbours = opts.neighbours
    train_audio = frames.embedding[frames.rows([c.id for c in train])]
    bank = CaptionBank([c.captions[0] for c in train], train_audio, clap.model_id)
    model = build_autocap(config, seed=seed)
    if start is not None:
        model.load_state_dict(start.state_dict())
        log.info("starting from the captioner in %s", opts.init)
    facts = fit(model, tokenizer, frames, train, opts, bank)
    labels = build_vocabulary([c.labels for c in train], opts.tag_min_count)
    captioner = Captioner(model, tokenizer, TagScorer(labels=labels), clap,
                          bank=bank if config.neighbours else None)  # fmt: skip
    # Beam size and tag thresholds from a seeded val sample.
    refs = {c.id: list(c.captions) for c in val}
    beams, val_captions = {}, {}
    for beam in (1, 2, 3):
        val_captions[beam] = generate(captioner, frames, val, "meta", beam)
        beams[beam] = caption_metrics(refs, dict(zip(refs, val_captions[beam], strict=True)),
                                      meteor=False)  # fmt: skip
    config.num_beams = max(beams, key=lambda b: (round(beams[b]["CIDEr-D"], 3), -b))
    log.info("chose beam %d on val: %s", config.num_beams, beams)
    audio = frames.embedding[frames.rows([c.id for c in val])]
    tag_val = calibrate(captioner.tags, audio, captioner.tag_text(), val_captions[config.num_beams],
                        [c.labels for c in val])  # fmt: skip
    facts.update(seed=seed, command=command, val_clips=len(val), val_beams=beams, val_tags=tag_val,
                 tags=len(labels), caption_weight=captioner.tags.caption_weight,
                 vocab_size=tokenizer.vocab_size,
                 clap_checkpoint=str(clap_checkpoint),
                 options={k: str(v) if isinstance(v, Path) else v
                          for k, v in asdict(opts).items() if k != "model"})  # fmt: skip
    out = save_captioner(captioner, Path(out_dir), {
        TRAINING_FILE: json.dumps(facts, indent=2) + "\n",
        CARD_FILE: model_card(config, facts, None),
    })  # fmt: skip
    return out


def model_card(config: CaptionerConfig, facts: dict[str, Any], table: str | None) -> str:
    """The checkpoint's README.md."""
    opts = facts["options"]
    drop = opts["dropout"]
    beams = facts["val_beams"]
    beam_line = ", ".join(f"beam {b}: {100 * m['CIDEr-D']:.1f}" for b, m in beams.items())
    tags = facts["val_tags"]
    lines = [
        "# captioner",
        "",
        "Foley's AutoCap captioner (`generative/captioner/`): frozen CLAP audio frames -> "
        f"Q-Former ({config.queries} learned queries, {config.qformer_layers} layers, width "
        f"{config.qformer_width}) -> BART (d_model {config.d_model}, {config.encoder_layers} "
        f"encoder and {config.decoder_layers} decoder layers) whose encoder also reads the "
        "metadata text (`<title> ... <folder> ...`) and the captions of the "
        f"{config.neighbours} training clips nearest in CLAP audio space (`<similar> ...`, a "
        "caption bank of the train split shipped as `bank.safetensors` + `bank.json`). "
        "fp16 safetensors, byte-level BPE tokenizer "
        f"({facts['vocab_size']} tokens), {facts['tags']} tags with thresholds calibrated on "
        "val. Load with `generative.captioner.pipeline.load_captioner`.",
        "",
        f"- CLAP frames: `{config.clap_model_id}` (PANN-6 `fine_grained_embedding`, 6 frames x "
        f"{config.frame_dim} per 3 s window, plus the pooled {config.clap_dim}-d embedding).",
        f"- Beam {config.num_beams}, chosen on {facts['val_clips']} val clips by CIDEr-D "
        f"({beam_line}).",
        f"- Tags on the same val clips: caption weight {facts['caption_weight']}, "
        f"precision {100 * tags['precision']:.1f}, recall {100 * tags['recall']:.1f}, "
        f"F1 {100 * tags['f1']:.1f}.",
        *_consensus_lines(config, facts),
        "",
        "## Training",
        "",
        f"- Data: the corpus train split, {facts['train_clips']} clips, one of each clip's "
        "3-4 captions at random per step; the first 10 s of each clip (every corpus clip is "
        "at most 10 s).",
        f"- Metadata dropout per example: none {drop['p_none']}, no title "
        f"{drop['p_drop_title']}, no folder {drop['p_drop_folder']}, meaningless title "
        f"{drop['p_meaningless_title']} (folder kept half of the time), else title and folder.",
        f"- Similar clips' captions per example: the {config.neighbours} nearest train clips "
        "outside the clip's own recording group; none with probability "
        f"{opts.get('p_no_neighbours', 0)}, the nearest outside the clip's class with "
        f"probability {opts.get('p_unseen_class', 0)} (as for a class never heard).",
        f"- AdamW lr {opts['lr']:g}, weight decay {opts['weight_decay']:g}, batch "
        f"{opts['batch_size']}, warm-up then cosine fitted to a {opts['max_minutes']:g} min "
        f"budget; {facts['steps']} steps ({facts['epochs']} epochs) in {facts['minutes']} min "
        f"on {facts['machine']}; final loss {facts['final_loss']}.",
        f"- Command: `{facts['command']}` (seed {facts['seed']}).",
        *(
            [
                f"- Started from the captioner `{opts['init']}` (its tokenizer and weights), "
                "trained again on this CLAP's frames."
            ]
            if opts.get("init")
            else []
        ),  # fmt: skip
        "",
        "## Evaluation",
        "",
        "Measured by `foley eval caption` (`generative/captioner/eval.py`).",
        "",
        table if table is not None else "(not evaluated yet)",
        "",
    ]
    if facts.get("notes"):
        lines += ["## What was tried", "", facts["notes"], ""]
    lines += ["## Config", "", "```json", json.dumps(asdict(config), indent=2), "```", ""]
    return "\n".join(lines)


def _consensus_lines(config: CaptionerConfig, facts: dict[str, Any]) -> list[str]:
    if not config.consensus_k:
        return []
    tuned = facts.get("consensus", {})
    table = tuned.get("val_cider_d", {})
    off = table.get("off", {})
    return [
        f"- Consensus reranking (`consensus.py`): the final beams and the captions of the "
        f"{config.consensus_k} train clips nearest in CLAP audio space (a bank of "
        f"{tuned.get('bank_clips', '?')} clips, `bank.safetensors` + `bank.json`), scored by "
        f"mean log-probability + weight x agreement; weight {config.consensus_weight:g} with "
        f"metadata, {config.consensus_weight_bare:g} without, the near clips weighed by "
        f"softmax(audio similarity / temperature), temperature "
        f"{config.consensus_temperature:g} with metadata and "
        f"{config.consensus_temperature_bare:g} without (0: alike), chosen on "
        f"{tuned.get('val_clips', '?')} val clips by `foley train caption-bank` (val CIDEr-D "
        f"x 100 without reranking: {100 * off.get('meta', 0):.1f} with metadata, "
        f"{100 * off.get('none', 0):.1f} without).",
    ]


def update_card(checkpoint: Path, table: str) -> None:
    """Rewrite the checkpoint's README.md with an evaluation table, keeping "What was tried"."""
    checkpoint = Path(checkpoint)
    facts = json.loads((checkpoint / TRAINING_FILE).read_text())
    config = CaptionerConfig.from_dict(json.loads((checkpoint / CONFIG_FILE).read_text()))
    card_path = checkpoint / CARD_FILE
    if card_path.is_file():
        found = re.search(r"## What was tried\n\n(.*?)\n+(?=## |\Z)", card_path.read_text(), re.S)
        if found:
            facts["notes"] = found.group(1).strip()
    tmp = checkpoint / f".{CARD_FILE}.tmp"
    tmp.write_text(model_card(config, facts, table))
    os.replace(tmp, card_path)
