"""Loading a CLAP checkpoint: a compact folder, or an official LAION file (`official.py`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from generative.clap.config import CONFIG_FILE, WEIGHTS_FILE, validate_config
from generative.clap.expansion import QueryExpansion
from generative.clap.model import _FRONT_END, ClapLoadError, ClapModel, build_random_clap
from generative.clap.official import load_official


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_compact_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ClapLoadError(f"CLAP checkpoint {folder} has no {CONFIG_FILE}")
    try:
        return validate_config(json.loads(path.read_text()))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ClapLoadError(f"CLAP config {path} is not a laion-clap model config: {exc}") from exc


def _load_compact(folder: Path, device: str, batch_size: int) -> ClapModel:
    import torch

    config = read_compact_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ClapLoadError(f"CLAP checkpoint {folder} has no {WEIGHTS_FILE}")
    try:
        from safetensors.torch import load_file

        state = {
            k: v.float() if v.is_floating_point() else v for k, v in load_file(weights).items()
        }
    except Exception as exc:  # safetensors raises several types for truncated or foreign files
        raise ClapLoadError(f"cannot read CLAP weights {weights}: {exc}") from exc
    model = build_random_clap(config, seed=0)
    mismatch = f"CLAP weights {weights} do not match {folder / CONFIG_FILE}"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ClapLoadError(f"{mismatch}: {str(exc).splitlines()[1:3]}") from exc
    missing = [k for k in missing if not any(part in k for part in _FRONT_END)]
    if missing or unexpected:
        raise ClapLoadError(f"{mismatch}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model_id = f"clap-compact:{file_digest(weights)[:12]}"
    clap = ClapModel.from_module(model.to(torch.device(device)), config, model_id, device=device,
                                 batch_size=batch_size)  # fmt: skip
    clap.expansion = QueryExpansion.load(folder, model_id)
    return clap


def load_clap(
    checkpoint: Path,
    *,
    amodel: str = "HTSAT-tiny",
    tmodel: str = "roberta",
    enable_fusion: bool = False,
    device: str = "cpu",
    batch_size: int = 16,
) -> ClapModel:
    """Load a CLAP checkpoint: a compact folder, or an official LAION `.pt`/`.ckpt` file.

    `amodel`, `tmodel` and `enable_fusion` describe an official file (e.g. `630k-audioset-best.pt`
    is HTSAT-tiny + roberta without fusion) and are ignored for a compact folder, whose
    `config.json` says everything. An official file needs RoBERTa's tokenizer and model files
    (`roberta-base`: config.json, vocab.json, merges.txt and model.safetensors or
    pytorch_model.bin) already in the local Hugging Face cache, since Foley runs with
    HF_HUB_OFFLINE=1; a ClapLoadError names the files that are missing. Official files are
    pickles: load only ones you trust. Raises ClapLoadError for a missing or corrupt checkpoint.
    """
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return _load_compact(path, device, batch_size)
    if path.suffix in (".pt", ".ckpt", ".pth"):
        return load_official(
            path,
            amodel=amodel,
            tmodel=tmodel,
            enable_fusion=enable_fusion,
            device=device,
            batch_size=batch_size,
        )
    if not path.exists():
        raise ClapLoadError(f"CLAP checkpoint {path} does not exist")
    raise ClapLoadError(
        f"CLAP checkpoint {path} is neither a compact checkpoint folder ({CONFIG_FILE} + "
        f"{WEIGHTS_FILE}) nor an official LAION .pt/.ckpt file"
    )
