"""`foley eval caption`: caption metrics of AutoCap beside two baselines, and tag metrics.

Metrics are the COCO caption ones from `pycocoevalcap`, all offline: BLEU-4, ROUGE-L, CIDEr-D
(coco-caption's `Cider` is the CIDEr-D variant: clipped counts, Gaussian length penalty,
sigma 6; document frequencies from the evaluated split's references) and METEOR 1.5 (the jar
bundled in the wheel, run by the installed Java). Text is tokenized in Python (lowercase,
punctuation removed) instead of coco-caption's Java PTB tokenizer, for every row alike.

Rows, per split (test, ood, ood-real), on the same clips:
- AutoCap with metadata (title and folder), without metadata, with a meaningless title
  (`clip_0042`, `Audio Track 3`, ...; no folder); and, for a captioner that reads similar
  training clips' captions, from the audio alone (no metadata, no similar captions);
- nearest neighbour: the first caption of the train clip closest in CLAP audio space;
- label template: "the sound of {label}" for the label CLAP zero-shot ranks first.
A beam-size ablation (1, 2, 3) runs with metadata. Tags: micro precision, recall and F1
against the clips' labels (as tags). Splits larger than `max_clips` are evaluated on a seeded
sample of that many clips.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generative.captioner.data import CaptionClip, metadata_variant, read_corpus
from generative.captioner.tags import tag_metrics
from generative.captioner.tokenizer import metadata_text

if TYPE_CHECKING:
    from generative.captioner.features import CorpusFrames
    from generative.captioner.pipeline import Captioner

log = logging.getLogger(__name__)

EVAL_SPLITS = ("test", "ood", "ood-real")
METRICS = ("CIDEr-D", "BLEU-4", "ROUGE-L", "METEOR")
VARIANTS = (("meta", "AutoCap, with metadata"), ("none", "AutoCap, no metadata"),
            ("meaningless", "AutoCap, meaningless title"))  # fmt: skip
# The ablation row: no metadata and no similar clips' captions, audio alone.
AUDIO_ONLY = ("audio", "AutoCap, no metadata, no caption bank")
BEAMS = (1, 2, 3)
MAX_CLIPS = 500


def _tokens(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def caption_metrics(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str], meteor: bool = True
) -> dict[str, float]:
    """Corpus-level CIDEr-D, BLEU-4, ROUGE-L (and METEOR) of one prediction per key."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {k: [_tokens(r) for r in references[k]] for k in predictions}
    res = {k: [_tokens(predictions[k]) or "empty"] for k in predictions}
    out = {
        "CIDEr-D": float(Cider().compute_score(gts, res)[0]),
        "BLEU-4": float(Bleu(4).compute_score(gts, res, verbose=0)[0][3]),
        "ROUGE-L": float(Rouge().compute_score(gts, res)[0]),
    }
    if meteor:
        out["METEOR"] = float(_meteor().compute_score(gts, res)[0])
    return out


@functools.cache
def _meteor() -> Any:
    """One METEOR 1.5 Java process per Python process (it takes seconds to load its tables);
    the scorer's __del__ ends it."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def sample_clips(clips: Sequence[CaptionClip], count: int | None, seed: int = 0) -> list:
    if count is None or len(clips) <= count:
        return list(clips)
    rows = np.sort(np.random.default_rng(seed).choice(len(clips), count, replace=False))
    return [clips[i] for i in rows]


def nearest_neighbour_captions(
    frames: CorpusFrames, train: Sequence[CaptionClip], clips: Sequence[CaptionClip]
) -> list[str]:
    """The first caption of each clip's nearest train clip by CLAP audio cosine."""
    bank = frames.embedding[frames.rows([c.id for c in train])]  # (M, D)
    query = frames.embedding[frames.rows([c.id for c in clips])]  # (N, D)
    nearest = np.argmax(query @ bank.T, axis=1)  # (N, D) @ (D, M) -> (N, M) -> (N,)
    return [train[j].captions[0] for j in nearest]


def label_template_captions(
    frames: CorpusFrames,
    clips: Sequence[CaptionClip],
    labels: Sequence[str],
    label_text: np.ndarray,
) -> list[str]:
    """ "the sound of {label}" for each clip's CLAP zero-shot top label."""
    audio = frames.embedding[frames.rows([c.id for c in clips])]
    best = np.argmax(audio @ label_text.T, axis=1)
    return [f"the sound of {labels[k]}" for k in best]


def generate(
    captioner: Captioner, frames: CorpusFrames, clips: Sequence[CaptionClip], variant: str,
    num_beams: int | None = None,
) -> list[str]:  # fmt: skip
    """Captions of `clips` with the metadata of `variant` (or "audio": none, and no similar
    clips' captions)."""
    rows = frames.rows([c.id for c in clips])
    meta = "none" if variant == AUDIO_ONLY[0] else variant
    return captioner.caption_features(
        [frames.clip_frames(r) for r in rows],
        frames.embedding[rows],
        [metadata_text(metadata_variant(c.meta, meta, i)) for i, c in enumerate(clips)],
        num_beams=num_beams,
        neighbours=variant != AUDIO_ONLY[0],
    )


def evaluate_split(
    captioner: Captioner, frames: CorpusFrames, train: Sequence[CaptionClip],
    clips: Sequence[CaptionClip], beams: Sequence[int] = BEAMS,
) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    refs = {c.id: list(c.captions) for c in clips}

    def score(captions: Sequence[str]) -> dict[str, float]:
        return caption_metrics(refs, dict(zip(refs, captions, strict=True)))

    rows: dict[str, Any] = {}
    examples: dict[str, list[str]] = {}
    reads_bank = captioner.config.neighbours or captioner.config.consensus_k
    variants = [*VARIANTS, AUDIO_ONLY] if reads_bank else VARIANTS
    for variant, _ in variants:
        examples[variant] = generate(captioner, frames, clips, variant)
        rows[variant] = score(examples[variant])
    examples["nn"] = nearest_neighbour_captions(frames, train, clips)
    rows["nn"] = score(examples["nn"])
    labels = captioner.tags.labels
    examples["template"] = label_template_captions(frames, clips, labels, captioner.tag_text())
    rows["template"] = score(examples["template"])
    beam_rows = {}
    for beam in beams:
        captions = examples["meta"] if beam == captioner.config.num_beams else generate(
            captioner, frames, clips, "meta", beam
        )  # fmt: skip
        beam_rows[beam] = score(captions)
    audio = frames.embedding[frames.rows([c.id for c in clips])]
    tags = captioner.tags.select(
        captioner.tags.scores(audio, captioner.tag_text(), examples["meta"])
    )
    return {
        "clips": len(clips),
        "rows": rows,
        "beams": beam_rows,
        "tags": tag_metrics(tags, [c.labels for c in clips]),
        "examples": [
            {
                "id": c.id,
                "reference": c.captions[0],
                "title": c.meta.get("title"),
                **{k: v[i] for k, v in examples.items()},
                "tags": tags[i],
            }
            for i, c in enumerate(clips[:5])
        ],  # fmt: skip
        "seconds": round(time.perf_counter() - started, 1),
    }


def split_words(
    corpus_dir: Path, captioner: Captioner, split: str, threads: int = 2
) -> dict[str, dict[str, Any]]:
    """{clip id: {"caption", "tags"}} for every clip of a split, captioned without metadata
    (as a library whose file names say nothing), from the cached CLAP frames."""
    import torch

    from generative.captioner.features import corpus_frames

    torch.set_num_threads(threads)
    clips = [c for c in read_corpus(corpus_dir) if c.split == split]
    if not clips:
        raise ValueError(f"split {split!r} has no clips in {corpus_dir}")
    frames = corpus_frames(corpus_dir, captioner.clap, clips)
    captions = generate(captioner, frames, clips, "none")
    audio = frames.embedding[frames.rows([c.id for c in clips])]
    tags = captioner.tags.select(captioner.tags.scores(audio, captioner.tag_text(), captions))
    return {
        c.id: {"caption": caption, "tags": list(clip_tags)}
        for c, caption, clip_tags in zip(clips, captions, tags, strict=True)
    }


def run_eval(
    corpus_dir: Path, checkpoint: Path, clap_checkpoint: Path | None = None,
    splits: Sequence[str] = EVAL_SPLITS, max_clips: int | None = MAX_CLIPS, threads: int = 2,
) -> dict[str, Any]:  # fmt: skip
    """Load the captioner (and the CLAP it names), the cached frames, and evaluate."""
    import torch

    from generative.captioner.features import corpus_frames
    from generative.captioner.pipeline import load_captioner
    from generative.clap.load import load_clap

    torch.set_num_threads(threads)
    clap = load_clap(clap_checkpoint) if clap_checkpoint else None
    captioner = load_captioner(checkpoint, clap=clap)
    clips = read_corpus(corpus_dir)
    chosen = {s: sample_clips([c for c in clips if c.split == s], max_clips) for s in splits}
    # The nearest-neighbour baseline searches every train clip: their frames come from the
    # cache (training fills it) or are computed now, on a corpus built after the training.
    train = [c for c in clips if c.split == "train"]
    if not train:
        raise ValueError(f"{corpus_dir} has no train clips for the nearest-neighbour baseline")
    frames = corpus_frames(
        corpus_dir, captioner.clap, [c for s in chosen.values() for c in s] + train
    )
    report: dict[str, Any] = {"model_id": captioner.model_id, "clap": captioner.clap.model_id,
                              "beam": captioner.config.num_beams, "max_clips": max_clips,
                              "splits": {}}  # fmt: skip
    for split, subset in chosen.items():
        report["splits"][split] = evaluate_split(captioner, frames, train, subset)
        report["splits"][split]["total_clips"] = sum(c.split == split for c in clips)
        log.info("evaluated %s: %s", split, report["splits"][split]["rows"])
    return report


def _cells(metrics: Mapping[str, float]) -> str:
    return " | ".join(f"{100 * metrics[m]:.1f}" if m in metrics else "n/a" for m in METRICS)


def format_report(report: Mapping[str, Any]) -> str:
    """Markdown tables (metrics x 100)."""
    head = "| | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS)
    names = dict([*VARIANTS, AUDIO_ONLY])
    names |= {"nn": "nearest neighbour (CLAP audio)", "template": "label template"}
    lines = [f"Captions (metrics x 100; beam {report['beam']}; CLAP `{report['clap']}`).", ""]
    for split, result in report["splits"].items():
        sampled = f"all {result['clips']} clips"
        if result["clips"] < result["total_clips"]:
            sampled = f"a seeded sample of {result['clips']} of {result['total_clips']} clips"
        lines += [f"**{split}** ({sampled})", "", head]
        lines += [f"| {names[k]} | {_cells(m)} |" for k, m in result["rows"].items()]
        lines += ["", f"{split}, beam size (with metadata)", "", head]
        lines += [f"| beam {b} | {_cells(m)} |" for b, m in result["beams"].items()]
        t = result["tags"]
        lines += ["", f"{split}, tags: precision {100 * t['precision']:.1f}, recall "
                  f"{100 * t['recall']:.1f}, F1 {100 * t['f1']:.1f}", ""]  # fmt: skip
    return "\n".join(lines)
