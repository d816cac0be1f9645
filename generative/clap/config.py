"""CLAP model configs (laion-clap's JSON format) and access to laion-clap's model code.

A config is the dict laion-clap keeps in `clap_module/model_configs/*.json`: `embed_dim` (the
audio branch's output width), `audio_cfg`, `text_cfg`, and optionally `joint_embed_shape` (the
shared embedding size, 512 when absent). The compact checkpoints use laion-clap's own
`transformer` text branch with the CLIP BPE tokenizer bundled in the package, so they build and
run with nothing downloaded.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"

# The keyword arguments of laion-clap's `CLAP` constructor that a JSON config may carry.
CLAP_KWARGS = ("embed_dim", "audio_cfg", "text_cfg", "quick_gelu", "joint_embed_shape", "mlp_act")
AUDIO_KEYS = ("model_type", "model_name", "sample_rate", "window_size", "hop_size", "mel_bins")
TEXT_KEYS = ("context_length", "vocab_size", "width", "heads", "layers")
# The frozen sentence encoder's text branch (`generative.clap.sentence`) needs only its width.
SENTENCE_TEXT_KEYS = ("width",)

# PANN-6's convolutional stack ends in 512 channels and its first batch norm expects 64 mel
# bins; both are fixed in laion-clap's code, whatever the config says.
PANN6_WIDTH = 512
PANN6_MELS = 64
CLIP_VOCAB = 49408


def clap_module() -> ModuleType:
    """laion-clap's `clap_module` package, imported the way laion-clap itself imports it.

    `laion_clap/__init__.py` puts its own folder on `sys.path` and its hook imports
    `clap_module` as a top-level package; importing it the same way keeps one copy of the model
    registry and skips the hook's imports (librosa, the RoBERTa tokenizer) the compact model
    does not need.
    """
    if "clap_module" not in sys.modules:
        spec = importlib.util.find_spec("laion_clap")
        if spec is None or spec.origin is None:
            raise ImportError("laion-clap is not installed (pip install laion-clap==1.1.7)")
        package_dir = str(Path(spec.origin).parent)
        if package_dir not in sys.path:
            sys.path.append(package_dir)
    import clap_module as module

    return module


def clip_tokens(texts: list[str], context_length: int) -> torch.Tensor:
    """CLIP BPE tokens (B, context_length); a truncated caption keeps its end-of-text token,
    because the text branch reads its features at that position (the largest token id)."""
    module = clap_module()
    tokens = module.tokenize(texts, context_length=context_length)
    eot = module.tokenizer._tokenizer.encoder["<end_of_text>"]
    tokens[tokens[:, -1] != 0, -1] = eot
    return tokens


def waveform_input(audio_cfg: dict[str, Any]) -> Callable[[torch.Tensor], Any]:
    """How laion-clap's audio branch wants a (B, T) batch: PANN-6/10 take the tensor itself,
    PANN-14 and HTSAT a dict with a `waveform` entry."""
    if audio_cfg.get("model_type") == "PANN" and audio_cfg.get("model_name") in ("Cnn6", "Cnn10"):
        return lambda x: x
    return lambda x: {"waveform": x}


def _pann6_config(
    *, sample_rate: int, window_s: float, hop_size: int, window_size: int
) -> dict[str, Any]:
    return {
        "model_type": "PANN",
        "model_name": "Cnn6",
        "sample_rate": sample_rate,
        "audio_length": 1024,
        "clip_samples": round(window_s * sample_rate),
        "window_size": window_size,
        "hop_size": hop_size,
        "mel_bins": PANN6_MELS,
        "fmin": 50,
        "fmax": sample_rate // 2,
        # The AudioSet tagging head is unused by CLAP; one output keeps it nearly free.
        "class_num": 1,
    }


def compact_clap_config() -> dict[str, Any]:
    """Foley's compact CLAP: PANN-6 at 16 kHz (64 mels, 30 ms hop, 3 s window) + a small
    transformer text branch; about 10M parameters, about 20 MB in fp16."""
    return {
        "embed_dim": PANN6_WIDTH,
        "joint_embed_shape": 256,
        "audio_cfg": _pann6_config(sample_rate=16000, window_s=3.0, hop_size=480, window_size=1024),
        "text_cfg": {
            "model_type": "transformer",
            "context_length": 40,
            "vocab_size": CLIP_VOCAB,
            "width": 96,
            "heads": 4,
            "layers": 3,
        },
    }


def sentence_clap_config() -> dict[str, Any]:
    """The compact CLAP with the frozen sentence encoder as its text side: PANN-6 as in
    `compact_clap_config`, and a trained projection of 384-d sentence vectors."""
    return {**compact_clap_config(), "text_cfg": {"model_type": "sentence", "width": 384}}


def is_sentence_config(config: dict[str, Any]) -> bool:
    return bool(config.get("text_cfg", {}).get("model_type") == "sentence")


def tiny_clap_config() -> dict[str, Any]:
    """A small random-weight config for tests: 1 s windows, 32-d embeddings, a 2-layer text
    transformer of width 32."""
    return {
        "embed_dim": PANN6_WIDTH,
        "joint_embed_shape": 32,
        "audio_cfg": _pann6_config(sample_rate=16000, window_s=1.0, hop_size=320, window_size=512),
        "text_cfg": {
            "model_type": "transformer",
            "context_length": 32,
            "vocab_size": CLIP_VOCAB,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """The constructor keyword arguments of a compact config; ValueError names what is wrong."""
    missing = [key for key in ("embed_dim", "audio_cfg", "text_cfg") if key not in config]
    missing += [f"audio_cfg.{k}" for k in AUDIO_KEYS if k not in config.get("audio_cfg", {})]
    text = config.get("text_cfg", {})
    kind = text.get("model_type", "transformer") if isinstance(text, dict) else None
    keys = SENTENCE_TEXT_KEYS if kind == "sentence" else TEXT_KEYS
    missing += [f"text_cfg.{k}" for k in keys if k not in text]
    if missing:
        raise ValueError(f"CLAP config lacks {', '.join(missing)}")
    if kind not in ("transformer", "sentence"):
        raise ValueError(
            "a compact CLAP reads text with laion-clap's 'transformer' branch or the frozen "
            f"'sentence' encoder; got {kind!r}"
        )
    if kind == "sentence" and int(text["width"]) != 384:
        raise ValueError(
            f"the sentence encoder's vectors are 384-d; text_cfg.width is {text['width']}"
        )
    kwargs = copy.deepcopy({key: config[key] for key in CLAP_KWARGS if key in config})
    kwargs["text_cfg"]["model_type"] = kind
    audio = kwargs["audio_cfg"]
    audio.setdefault("clip_samples", audio["sample_rate"] * 10)
    if audio["clip_samples"] <= 0:
        raise ValueError("audio_cfg.clip_samples must be positive")
    return kwargs


def window_samples(config: dict[str, Any]) -> int:
    """Samples per audio window: the checkpoint's `clip_samples`."""
    return int(config["audio_cfg"]["clip_samples"])
