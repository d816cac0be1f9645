"""The process's models: each checkpoint loads once, on first use, never at import time.

Call `get_clap()` from a FastAPI lifespan, a Celery `worker_process_init` handler or a CLI
command; every later call with the same settings returns the same object.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Settings, get_settings, usable_cores

if TYPE_CHECKING:
    from generative.captioner.pipeline import Captioner
    from generative.clap.model import ClapModel
    from generative.diffatr.pipeline import DiffATR
    from generative.generator.pipeline import Generator

log = logging.getLogger(__name__)

_lock = threading.Lock()


def torch_threads(settings: Settings | None = None, processes: int = 1) -> int:
    """How many threads one model call may use: `FOLEY_TORCH_THREADS`, or the CPU cores this
    process may run on, shared among `processes` that run models side by side."""
    settings = settings or get_settings()
    if settings.torch_threads:
        return settings.torch_threads
    return max(1, usable_cores() // max(1, processes))


def configure_torch(settings: Settings | None = None, processes: int = 1) -> int:
    """Set torch's thread counts for a serving process, deliberately rather than by default:
    `torch_threads` for one call's kernels, one inter-op thread (calls are not split across
    threads; concurrent requests share a model call instead, see `core.batching`)."""
    import torch

    threads = torch_threads(settings, processes)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only possible before torch's first parallel work
        pass
    log.info("torch uses %d threads per model call", threads)
    return threads


_clap: dict[tuple[str, str, str, bool, str, int], ClapModel] = {}


def get_clap(settings: Settings | None = None) -> ClapModel:
    """The CLAP model the settings name (`FOLEY_CLAP_CHECKPOINT` and friends), loaded once."""
    from generative.clap.load import load_clap

    settings = settings or get_settings()
    path = settings.clap_checkpoint.expanduser().resolve()
    key = (
        str(path),
        settings.clap_amodel,
        settings.clap_text_model,
        settings.clap_enable_fusion,
        settings.device,
        settings.clap_batch_size,
    )
    with _lock:
        if key not in _clap:
            started = time.perf_counter()
            _clap[key] = load_clap(
                path,
                amodel=settings.clap_amodel,
                tmodel=settings.clap_text_model,
                enable_fusion=settings.clap_enable_fusion,
                device=settings.device,
                batch_size=settings.clap_batch_size,
            )
            log.info(
                "loaded CLAP %s from %s in %.1f s",
                _clap[key].model_id,
                path,
                time.perf_counter() - started,
            )
        return _clap[key]


def clear_models() -> None:
    """Forget every loaded model (tests; a process that switches checkpoints)."""
    with _lock:
        _clap.clear()
        _diffatr.clear()
        _captioner.clear()


# --- DiffATR reranker ---------------------------------------------------------------------

_diffatr: dict[tuple[str, str], tuple[DiffATR | None, str]] = {}


def get_diffatr(settings: Settings | None = None) -> DiffATR | None:
    """The DiffATR reranker at `FOLEY_DIFFATR_CHECKPOINT`, loaded once; None when that folder
    is missing or unreadable (search then runs without reranking; see `diffatr_status`)."""
    return _load_diffatr(settings or get_settings())[0]


def diffatr_status(settings: Settings | None = None) -> str:
    """Why the reranker is or is not available, in a few words."""
    return _load_diffatr(settings or get_settings())[1]


def _load_diffatr(settings: Settings) -> tuple[DiffATR | None, str]:
    path = settings.diffatr_checkpoint.expanduser().resolve()
    key = (str(path), settings.device)
    with _lock:
        if key not in _diffatr:
            _diffatr[key] = _open_diffatr(path, settings.device)
        return _diffatr[key]


def _open_diffatr(path: Path, device: str) -> tuple[DiffATR | None, str]:
    if not path.is_dir():
        log.warning("no DiffATR checkpoint at %s: search results are not reranked", path)
        return None, f"no checkpoint at {path}"
    from generative.diffatr.pipeline import DiffATRLoadError, load_diffatr

    started = time.perf_counter()
    try:
        reranker = load_diffatr(path, device=device)
    except DiffATRLoadError as exc:
        log.error("%s: search results are not reranked", exc)
        return None, str(exc)
    log.info("loaded DiffATR %s from %s in %.2f s", reranker.model_id, path,
             time.perf_counter() - started)  # fmt: skip
    return reranker, "loaded"


# --- AutoCap captioner --------------------------------------------------------------------

_captioner: dict[tuple[str, str, str], tuple[Captioner | None, str]] = {}


def get_captioner(settings: Settings | None = None) -> Captioner | None:
    """The captioner at `FOLEY_CAPTIONER_CHECKPOINT` over the settings' CLAP, loaded once;
    None when the folder is missing or unreadable, or was trained on another CLAP's frames
    (see `captioner_status`)."""
    return _load_captioner(settings or get_settings())[0]


def captioner_status(settings: Settings | None = None) -> str:
    """Why the captioner is or is not available, in a few words."""
    return _load_captioner(settings or get_settings())[1]


def _load_captioner(settings: Settings) -> tuple[Captioner | None, str]:
    path = settings.captioner_checkpoint.expanduser().resolve()
    clap_path = str(settings.clap_checkpoint.expanduser().resolve())
    key = (str(path), clap_path, settings.device)
    with _lock:
        loaded = key in _captioner
    if not loaded:
        # Outside the lock: get_clap takes it too.
        result = _open_captioner(path, settings)
        with _lock:
            _captioner.setdefault(key, result)
    with _lock:
        return _captioner[key]


def _open_captioner(path: Path, settings: Settings) -> tuple[Captioner | None, str]:
    if not path.is_dir():
        log.warning("no captioner checkpoint at %s: uploads are not captioned", path)
        return None, f"no checkpoint at {path}"
    from generative.captioner.pipeline import CaptionerLoadError, load_captioner

    started = time.perf_counter()
    try:
        captioner = load_captioner(path, device=settings.device, clap=get_clap(settings))
    except CaptionerLoadError as exc:
        log.error("%s: uploads are not captioned", exc)
        return None, str(exc)
    log.info("loaded captioner %s from %s in %.2f s", captioner.model_id, path,
             time.perf_counter() - started)  # fmt: skip
    return captioner, "loaded"


# --- Re-AudioLDM generator ----------------------------------------------------------------

_generator: dict[tuple[str, str, str], tuple[Generator | None, str]] = {}


def get_generator(settings: Settings | None = None) -> tuple[Generator | None, str]:
    """The generator at `FOLEY_GENERATOR_CHECKPOINT` over the settings' CLAP, loaded once, and
    "loaded"; or None and why (no checkpoint, or one that does not fit this CLAP)."""
    settings = settings or get_settings()
    path = settings.generator_checkpoint.expanduser().resolve()
    key = (str(path), str(settings.clap_checkpoint.expanduser().resolve()), settings.device)
    with _lock:
        loaded = _generator.get(key)
    if loaded is None:
        loaded = _open_generator(path, settings)  # outside the lock: get_clap takes it
        with _lock:
            loaded = _generator.setdefault(key, loaded)
    return loaded


def _open_generator(path: Path, settings: Settings) -> tuple[Generator | None, str]:
    if not path.is_dir():
        return None, f"no generator checkpoint at {path}"
    from generative.errors import ModelLoadError
    from generative.generator.pipeline import load_generator

    started = time.perf_counter()
    try:
        generator = load_generator(path, clap=get_clap(settings), device=settings.device)
    except ModelLoadError as exc:
        log.error("%s: generation is off", exc)
        return None, str(exc)
    log.info("loaded generator %s from %s in %.2f s", generator.model_id, path,
             time.perf_counter() - started)  # fmt: skip
    return generator, "loaded"
