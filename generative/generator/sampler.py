"""Sampling latents with diffusers' DDIM or DPM-Solver and classifier-free guidance.

Guidance modes say which conditions the guidance pushes towards (each has its unconditional
branch because training drops text, retrieval and both):
- `none`: one pass with every condition, no guidance;
- `text`: eps(no query, retrieval) + g * (eps(all) - eps(no query, retrieval));
- `retrieval`: eps(query, no retrieval) + g * (eps(all) - eps(query, no retrieval));
- `both`: eps(nothing) + g * (eps(all) - eps(nothing)).
The starting noise comes from a seeded CPU generator, so a seed gives the same sound.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from generative.generator.config import UNetConfig
from generative.generator.model import Conditions, LatentUNet

GUIDANCE_MODES = ("none", "text", "retrieval", "both")
SCHEDULERS = ("ddim", "dpm")


def build_scheduler(config: UNetConfig, name: str | None = None) -> object:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    name = name or config.scheduler
    kwargs = dict(
        num_train_timesteps=config.train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule=config.beta_schedule,
    )
    if name == "ddim":
        return DDIMScheduler(**kwargs, clip_sample=False, set_alpha_to_one=False)
    if name == "dpm":
        return DPMSolverMultistepScheduler(**kwargs)
    raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}; got {name!r}")


def _unconditional(c: Conditions, mode: str) -> Conditions:
    return c.with_dropped(query=mode in ("text", "both"), retrieval=mode in ("retrieval", "both"))


@torch.inference_mode()
def sample_latents(
    unet: LatentUNet,
    conditions: Conditions,
    shape: tuple[int, ...],
    *,
    steps: int,
    guidance: float,
    mode: str,
    seed: int,
    scheduler: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Denoised latents of `shape` (B, C, T', F'), scaled as the VAE made them."""
    if mode not in GUIDANCE_MODES:
        raise ValueError(f"guidance mode must be one of {', '.join(GUIDANCE_MODES)}; got {mode!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    sched = build_scheduler(unet.config, scheduler)
    sched.set_timesteps(steps)  # type: ignore[attr-defined]
    device = next(unet.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(shape, generator=generator).to(device)
    latents = latents * sched.init_noise_sigma  # type: ignore[attr-defined]
    guided = mode != "none" and guidance != 1.0
    both = Conditions.cat([_unconditional(conditions, mode), conditions]) if guided else conditions
    timesteps = sched.timesteps  # type: ignore[attr-defined]
    for i, t in enumerate(timesteps):
        x = torch.cat([latents, latents]) if guided else latents
        x = sched.scale_model_input(x, t)  # type: ignore[attr-defined]
        eps = unet(x, t.expand(x.shape[0]).to(device), both)
        if guided:
            uncond, cond = eps.chunk(2)
            eps = uncond + guidance * (cond - uncond)
        latents = sched.step(eps, t, latents).prev_sample  # type: ignore[attr-defined]
        if on_step is not None:
            on_step(i + 1, len(timesteps))
    return latents / unet.config.latent_scale
