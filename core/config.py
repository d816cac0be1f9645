"""Foley's settings: one object, read from `FOLEY_*` environment variables.

Every path a setting names is local; nothing here reaches the network.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Libraries Foley uses try the Hugging Face hub at import time unless told not to.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
# Celery queues: "cpu" for uploads and scans, "gpu" for model-heavy work.
QUEUES = ("cpu", "gpu")


class ConfigError(ValueError):
    """A setting has a value Foley cannot run with."""


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FOLEY_", extra="ignore")

    environment: str = Field("development", description="development or production")
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "foley-data")

    # Catalog and vector index. Unset means the embedded default in the data dir.
    database_url: str | None = None
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_collection: str = "sounds"
    # Nearest-neighbour search (both back ends; measured choice in README, "Vector index at
    # scale"). m, ef_construct and quantization shape the index when it is built: after
    # changing them, `foley reindex` (or the next optimize) rebuilds it.
    index_hnsw_m: int = 32
    index_hnsw_ef_construct: int = 200
    # Beam width of a query (raised to 4 x the number of results asked for).
    index_hnsw_ef: int = 128
    # "none", "int8" (scalar, with rescoring on the original vectors) or "binary".
    index_quantization: str = "int8"
    # With quantization: k x this many candidates are rescored on the original vectors.
    index_oversampling: float = 2.0
    # Libraries of at most this many sounds are searched exactly (embedded index only).
    index_exact_below: int = 20_000

    # CLAP: a compact checkpoint folder (config.json + model.safetensors) or an
    # official LAION .pt file with `clap_amodel` naming its audio branch.
    clap_checkpoint: Path = DEFAULT_MODELS_DIR / "clap-compact"
    clap_amodel: str = "HTSAT-tiny"
    clap_text_model: str = "roberta"
    clap_enable_fusion: bool = False
    clap_batch_size: int = 16
    # A text search answers `missing: true` when its best CLAP cosine is below this; unset:
    # the threshold calibrated for the running CLAP (`missing.json` in its checkpoint folder).
    missing_threshold: float | None = None
    # DiffATR reranker checkpoint folder; search runs without reranking when it is missing.
    diffatr_checkpoint: Path = DEFAULT_MODELS_DIR / "diffatr"
    # AutoCap captioner checkpoint folder; uploads are not captioned when it is missing.
    captioner_checkpoint: Path = DEFAULT_MODELS_DIR / "captioner"
    # Re-AudioLDM generator checkpoint folder (vae, unet and vocoder parts).
    generator_checkpoint: Path = DEFAULT_MODELS_DIR / "generator"
    device: str = "cpu"
    # Threads torch uses for one model call in a serving process (the API, a worker);
    # 0: one per CPU core this process may run on.
    torch_threads: int = 0

    # Text searches that arrive within `search_batch_wait_ms` of each other run together (at
    # most `search_batch_size` per batch): one CLAP text pass, one index call, one catalog
    # session, one DiffATR pass per list length, on `search_workers` threads that each take
    # the next batch; false: every request runs its own (the baseline `bench/load.py` measures).
    search_batching: bool = True
    search_batch_size: int = 32
    search_batch_wait_ms: float = 2.0
    search_workers: int = 2
    # Text searches in flight (running or waiting) past which the API answers 503 with
    # Retry-After instead of queueing more: a waiting search should be answered well before
    # a client gives up (64 at the slowest rate measured, 4 q/s, is 16 s of queue).
    search_queue_size: int = 64

    # Decode limits, checked from the header before any decoding.
    max_file_bytes: int = 200 * 1024 * 1024
    max_duration_s: float = 600.0
    max_sample_rate: int = 192_000
    max_channels: int = 8
    # Wall-clock seconds one file may take to decode.
    max_decode_s: float = 20.0

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_keys: str = ""
    # Folders (os.pathsep-separated, like PATH) under which the API may register and scan
    # libraries. Empty: the data dir alone. The command line may index any folder.
    library_roots: str = ""
    # Reads (search, sounds, jobs) are open unless this is set; writes always need a key
    # once FOLEY_API_KEYS is set.
    read_requires_key: bool = False
    # Origins (comma-separated, e.g. https://sounds.example.org) whose pages may call the API
    # from a browser. Empty: no CORS headers at all, so only the API's own page can.
    cors_origins: str = ""

    # Rate limits per API key (or per client address without a valid key), in the `limits`
    # notation: "300/minute", "20/second;300/minute". Empty: no limit on that budget.
    rate_limit_search: str = "300/minute"
    rate_limit_uploads: str = "60/minute"
    rate_limit_generation: str = "20/minute"
    # Where the counts live: memory:// (one API process), or redis://... (shared by every API
    # process). Unset: the broker's Redis when scaled out, else memory.
    rate_limit_storage: str | None = None

    # Jobs. Unset broker/result URLs mean the embedded default: SQLite files in the data dir.
    broker_url: str | None = None
    result_backend: str | None = None
    # Prefix for every key Foley's Celery writes to Redis, so deployments can share one.
    broker_key_prefix: str = ""
    worker_queues: str = "cpu,gpu"
    # Pool processes of a worker; 0: on the embedded queue two where the machine has two
    # cores or more, so one job's Python work (claims, decoding, catalog writes) runs beside
    # another's model pass; with a broker one (run a worker per core instead, see README).
    worker_concurrency: int = 0
    # A task is killed after this long; the broker must not hand it to another worker
    # before then, so the visibility timeout is longer.
    job_time_limit_s: int = 6 * 3600
    broker_visibility_timeout_s: int = 7 * 3600
    # A running job's worker refreshes its lease this often (x 1/4); a job whose lease is
    # older than this belongs to a dead worker and is run again.
    job_lease_s: float = 60.0
    # A queued job whose row has not changed for this long is sent to the queue again by the
    # workers' sweep: its message may have been lost (a broker restarted without it, a retry
    # that could not be sent while the broker was down). A duplicate message does nothing.
    job_resend_s: float = 600.0
    # A library scan queues caption jobs for the sounds it added (after they are searchable),
    # this many sounds per job.
    caption_on_scan: bool = True
    caption_batch_size: int = 32
    # One upload request's files are ingested by one job task this many at a time, their
    # CLAP embeddings batched (each file keeps its own job and status); 1: a task per file.
    upload_batch_size: int = 16
    # A scan with more files than this to index fans them out over the workers as batch
    # jobs of this many files each (`foley index --jobs`, `POST /api/libraries/{id}/scan`);
    # 0: one job indexes the whole library.
    scan_batch_files: int = 256

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator(
        "max_file_bytes",
        "max_sample_rate",
        "max_channels",
        "clap_batch_size",
        "caption_batch_size",
        "search_batch_size",
        "search_workers",
        "search_queue_size",
        "upload_batch_size",
        "job_time_limit_s",
        "index_hnsw_m",
        "index_hnsw_ef_construct",
        "index_hnsw_ef",
    )
    @classmethod
    def _positive_int(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be a positive number")
        return value

    @field_validator("torch_threads", "search_batch_wait_ms")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("scan_batch_files", "worker_concurrency")
    @classmethod
    def _not_negative_int(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 (off) or a positive number")
        return value

    @field_validator("max_duration_s", "job_lease_s", "job_resend_s", "max_decode_s")
    @classmethod
    def _positive_float(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be a positive number of seconds")
        return value

    @field_validator("index_quantization")
    @classmethod
    def _quantization(cls, value: str) -> str:
        if value not in ("none", "int8", "binary"):
            raise ValueError("must be none, int8 or binary")
        return value

    @field_validator("index_oversampling")
    @classmethod
    def _oversampling(cls, value: float) -> float:
        if value < 1.0:
            raise ValueError("must be at least 1")
        return value

    @field_validator("index_exact_below")
    @classmethod
    def _non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be zero or more")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "sqla+sqlite:///")):
            raise ValueError("must be a redis:// URL (or sqla+sqlite:/// for the embedded queue)")
        return value

    @field_validator("rate_limit_search", "rate_limit_uploads", "rate_limit_generation")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    f"must be limits like 300/minute or 10/second;300/minute, not {value!r}"
                ) from None
        return value.strip()

    @field_validator("rate_limit_storage")
    @classmethod
    def _rate_limit_storage(cls, value: str | None) -> str | None:
        if value and not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be memory:// or a redis:// URL")
        return value

    @field_validator("worker_queues")
    @classmethod
    def _known_queues(cls, value: str) -> str:
        names = [q.strip() for q in value.split(",") if q.strip()]
        unknown = sorted(set(names) - set(QUEUES))
        if not names or unknown:
            raise ValueError(f"must name queues among {', '.join(QUEUES)}; got {value!r}")
        return ",".join(names)

    @field_validator("api_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError("must be a TCP port between 1 and 65535")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _visibility_outlasts_tasks(self) -> Settings:
        if self.broker_visibility_timeout_s <= self.job_time_limit_s:
            raise ValueError(
                "FOLEY_BROKER_VISIBILITY_TIMEOUT_S must be longer than FOLEY_JOB_TIME_LIMIT_S, "
                "or the broker hands a running task to a second worker"
            )
        return self

    @model_validator(mode="after")
    def _production_is_explicit(self) -> Settings:
        if self.environment == "production":
            if not self.data_dir.is_absolute():
                raise ValueError("FOLEY_DATA_DIR must be an absolute path in production")
            if not self.api_keys or "changethis" in self.api_keys:
                raise ValueError("FOLEY_API_KEYS must be set to real keys in production")
            if any(
                not Path(p).expanduser().is_absolute()
                for p in self.library_roots.split(os.pathsep)
                if p.strip()
            ):
                raise ValueError("FOLEY_LIBRARY_ROOTS must be absolute paths in production")
            if "*" in self.cors_origin_list:
                raise ValueError("FOLEY_CORS_ORIGINS must name origins in production, not *")
        return self

    @property
    def catalog_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'catalog.sqlite3'}"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store"

    @property
    def broker_is_embedded(self) -> bool:
        return self.broker_url is None or self.broker_url.startswith("sqla+")

    @property
    def celery_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{self.data_dir.resolve() / 'queue.sqlite3'}"

    @property
    def celery_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if not self.broker_is_embedded:
            return self.celery_broker_url
        return f"db+sqlite:///{self.data_dir.resolve() / 'results.sqlite3'}"

    @property
    def worker_queue_list(self) -> list[str]:
        return self.worker_queues.split(",")

    @property
    def worker_processes(self) -> int:
        """A worker's pool processes: `worker_concurrency`, or with 0 on the embedded queue
        two where this process may run on two cores or more (one on a single core), and one
        with a broker: with two pool processes a worker consuming Redis was seen to stop for
        good when the broker restarted (Celery's "Unrecoverable error" on reconnecting)."""
        if self.worker_concurrency:
            return self.worker_concurrency
        return min(2, usable_cores()) if self.broker_is_embedded else 1

    @property
    def library_root_list(self) -> list[Path]:
        named = [p.strip() for p in self.library_roots.split(os.pathsep) if p.strip()]
        return [Path(p).expanduser().resolve() for p in named] or [self.data_dir.resolve()]

    @property
    def rate_limit_storage_url(self) -> str:
        if self.rate_limit_storage:
            return self.rate_limit_storage
        if not self.broker_is_embedded and self.broker_url:
            return self.broker_url
        return "memory://"

    def rate_limit_for(self, budget: str) -> str:
        return str(getattr(self, f"rate_limit_{budget}"))

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.store_path):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, validated once; raises ConfigError with every problem."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"FOLEY_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
