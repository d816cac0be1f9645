"""DiffATR's sampler: DDIM (diffusers) over the relevance distribution, separate from the model."""

from __future__ import annotations

import math
import threading
from typing import Any

import torch

from generative.diffatr.model import DiffATRConfig, DiffATRDenoiser, relevance_to_sample


class DiffATRSampler:
    """DDIM (diffusers) over the relevance distribution; stateless between calls."""

    def __init__(self, config: DiffATRConfig) -> None:
        self.config = config
        self._schedulers: dict[int, Any] = {}
        self._ddim: dict[int, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def scheduler(self, steps: int) -> Any:
        """A DDIM scheduler whose timesteps are set for `steps`; built once per step count
        (DDIM's `step` reads but never changes it, so threads can share it)."""
        from diffusers import DDIMScheduler

        with self._lock:
            if steps not in self._schedulers:
                scheduler: Any = DDIMScheduler(
                    num_train_timesteps=self.config.train_timesteps,
                    beta_schedule=self.config.beta_schedule,
                    prediction_type="sample",
                    clip_sample=True,
                    # "trailing" starts at the last timestep, pure noise, even for one step.
                    timestep_spacing="trailing",
                )
                scheduler.set_timesteps(steps)
                self._schedulers[steps] = scheduler
            return self._schedulers[steps]

    def ddim(self, steps: int) -> list[tuple[float, float]]:
        """Per step, the coefficients of diffusers' DDIM update (eta 0, predicted x0 in
        [-1, 1] so its clipping is a no-op) as x_prev = keep * x_t + mix * x0, read from the
        scheduler's schedule: eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t) and
        x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps. One step costs two multiply-adds."""
        if steps in self._ddim:
            return self._ddim[steps]
        scheduler = self.scheduler(steps)
        ratio = scheduler.config.num_train_timesteps // steps
        out = []
        for t in scheduler.timesteps.tolist():
            a_t = float(scheduler.alphas_cumprod[t])
            prev = t - ratio
            a_prev = float(scheduler.alphas_cumprod[prev]) if prev >= 0 else 1.0
            keep = math.sqrt((1 - a_prev) / (1 - a_t))
            out.append((keep, math.sqrt(a_prev) - keep * math.sqrt(a_t)))
        self._ddim[steps] = out
        return out

    def add_noise(
        self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """q(x_t | x_0) for training: clean (B, K) in [-1, 1], timesteps (B,) -> (B, K)."""
        return self.scheduler(1).add_noise(clean, noise, timesteps)

    @torch.inference_mode()
    def __call__(
        self,
        model: DiffATRDenoiser,
        query: torch.Tensor,
        audio: torch.Tensor,
        steps: int,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """query (B, D), audio (B, K, D) -> the generated distribution (B, K): rows >= 0, sum 1.
        The starting noise is drawn from `generator`, or given as `noise` (B, K)."""
        if query.dim() != 2 or audio.dim() != 3 or audio.shape[0] != query.shape[0]:
            raise ValueError(
                f"need query (B, D) and audio (B, K, D); got {query.shape}, {audio.shape}"
            )
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        scheduler = self.scheduler(steps)
        shape = audio.shape[:2]
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=query.dtype)
        x = noise.to(device=query.device, dtype=query.dtype)  # (B, K)
        probs = torch.full(shape, 1.0 / shape[1], dtype=query.dtype, device=query.device)
        encoded = model.encode(query, audio)  # once; each step reuses it
        conds = model.time_condition(scheduler.timesteps.to(query.device))  # (steps, W)
        for t, cond, (keep, mix) in zip(scheduler.timesteps, conds, self.ddim(steps), strict=True):
            logits = model.denoise(encoded, x, t, cond)  # (B, K)
            probs = logits.softmax(dim=-1)
            # DDIM (eta 0) with the clean sample predicted: x_prev = keep * x + mix * x0.
            x = keep * x + mix * relevance_to_sample(probs)
        return probs
