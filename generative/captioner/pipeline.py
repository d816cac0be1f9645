"""A loaded AutoCap captioner: waves (+ metadata) -> caption, tags and per-segment captions.

`Captioner.caption(waves, metadata)`:
1. checks its inputs (mono float waves at the CLAP's sample rate; one metadata dict or None
   per wave, with optional "title", "folder" and "file_name");
2. cuts each wave into 10 s segments and runs the frozen CLAP over all of them
   (`features.segment_features`): frames and a pooled embedding per segment;
3. captions every segment (beam search, deterministic), reading the sound's metadata and the
   captions of the training clips nearest to the segment in CLAP audio space (`bank.py`);
4. the sound's caption is its most salient segment's: the loudest one (highest RMS), since a
   long file's quiet stretches are usually room tone or a tail; ties go to the earliest;
5. tags the sound: CLAP zero-shot of its pooled embedding (the segments' embeddings weighted
   by length, as the search index embeds a file) plus the words of its caption (`tags.py`).

A captioner is tied to the CLAP whose frames it was trained on: `load_captioner` refuses
another CLAP unless told (`check_clap=False`), and `clap_matches` says which case it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generative.captioner.bank import BANK_CAPTIONS, CaptionBank
from generative.captioner.consensus import candidates_of, choose
from generative.captioner.features import segment_features
from generative.captioner.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    AutoCap,
    CaptionerConfig,
    build_autocap,
    collate,
    load_autocap,
    tiny_captioner_config,
)
from generative.captioner.tags import TAGS_FILE, TagScorer, build_vocabulary
from generative.captioner.tokenizer import (
    TOKENIZER_FILE,
    CaptionTokenizer,
    metadata_text,
    train_tokenizer,
)
from generative.errors import ModelLoadError

if TYPE_CHECKING:
    from generative.captioner.features import SegmentFeatures
    from generative.clap.model import ClapModel

BATCH_SIZE = 16


@dataclass
class Segment:
    start_s: float
    end_s: float
    caption: str


@dataclass
class Candidates:
    """An item's candidate captions, their mean log-probability per token, and the nearest
    training clips' captions they are compared with (empty: no consensus reranking)."""

    texts: list[str]
    logprob: list[float]
    near: list[str]
    near_similarity: list[float] = field(default_factory=list)  # CLAP audio cosine to the sound


@dataclass
class CaptionResult:
    caption: str
    tags: list[str]
    segments: list[Segment] = field(default_factory=list)


class CaptionerLoadError(ModelLoadError):
    """A captioner checkpoint is missing, unreadable, or made for another CLAP."""


class Captioner:
    """AutoCap + its tokenizer + its tag scorer, over a frozen CLAP."""

    def __init__(
        self,
        model: AutoCap,
        tokenizer: CaptionTokenizer,
        tags: TagScorer,
        clap: ClapModel,
        model_id: str = "",
        bank: CaptionBank | None = None,
    ) -> None:
        if (model.config.neighbours or model.config.consensus_k) and bank is None:
            raise ValueError("this captioner reads similar clips' captions: it needs its bank")
        self.model = model.eval()
        self.config: CaptionerConfig = model.config
        self.tokenizer = tokenizer
        self.tags = tags
        self.clap = clap
        self.model_id = model_id
        self.bank = bank
        self._tag_text: np.ndarray | None = None

    @property
    def clap_model_id(self) -> str | None:
        """The CLAP this captioner was trained on."""
        return self.config.clap_model_id

    @property
    def clap_matches(self) -> bool:
        return self.config.clap_model_id in (None, self.clap.model_id)

    def tag_text(self) -> np.ndarray:
        """(K, D) CLAP text embeddings of the tag prompts, computed once."""
        if self._tag_text is None:
            self._tag_text = self.clap.embed_text(self.tags.prompts())
        return self._tag_text

    def caption(
        self,
        waves: Sequence[np.ndarray],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        num_beams: int | None = None,
    ) -> list[CaptionResult]:
        """Caption, tag and segment each wave (mono float at the CLAP's sample rate)."""
        # 1. inputs
        metadata = _metadata_for(waves, metadata)
        if not waves:
            return []
        # 2. CLAP frames per 10 s segment
        return self.caption_segments(segment_features(self.clap, waves), metadata, num_beams)

    def embed_and_caption(
        self,
        waves: Sequence[np.ndarray],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        num_beams: int | None = None,
    ) -> tuple[np.ndarray, list[CaptionResult]]:
        """`self.clap.embed_audio(waves)` (N, D) and `caption(waves, metadata)` from one CLAP
        pass (`features.embed_and_segment`): what an upload needs for search and words."""
        from generative.captioner.features import embed_and_segment

        metadata = _metadata_for(waves, metadata)
        if not waves:
            return np.zeros((0, self.clap.dim), dtype=np.float32), []
        embeddings, per_wave = embed_and_segment(self.clap, waves)
        return embeddings, self.caption_segments(per_wave, metadata, num_beams)

    def caption_segments(
        self,
        per_wave: Sequence[Sequence[SegmentFeatures]],
        metadata: Sequence[Mapping[str, Any] | None],
        num_beams: int | None = None,
    ) -> list[CaptionResult]:
        """Steps 3 to 5 of `caption`, from each wave's segment features."""
        flat = [(i, seg) for i, segs in enumerate(per_wave) for seg in segs]
        # 3. a caption per segment
        texts = self.caption_features(
            [seg.frames for _, seg in flat],
            np.stack([seg.embedding for _, seg in flat]),
            [metadata_text(metadata[i]) for i, _ in flat],
            num_beams=num_beams,
        )
        results, row = [], 0
        sound_embedding, sound_captions = [], []
        for segs in per_wave:
            captions = texts[row : row + len(segs)]
            row += len(segs)
            # 4. the loudest segment speaks for the sound
            salient = int(np.argmax([seg.rms for seg in segs]))
            lengths = np.asarray([seg.end_s - seg.start_s for seg in segs]) + 1e-6
            pooled = (np.stack([seg.embedding for seg in segs]) * lengths[:, None]).sum(axis=0)
            sound_embedding.append(pooled / max(float(np.linalg.norm(pooled)), 1e-12))
            sound_captions.append(captions[salient])
            results.append(
                CaptionResult(
                    caption=captions[salient],
                    tags=[],
                    segments=[
                        Segment(s.start_s, s.end_s, c) for s, c in zip(segs, captions, strict=True)
                    ],
                )
            )
        # 5. tags
        scores = self.tags.scores(np.stack(sound_embedding), self.tag_text(), sound_captions)
        for result, tags in zip(results, self.tags.select(scores), strict=True):
            result.tags = tags
        return results

    def caption_features(
        self,
        frames: Sequence[np.ndarray],
        clap: np.ndarray,
        meta_texts: Sequence[str],
        num_beams: int | None = None,
        batch_size: int = BATCH_SIZE,
        neighbours: bool = True,
    ) -> list[str]:
        """Captions from precomputed CLAP features: frames (T_i, C) and embeddings (N, D).
        `neighbours=False` reads nothing of the similar training clips (for the ablation)."""
        found = self.caption_candidates(frames, clap, meta_texts, num_beams, batch_size,
                                        neighbours)  # fmt: skip
        config = self.config
        frequency = self.bank.frequency if self.bank is not None else None
        # (weight, temperature): a sound with metadata, a sound without
        settings = {
            True: (config.consensus_weight, config.consensus_temperature),
            False: (config.consensus_weight_bare, config.consensus_temperature_bare),
        }
        out = []
        for c, text in zip(found, meta_texts, strict=True):
            if not c.near:
                out.append(c.texts[0])
                continue
            weight, temperature = settings[bool(text)]
            out.append(choose(c.texts, c.logprob, c.near, weight, frequency, c.near_similarity,
                              temperature))  # fmt: skip
        return out

    def caption_candidates(
        self,
        frames: Sequence[np.ndarray],
        clap: np.ndarray,
        meta_texts: Sequence[str],
        num_beams: int | None = None,
        batch_size: int = BATCH_SIZE,
        neighbours: bool = True,
        consensus_k: int | None = None,
    ) -> list[Candidates]:
        """Per item: the beam search's caption alone, or, with consensus reranking on
        (`consensus_k`, default the config's), every final beam and the `consensus_k` nearest
        training clips' captions, each with the model's mean log-probability per token."""
        import torch

        config = self.config
        usable = neighbours and self.bank is not None
        k_enc = config.neighbours if usable else 0
        k_con = (config.consensus_k if consensus_k is None else consensus_k) if usable else 0
        k_max = max(k_enc, k_con)
        near_all, sims_all = (self.bank.neighbours(clap, k_max) if self.bank is not None and k_max
                              else ([[] for _ in frames], [[] for _ in frames]))  # fmt: skip
        beams = num_beams or config.num_beams
        device = next(self.model.parameters()).device
        out: list[Candidates] = []
        with torch.inference_mode():
            for start in range(0, len(frames), batch_size):
                end = start + batch_size
                near = near_all[start:end]
                sims = sims_all[start:end]
                meta = [
                    self.tokenizer.encode_inputs(text, similar[:k_enc], config.max_meta_tokens,
                                                 config.max_neighbour_tokens)
                    for text, similar in zip(meta_texts[start:end], near, strict=True)
                ]  # fmt: skip
                chunk = list(frames[start:end])
                batch = collate(chunk, clap[start:end], meta, None, config)
                ids = self.model.generate({k: v.to(device) for k, v in batch.items()}, beams,
                                          every_beam=k_con > 0)  # fmt: skip
                texts = [self.tokenizer.decode(row.tolist()) for row in ids]
                if not k_con:
                    out += [Candidates([text], [0.0], []) for text in texts]
                    continue
                texts_of = [candidates_of(texts[i * beams : (i + 1) * beams], near[i][:k_con])
                            for i in range(len(chunk))]  # fmt: skip
                rows = [i for i, found in enumerate(texts_of) for _ in found]
                labels = [self.tokenizer.encode_caption(t, config.max_caption_tokens)
                          for found in texts_of for t in found]  # fmt: skip
                padded = torch.full((len(labels), max(map(len, labels))), -100, dtype=torch.long)
                for r, ids_r in enumerate(labels):
                    padded[r, : len(ids_r)] = torch.as_tensor(ids_r)
                on_device = {k: v.to(device) for k, v in batch.items()}
                owners = torch.as_tensor(rows).to(device)
                logprob = self.model.logprob(on_device, padded.to(device), owners)
                logprob_list = logprob.float().cpu().tolist()
                at = 0
                for found, similar, sim in zip(texts_of, near, sims, strict=True):
                    out.append(Candidates(found, logprob_list[at : at + len(found)],
                                          similar[:k_con], sim[:k_con]))  # fmt: skip
                    at += len(found)
        return out


def _metadata_for(
    waves: Sequence[np.ndarray], metadata: Sequence[Mapping[str, Any] | None] | None
) -> list[Mapping[str, Any] | None]:
    out: list[Mapping[str, Any] | None] = (
        [None] * len(waves) if metadata is None else list(metadata)
    )
    if len(out) != len(waves):
        raise ValueError(f"{len(waves)} waves but {len(out)} metadata entries")
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_captioner(
    folder: Path, device: str = "cpu", clap: ClapModel | None = None, check_clap: bool = True
) -> Captioner:
    """Load a checkpoint folder. `clap` is the running CLAP (default: the settings' one);
    raises CaptionerLoadError when the folder is incomplete or, with `check_clap`, when the
    captioner was trained on another CLAP's frames."""
    import torch

    folder = Path(folder)
    needed = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, TAGS_FILE)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise CaptionerLoadError(f"captioner checkpoint {folder} lacks {', '.join(missing)}")
    if clap is None:
        from core.config import get_settings
        from generative.clap.load import load_clap

        clap = load_clap(get_settings().clap_checkpoint, device=device)
    try:
        model = load_autocap(folder)
        tokenizer = CaptionTokenizer.load(folder)
        tags = TagScorer.load(folder)
        bank = CaptionBank.load(folder)
    except Exception as exc:  # json, safetensors, tokenizers and torch raise several types
        raise CaptionerLoadError(f"cannot load captioner checkpoint {folder}: {exc}") from exc
    trained_on = model.config.clap_model_id
    if check_clap and trained_on not in (None, clap.model_id):
        raise CaptionerLoadError(
            f"captioner {folder} was trained on CLAP {trained_on}, not {clap.model_id}"
        )
    if (model.config.neighbours or model.config.consensus_k) and bank is None:
        raise CaptionerLoadError(f"captioner checkpoint {folder} lacks {BANK_CAPTIONS}")
    model_id = f"autocap:{_digest(folder / WEIGHTS_FILE)}"
    return Captioner(
        model.to(torch.device(device)), tokenizer, tags, clap, model_id=model_id, bank=bank
    )


# --- a tiny random captioner, for tests anywhere in Foley ------------------------------------

_TINY_TEXTS = (
    "a dog barks twice", "rain falls on a tin roof", "a door creaks open", "footsteps on gravel",
    "a car engine starts", "birds sing in the morning", "a bell rings", "wind howls",
)  # fmt: skip
_TINY_LABELS = ("dog", "rain", "door", "gravel footstep", "engine", "birdsong", "bell", "wind")


def build_random_captioner(clap: ClapModel, seed: int = 0) -> Captioner:
    """A real, untrained Captioner with a tiny config (hidden size 8) over `clap`, for tests
    that need one without a trained checkpoint. Its tags pass every threshold."""
    from tokenizers import Tokenizer  # noqa: F401  (fails early if tokenizers is missing)

    texts = list(_TINY_TEXTS) + [f"<title> {t} <folder> sounds" for t in _TINY_TEXTS]
    tokenizer = CaptionTokenizer(train_tokenizer(texts * 3, vocab_size=300))
    ids = tokenizer.tokenizer
    config = tiny_captioner_config(
        vocab_size=tokenizer.vocab_size, frame_dim=512, clap_dim=clap.dim
    )
    config.pad_id, config.bos_id, config.eos_id = (
        ids.token_to_id("<pad>"), ids.token_to_id("<s>"), ids.token_to_id("</s>"),
    )  # fmt: skip
    config.clap_model_id = clap.model_id
    config.neighbours, config.consensus_k, config.consensus_weight = 2, 3, 1.0
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(_TINY_TEXTS), clap.dim)).astype(np.float32)
    bank = CaptionBank(_TINY_TEXTS, vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
                       clap.model_id)  # fmt: skip
    labels = build_vocabulary([[label] for label in _TINY_LABELS], min_count=1)
    tags = TagScorer(labels=labels, thresholds=[-1.0] * len(labels), caption_weight=0.1)
    model_id = (
        "autocap:random-"
        + hashlib.sha256(json.dumps([seed, clap.model_id]).encode()).hexdigest()[:8]
    )
    return Captioner(
        build_autocap(config, seed=seed), tokenizer, tags, clap, model_id=model_id, bank=bank
    )


def save_captioner(
    captioner: Captioner, out_dir: Path, extra_files: dict[str, str] | None = None
) -> Path:
    """Write the model, tokenizer and tag scorer into a checkpoint folder."""
    from generative.captioner.model import save_autocap

    out = save_autocap(captioner.model, Path(out_dir), extra_files)
    captioner.tokenizer.save(out)
    captioner.tags.save(out)
    if captioner.bank is not None:
        captioner.bank.save(out)
    return out
