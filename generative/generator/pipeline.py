"""`Generator`: a description (and the library's nearest sounds) -> a new sound.

prompt -> CLAP text embedding -> conditions with the neighbours (arrays: the search side finds
them) -> latents (UNet + scheduler, classifier-free guidance) -> mel (VAE decoder) -> wave
(the vocoder, or Griffin-Lim when the checkpoint has none).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from generative.generator.config import MAX_SECONDS, MIN_SECONDS, GeneratorConfig
from generative.generator.mel import MelFrontEnd
from generative.generator.model import (
    CARD_FILE,
    CONFIG_FILE,
    Conditions,
    GeneratorLoadError,
    LatentUNet,
    build_vae,
    load_part,
    part_digest,
    read_config,
    save_part,
    weights_file,
    write_text,
)
from generative.generator.sampler import GUIDANCE_MODES, sample_latents
from generative.generator.vocoder import Vocoder

if TYPE_CHECKING:
    from generative.clap.model import ClapModel

log = logging.getLogger(__name__)


class GenerationError(ValueError):
    """The request itself is unusable: empty prompt, length out of range, bad neighbours."""


@dataclass
class Neighbours:
    """The retrieved sounds: K CLAP audio embeddings, and the CLAP text embeddings of their
    captions where they have one (`has_caption` False: that row of `text` is ignored)."""

    audio: np.ndarray  # (K, D)
    text: np.ndarray | None = None  # (K, D)
    has_caption: np.ndarray | None = None  # (K,) bool
    ids: list[Any] = field(default_factory=list)  # provenance (sound ids), not used here


@dataclass
class Generation:
    wave: np.ndarray  # (samples,) float32 in [-1, 1]
    sample_rate: int
    mel: np.ndarray  # (T, n_mels) normalised log-mel the VAE decoded
    seed: int
    settings: dict[str, Any]
    seconds_taken: dict[str, float]  # per step: text, unet, vae, vocoder


class Generator:
    def __init__(
        self,
        config: GeneratorConfig,
        vae: Any,
        unet: LatentUNet,
        vocoder: Vocoder | None = None,
        clap: ClapModel | None = None,
        model_id: str = "generator:random",
    ) -> None:
        self.config = config
        self.vae = vae.eval()
        self.unet = unet.eval()
        self.vocoder = vocoder.eval() if vocoder is not None else None
        self.front_end = MelFrontEnd(config.mel)
        self.clap = clap
        self.model_id = model_id

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    def to(self, device: str) -> Generator:
        for module in (self.vae, self.unet, self.vocoder, self.front_end):
            if module is not None:
                module.to(torch.device(device))
        return self

    def check(self, prompt: str, seconds: float, neighbours: Neighbours | None) -> str:
        """The prompt, stripped; GenerationError names what is wrong with a request."""
        prompt = (prompt or "").strip()
        if not prompt:
            raise GenerationError("the prompt is empty: describe the sound to generate")
        if not (isinstance(seconds, int | float) and MIN_SECONDS <= seconds <= MAX_SECONDS):
            raise GenerationError(
                f"seconds must be between {MIN_SECONDS:g} and {MAX_SECONDS:g}, got {seconds}"
            )
        if neighbours is not None:
            k, dim = self.config.unet.max_neighbours, self.config.unet.clap_dim
            audio = np.asarray(neighbours.audio)
            if audio.ndim != 2 or audio.shape[1] != dim or len(audio) > k:
                raise GenerationError(
                    f"neighbours must be at most {k} CLAP audio embeddings of {dim} values; "
                    f"got shape {audio.shape}"
                )
            if neighbours.text is not None and np.shape(neighbours.text) != audio.shape:
                raise GenerationError(
                    f"neighbour text embeddings have shape {np.shape(neighbours.text)}; "
                    f"the audio ones {audio.shape}"
                )
        return prompt

    def __call__(
        self,
        prompt: str,
        *,
        seconds: float = 5.0,
        neighbours: Neighbours | None = None,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        guidance_mode: str | None = None,
        scheduler: str | None = None,
        text_embedding: np.ndarray | None = None,
        query_mix: float | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> Generation:
        """Generate `seconds` of audio for `prompt`. `text_embedding` stands in for the CLAP
        (a caller that embedded the prompt already, or a test without a CLAP). `query_mix`:
        the neighbours' share of the query slot (default: the checkpoint's
        `query_from_neighbours`)."""
        prompt = self.check(prompt, seconds, neighbours)
        u = self.config.unet
        mix = u.query_from_neighbours if query_mix is None else float(query_mix)
        if not 0.0 <= mix <= 1.0:
            raise GenerationError(f"query_mix must be between 0 and 1, got {mix}")
        steps = u.steps if steps is None else int(steps)
        guidance = u.guidance if guidance is None else float(guidance)
        mode = guidance_mode or (u.guidance_mode if neighbours is not None else "text")
        if mode not in GUIDANCE_MODES:
            raise GenerationError(f"guidance mode must be one of {', '.join(GUIDANCE_MODES)}")
        taken: dict[str, float] = {}

        # 1. The prompt's CLAP text embedding.
        started = time.perf_counter()
        if text_embedding is None:
            if self.clap is None:
                raise GenerationError("no CLAP to embed the prompt: pass text_embedding")
            text_embedding = self.clap.embed_text([prompt])[0]
        taken["text"] = time.perf_counter() - started

        # 2. Conditions and latent shape: mel frames padded to what VAE and UNet divide.
        query = np.asarray(text_embedding, np.float32)
        conditions = self.conditions(query_slot(query, neighbours, mix), neighbours)
        frames = self.config.frames(seconds)
        multiple = self.config.frame_multiple
        padded = math.ceil(frames / multiple) * multiple
        down = self.config.vae.downsample
        shape = (1, self.config.vae.latent_channels, padded // down, self.config.mel.n_mels // down)

        # 3. Denoise the latents.
        started = time.perf_counter()
        latents = sample_latents(
            self.unet,
            conditions,
            shape,
            steps=steps,
            guidance=guidance,
            mode=mode,
            seed=seed,
            scheduler=scheduler,
            on_step=on_step,
        )
        taken["unet"] = time.perf_counter() - started

        # 4. Latents -> mel -> wave.
        started = time.perf_counter()
        with torch.inference_mode():
            mel = self.vae.decode(latents).sample[:, 0, :frames]  # (1, T, M)
            taken["vae"] = time.perf_counter() - started
            started = time.perf_counter()
            if self.vocoder is not None:
                wave = self.vocoder(mel)
            else:
                wave = self.front_end.griffin_lim(mel, self.config.vocoder.griffin_lim_iters, seed)
        taken["vocoder"] = time.perf_counter() - started
        samples = round(seconds * self.sample_rate)
        settings = {
            "seconds": seconds,
            "steps": steps,
            "guidance": guidance,
            "guidance_mode": mode,
            "scheduler": scheduler or u.scheduler,
            "neighbours": 0 if neighbours is None else len(neighbours.audio),
            "query_mix": mix if neighbours is not None else 0.0,
            "vocoder": "vocos" if self.vocoder is not None else "griffin-lim",
        }
        return Generation(
            wave=wave[0, :samples].float().cpu().numpy(),
            sample_rate=self.sample_rate,
            mel=mel[0].float().cpu().numpy(),
            seed=seed,
            settings=settings,
            seconds_taken=taken,
        )

    def conditions(self, query: np.ndarray, neighbours: Neighbours | None) -> Conditions:
        """One request's conditions (B = 1); no neighbours means retrieval off."""
        dim = self.config.unet.clap_dim
        if query.shape != (dim,):
            raise GenerationError(f"the prompt embedding has shape {query.shape}; expected {dim}")
        k = 0 if neighbours is None else len(neighbours.audio)
        audio = np.zeros((1, max(k, 1), dim), np.float32)
        text = np.zeros_like(audio)
        present = np.zeros((1, max(k, 1)), bool)
        captioned = np.zeros_like(present)
        if neighbours is not None and k:
            audio[0, :k] = neighbours.audio
            present[0, :k] = True
            if neighbours.text is not None:
                text[0, :k] = neighbours.text
                captioned[0, :k] = (
                    True if neighbours.has_caption is None else np.asarray(neighbours.has_caption)
                )
        device = next(self.unet.parameters()).device
        return Conditions(
            query=torch.from_numpy(query[None]).to(device),
            neighbour_audio=torch.from_numpy(audio).to(device),
            neighbour_text=torch.from_numpy(text).to(device),
            neighbour_mask=torch.from_numpy(present).to(device),
            caption_mask=torch.from_numpy(captioned).to(device),
            use_query=torch.ones(1, dtype=torch.bool, device=device),
            use_retrieval=torch.tensor([k > 0], device=device),
        )


def query_slot(text: np.ndarray, neighbours: Neighbours | None, mix: float) -> np.ndarray:
    """What fills the UNet's query slot: the prompt's text embedding, or with neighbours and
    `mix` > 0, the unit-normalised blend (1 - mix) * text + mix * their mean audio embedding."""
    if neighbours is None or mix == 0.0 or len(neighbours.audio) == 0:
        return text
    if text.ndim != 1:
        return text  # a malformed prompt embedding: `conditions` names the problem
    audio = np.asarray(neighbours.audio, np.float32).mean(axis=0)
    return _unit((1.0 - mix) * _unit(text) + mix * _unit(audio)).astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-8)


# --- building, saving and loading -----------------------------------------------------------


def build_random_generator(
    config: GeneratorConfig, seed: int = 0, vocoder: bool = True
) -> Generator:
    """A generator with seeded random weights (tests; the start of training)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = build_vae(config.vae)
        unet = LatentUNet(config.unet, config.vae.latent_channels)
        voc = Vocoder(config.vocoder, config.mel) if vocoder else None
    return Generator(config, vae, unet, voc)


def save_generator(generator: Generator, folder: Path, card: str | None = None) -> Path:
    """Every part's fp16 weights, the config and (with `card`) the model card."""
    folder = Path(folder)
    save_part(generator.vae, folder, "vae")
    generator.config.vae_id = part_digest(folder, "vae")
    save_part(generator.unet, folder, "unet")
    if generator.vocoder is not None:
        save_part(generator.vocoder, folder, "vocoder")
    write_text(folder, CONFIG_FILE, generator.config.to_json())
    if card is not None:
        write_text(folder, CARD_FILE, card)
    return folder


def load_generator(folder: Path, clap: ClapModel | None = None, device: str = "cpu") -> Generator:
    """A checkpoint folder's generator. Without `vocoder.safetensors` it speaks through
    Griffin-Lim. GeneratorLoadError when a part is missing, unreadable or does not fit: the
    UNet trained on another VAE, or on another CLAP than `clap`."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise GeneratorLoadError(f"generator checkpoint {folder} does not exist")
    config = read_config(folder)
    vae = load_part(build_vae(config.vae), folder, "vae")
    if config.vae_id is not None and part_digest(folder, "vae") != config.vae_id:
        raise GeneratorLoadError(
            f"{folder / weights_file('unet')} was trained on another VAE than "
            f"{folder / weights_file('vae')}: train the unet stage again"
        )
    unet = load_part(LatentUNet(config.unet, config.vae.latent_channels), folder, "unet")
    vocoder: Vocoder | None = None
    if (folder / weights_file("vocoder")).is_file():
        vocoder = load_part(Vocoder(config.vocoder, config.mel), folder, "vocoder")
    if clap is not None:
        if clap.dim != config.unet.clap_dim:
            raise GeneratorLoadError(
                f"generator {folder} takes {config.unet.clap_dim}-d CLAP embeddings; "
                f"{clap.model_id} makes {clap.dim}-d ones"
            )
        if config.clap_model_id and config.clap_model_id != clap.model_id:
            raise GeneratorLoadError(
                f"generator {folder} was trained on CLAP {config.clap_model_id}, "
                f"not on {clap.model_id}"
            )
    model_id = f"generator:{part_digest(folder, 'unet')}"
    return Generator(config, vae, unet, vocoder, clap=clap, model_id=model_id).to(device)
