"""Official LAION CLAP checkpoints (HTSAT + RoBERTa, e.g. `630k-audioset-best.pt`).

Built through laion-clap 1.1.7's own `CLAP_Module(enable_fusion, amodel=..., tmodel=...)` and
`load_ckpt(path)`. Its constructor loads `roberta-base` with `RobertaModel.from_pretrained` and
`RobertaTokenizer.from_pretrained`, so those files must already be in the local Hugging Face
cache; Foley never downloads them (HF_HUB_OFFLINE=1).

Audio goes straight to the audio branch, window by window (see `generative.clap.model`), never
through `get_audio_embedding_from_data`, whose truncation picks random crops. For a fusion
checkpoint each window is exactly `clip_samples` long, so laion-clap's feature code stacks the
window's own mel four times and marks it not-longer: HTSAT's deterministic path.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generative.clap.config import waveform_input
from generative.clap.model import ClapLoadError, ClapModel

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ROBERTA_REPO = "roberta-base"
ROBERTA_FILES = ("config.json", "vocab.json", "merges.txt")
ROBERTA_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def missing_roberta_files() -> list[str]:
    """The `roberta-base` files absent from the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(ROBERTA_REPO, name), str)

    missing = [name for name in ROBERTA_FILES if not cached(name)]
    if not any(cached(name) for name in ROBERTA_WEIGHTS):
        missing.append(" or ".join(ROBERTA_WEIGHTS))
    return missing


def load_official(
    path: Path,
    *,
    amodel: str,
    tmodel: str,
    enable_fusion: bool,
    device: str,
    batch_size: int,
) -> ClapModel:
    if not path.is_file():
        raise ClapLoadError(f"CLAP checkpoint {path} does not exist")
    if tmodel != "roberta":
        raise ClapLoadError(
            f"official LAION checkpoints use the roberta text branch; got tmodel={tmodel!r}"
        )
    if enable_fusion and not amodel.startswith("HTSAT"):
        raise ClapLoadError("fusion is supported for HTSAT checkpoints only")
    missing = missing_roberta_files()
    if missing:
        cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise ClapLoadError(
            f"{path.name} needs the Hugging Face model {ROBERTA_REPO!r} in the local cache "
            f"({cache}); missing: {', '.join(missing)}. Copy them there from a machine with "
            "network access (huggingface-cli download roberta-base)."
        )
    wrapper = _build(path, amodel, enable_fusion, device)
    audio_cfg = dict(wrapper.model_cfg["audio_cfg"])
    return ClapModel(
        wrapper.model,
        model_id=f"laion:{path.stem}",
        sample_rate=int(audio_cfg["sample_rate"]),
        window=int(audio_cfg["clip_samples"]),
        tokenize=wrapper.tokenizer,
        audio_input=fusion_input(audio_cfg) if enable_fusion else waveform_input(audio_cfg),
        device=device,
        batch_size=batch_size,
    )


def _build(path: Path, amodel: str, enable_fusion: bool, device: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # laion-clap prints every step (and each parameter name); keep it out of the CLI's output.
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            import laion_clap

            wrapper = laion_clap.CLAP_Module(
                enable_fusion=enable_fusion, device=device, amodel=amodel, tmodel="roberta"
            )
            wrapper.load_ckpt(str(path), verbose=False)
    except Exception as exc:  # torch.load, key mismatches and HF errors all mean "cannot load"
        raise ClapLoadError(f"cannot load official CLAP checkpoint {path}: {exc}") from exc
    finally:
        log.debug("laion-clap: %s", output.getvalue().strip())
    wrapper.model.eval()
    return wrapper


def fusion_input(audio_cfg: dict[str, Any]) -> Any:
    """(B, clip_samples) windows -> the `mel_fusion`/`longer` dict of a fusion checkpoint."""

    def build(x: torch.Tensor) -> dict[str, torch.Tensor]:
        import torch
        from laion_clap.training.data import get_audio_features

        samples = [
            get_audio_features(
                {},
                wave.cpu(),
                int(audio_cfg["clip_samples"]),
                data_truncating="fusion",
                data_filling="repeatpad",
                audio_cfg=audio_cfg,
            )
            for wave in x
        ]
        return {
            "mel_fusion": torch.stack([s["mel_fusion"] for s in samples]).to(x.device),
            "longer": torch.cat([s["longer"] for s in samples]).to(x.device),
        }

    return build
