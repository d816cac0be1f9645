"""CLAP: text and audio into one embedding space, on laion-clap's model code.

Two kinds of checkpoint load through `load_clap`:

- a compact checkpoint folder (`config.json` + fp16 `model.safetensors` + `README.md` card),
  laion-clap's `CLAP` with either the `transformer` text branch and the bundled CLIP tokenizer,
  or the frozen sentence encoder and a trained projection (`generative.clap.sentence`);
- an official LAION `.pt`/`.ckpt` file (HTSAT + RoBERTa), see `generative.clap.official`.

Audio embeddings are deterministic: a wave is cut from its start into fixed, non-overlapping
windows of the checkpoint's `clip_samples`; a window shorter than that (a short file, or the
tail of a long one) is filled by repeating its own samples; each window is embedded and
L2-normalised; the windows are averaged, weighted by how much real audio each holds, and the
mean is L2-normalised. No random crops anywhere.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from generative.clap.config import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    clap_module,
    clip_tokens,
    is_sentence_config,
    validate_config,
    waveform_input,
    window_samples,
)
from generative.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

    from generative.clap.expansion import QueryExpansion

log = logging.getLogger(__name__)

# Rebuilt exactly from the config (STFT kernels, mel filter bank), so never stored in fp16.
_FRONT_END = ("spectrogram_extractor.", "logmel_extractor.")


class ClapLoadError(ModelLoadError):
    """A CLAP checkpoint is missing, unreadable or does not match its config."""


class ClapModel:
    """A loaded CLAP in eval mode, embedding texts and mono waves into L2-normalised vectors."""

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        model_id: str,
        sample_rate: int,
        window: int,
        tokenize: Callable[[list[str]], Any],
        audio_input: Callable[[torch.Tensor], Any],
        device: str = "cpu",
        batch_size: int = 16,
    ) -> None:
        self.module = module.eval()
        self.model_id = model_id
        self.sample_rate = int(sample_rate)
        self.window = int(window)
        self.window_s = self.window / self.sample_rate
        self.dim = int(getattr(module, "joint_embed_shape", 512))
        self.device = device
        self.batch_size = batch_size
        self._tokenize = tokenize
        self._audio_input = audio_input
        # Moves text queries toward near training captions (`expansion.py`); None: plain.
        self.expansion: QueryExpansion | None = None

    @classmethod
    def from_module(
        cls, module: torch.nn.Module, config: dict[str, Any], model_id: str, **kwargs: Any
    ) -> ClapModel:
        """Wrap a compact-config `CLAP` (freshly trained, or random as a baseline)."""
        tokenize: Callable[[list[str]], Any]
        if is_sentence_config(config):
            from generative.clap.sentence import sentence_encoder

            encoder = sentence_encoder(kwargs.get("device", "cpu"))
            tokenize = encoder.encode
        else:
            context = int(config["text_cfg"]["context_length"])
            tokenize = lambda texts: clip_tokens(texts, context)  # noqa: E731
        return cls(
            module,
            model_id=model_id,
            sample_rate=int(config["audio_cfg"]["sample_rate"]),
            window=window_samples(config),
            tokenize=tokenize,
            audio_input=waveform_input(config["audio_cfg"]),
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"ClapModel({self.model_id!r}, dim={self.dim}, sample_rate={self.sample_rate})"

    def embed_text(self, texts: Sequence[str], *, fill: bool = True) -> np.ndarray:
        """(N,) captions or queries -> (N, D) float32, unit length.

        `fill`: every chunk runs as a full batch (empty texts fill the last), because CPU
        kernels round differently for other batch shapes: a text's vector is then the same in
        any company (bit for bit with one torch thread). False: only the given texts run, which
        for a few texts costs a fraction of a full batch; vectors then agree to rounding
        (about 1e-7) across batch shapes.
        """
        import torch
        import torch.nn.functional as F

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = [str(t) for t in texts[start : start + self.batch_size]]
                padded = chunk + [""] * (self.batch_size - len(chunk)) if fill else chunk
                feats = self.module.encode_text(self._tokenize(padded), self.device)  # type: ignore[operator]
                feats = F.normalize(feats[: len(chunk)].float(), dim=-1)
                out[start : start + len(chunk)] = feats.cpu().numpy()
        return out

    def embed_query(self, texts: Sequence[str], *, fill: bool = True) -> np.ndarray:
        """(N,) search queries -> (N, D): `embed_text`, expanded when the checkpoint ships a
        query expansion. Only for searching sounds by description; captions, prompts and
        labels keep their plain vectors."""
        return self.expand(self.embed_text(texts, fill=fill))

    def expand(self, vectors: np.ndarray) -> np.ndarray:
        """Plain query vectors (N, D) -> the vectors search ranks with (`embed_query`)."""
        return vectors if self.expansion is None else self.expansion.expand(vectors)

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) mono float waves at `sample_rate`, any lengths -> (N, D) float32, unit length."""
        windows, weights, owners = [], [], []
        for i, wave in enumerate(waves):
            for window, weight in split_windows(_check_wave(wave, i), self.window):
                windows.append(window)
                weights.append(weight)
                owners.append(i)
        if not windows:
            return np.zeros((0, self.dim), dtype=np.float32)
        per_window = self.embed_windows(np.stack(windows))  # (W, D)
        return pool_windows(per_window, weights, owners, len(waves))

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(W, window) float32 -> (W, D) unit vectors, one per window, in full batches of
        `batch_size` (the same window gives the same bits whatever shares its batch)."""
        import torch
        import torch.nn.functional as F

        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        with torch.inference_mode(), _audio_autocast(self.device):
            for start in range(0, len(windows), self.batch_size):
                chunk = windows[start : start + self.batch_size]
                # Zero rows make every batch full, so a window's vector never depends on
                # how many others share its batch (CPU kernels round by batch shape).
                x = torch.zeros((self.batch_size, windows.shape[1]), dtype=torch.float32)
                x[: len(chunk)] = torch.from_numpy(chunk)
                feats = audio_features(
                    self.module, self._audio_input(x.to(self.device)), self.device
                )
                feats = F.normalize(feats[: len(chunk)].float(), dim=-1)
                out[start : start + len(chunk)] = feats.cpu().numpy()
        return out


def pool_windows(
    per_window: np.ndarray, weights: Sequence[float], owners: Sequence[int], count: int
) -> np.ndarray:
    """Windows' unit vectors (W, D) -> (count, D) unit vectors: each owner's windows averaged,
    weighted by the share of real audio each holds. Every file embedding is pooled here, so
    the same windows give the same bits whichever path embedded them."""
    pooled = np.zeros((count, per_window.shape[1]), dtype=np.float64)
    # (W, D) * (W, 1), summed per owner -> (count, D)
    np.add.at(pooled, np.asarray(owners), per_window * np.asarray(weights)[:, None])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled.astype(np.float32)


def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` computes bfloat16 natively. A CPU without AMX or AVX-512 BF16 only
    emulates it: measured on an AVX2-only CPU, a CLAP training step of batch 64 took 104 s in
    bf16 autocast against 7 s in float32."""
    import torch

    return device == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _audio_autocast(device: str) -> Any:
    """bfloat16 autocast for the audio branch where the CPU computes bf16 natively.

    Measured here (PANN-6, 16 windows of 3 s, one thread): 0.58 s instead of 1.69 s, cosine
    to the fp32 vectors above 0.99999, and bit-identical from run to run on one machine.
    """
    import contextlib

    import torch

    if native_bf16(device):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def audio_features(module: torch.nn.Module, audio: Any, device: str) -> torch.Tensor:
    """laion-clap's audio branch and projection: (B, ...) input -> (B, D), not normalised."""
    branch = module.encode_audio(audio, device)  # type: ignore[operator]
    return module.audio_projection(branch["embedding"])  # type: ignore[operator]


def _check_wave(wave: np.ndarray, index: int) -> np.ndarray:
    array = np.asarray(wave, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"wave {index} has shape {array.shape}; CLAP takes mono 1-D waves")
    if array.size == 0:
        raise ValueError(f"wave {index} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"wave {index} contains NaN or infinite samples")
    return np.clip(array, -1.0, 1.0)


def fill_window(wave: np.ndarray, length: int) -> np.ndarray:
    """`wave` repeated end to end and cut to `length` samples (laion-clap's repeat padding)."""
    return np.resize(wave, length).astype(np.float32, copy=False)


def split_windows(wave: np.ndarray, length: int) -> list[tuple[np.ndarray, float]]:
    """Fixed windows from the start, each with the share of one window it holds in real audio."""
    windows = []
    for start in range(0, len(wave), length):
        piece = wave[start : start + length]
        windows.append((fill_window(piece, length), len(piece) / length))
    return windows


# --- compact checkpoints -------------------------------------------------------------------


def build_random_clap(config: dict[str, Any], seed: int) -> torch.nn.Module:
    """laion-clap's `CLAP` built from a config dict with seeded random weights, in eval mode."""
    import torch

    kwargs = validate_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if is_sentence_config(config):
            from generative.clap.sentence import build_sentence_clap

            model = build_sentence_clap(kwargs)
        else:
            model = clap_module().CLAP(**kwargs)
    return model.eval()


def save_compact(
    model: torch.nn.Module, config: dict[str, Any], out_dir: Path, card: str | None = None
) -> Path:
    """Write `config.json`, fp16 `model.safetensors` and (with `card`) `README.md`; returns
    `out_dir`. Each file is written under a temporary name and renamed into place."""
    from safetensors.torch import save_file

    validate_config(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: (t.half() if t.is_floating_point() else t).detach().cpu().contiguous()
        for name, t in model.state_dict().items()
        if not any(part in name for part in _FRONT_END)
    }
    files: list[tuple[str, Callable[[Path], object]]] = [
        (WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"})),
        (CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2) + "\n")),
    ]
    if card is not None:
        files.append((CARD_FILE, lambda p: p.write_text(card)))
    for name, write in files:
        tmp = out_dir / f".{name}.tmp"
        write(tmp)
        os.chmod(tmp, 0o644)  # safetensors creates its file owner-only
        os.replace(tmp, out_dir / name)
    return out_dir
