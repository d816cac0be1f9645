"""A loaded DiffATR reranker: the denoiser, its sampler and the settings it was tuned with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from generative.diffatr.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    DiffATRConfig,
    DiffATRDenoiser,
    build_denoiser,
)
from generative.diffatr.sampler import DiffATRSampler
from generative.errors import ModelLoadError


class DiffATR:
    """A loaded reranker: denoiser + sampler + the settings it was tuned with."""

    def __init__(self, model: DiffATRDenoiser, config: DiffATRConfig, model_id: str = "") -> None:
        self.model = model.eval()
        self.config = config
        self.sampler = DiffATRSampler(config)
        self.model_id = model_id

    def generate(
        self, query: np.ndarray, audio: np.ndarray, steps: int | None = None
    ) -> np.ndarray:
        """query (D,) and candidates (K, D), unit CLAP vectors -> probabilities (K,)."""
        return self.generate_batch(np.asarray(query)[None], np.asarray(audio)[None], steps)[0]

    def generate_batch(
        self, queries: np.ndarray, audio: np.ndarray, steps: int | None = None
    ) -> np.ndarray:
        """B lists at once: queries (B, D), candidates (B, K, D) -> probabilities (B, K)."""
        query_t = torch.as_tensor(np.asarray(queries, dtype=np.float32))  # (B, D)
        audio_t = torch.as_tensor(np.asarray(audio, dtype=np.float32))  # (B, K, D)
        generator = torch.Generator().manual_seed(self.config.seed)
        # Every list starts from the same seeded noise, the noise a list alone would get,
        # so a list's scores do not depend on which others share its batch.
        noise = torch.randn((1, audio_t.shape[1]), generator=generator).expand(len(query_t), -1)
        probs = self.sampler(
            self.model, query_t, audio_t, steps or self.config.sample_steps, noise=noise
        )
        return probs.double().numpy()

    def scores(
        self, clap_scores: np.ndarray, probs: np.ndarray, alpha: float | None = None
    ) -> np.ndarray:
        """Final scores (K,): CLAP similarity + alpha * generated probability."""
        weight = self.config.alpha if alpha is None else alpha
        return np.asarray(clap_scores, dtype=np.float64) + weight * np.asarray(probs)


class DiffATRLoadError(ModelLoadError):
    """A DiffATR checkpoint is missing, unreadable or does not match its config."""


def load_diffatr(folder: Path, device: str = "cpu") -> DiffATR:
    """Load a checkpoint folder; raises DiffATRLoadError naming what is wrong."""
    import hashlib

    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights.is_file():
        raise DiffATRLoadError(
            f"DiffATR checkpoint {folder} needs {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    try:
        config = DiffATRConfig.from_dict(json.loads(config_path.read_text()))
        state = {k: v.float() for k, v in load_file(str(weights)).items()}
        model = build_denoiser(config)
        model.load_state_dict(state)
    except Exception as exc:  # json, safetensors and torch raise several types
        raise DiffATRLoadError(f"cannot load DiffATR checkpoint {folder}: {exc}") from exc
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    return DiffATR(model.to(torch.device(device)), config, model_id=f"diffatr:{digest}")
