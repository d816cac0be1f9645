"""Queue tests run against a real deployment (tests/workers/deployment.py), parametrised
over the embedded queue (SQLite catalog, SQLite broker) and scale-out (Redis broker from
FOLEY_TEST_REDIS_URL, PostgreSQL catalog from FOLEY_TEST_POSTGRES_URL), each started once per
test module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from core.db import Catalog
from search.api.main import create_app
from search.service import Foley
from tests.workers.deployment import API_KEY, LEASE_S, Deployment, backends


@pytest.fixture(scope="module", params=["embedded", "scale-out"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_clap_dir: Path,
    tiny_clap: Any,
) -> Iterator[Deployment]:
    """A worker process and the API, sharing one data dir, catalog and queue."""
    for backend in backends(request.param):
        root = tmp_path_factory.mktemp(f"deploy-{request.param}")
        values = {
            "FOLEY_DATA_DIR": str(root / "data"),
            "FOLEY_CLAP_CHECKPOINT": str(tiny_clap_dir),
            "FOLEY_CAPTIONER_CHECKPOINT": str(tiny_captioner_dir(root, tiny_clap)),
            "FOLEY_API_KEYS": API_KEY,
            "FOLEY_JOB_LEASE_S": str(LEASE_S),
            # Tests make their libraries in their own temporary folders.
            "FOLEY_LIBRARY_ROOTS": str(tmp_path_factory.getbasetemp()),
            **backend,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOLEY_")}
        env.update(values, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        settings = Settings(
            data_dir=Path(values["FOLEY_DATA_DIR"]),
            clap_checkpoint=tiny_clap_dir,
            captioner_checkpoint=Path(values["FOLEY_CAPTIONER_CHECKPOINT"]),
            api_keys=API_KEY,
            job_lease_s=LEASE_S,
            library_roots=values["FOLEY_LIBRARY_ROOTS"],
            database_url=backend.get("FOLEY_DATABASE_URL"),
            broker_url=backend.get("FOLEY_BROKER_URL"),
            broker_key_prefix=backend.get("FOLEY_BROKER_KEY_PREFIX", ""),
            qdrant_url=None,
        )
        settings.ensure_dirs()
        Catalog(settings.catalog_url).dispose()  # migrated before the worker starts
        foley = Foley.open(settings, clap=tiny_clap)
        foley.start_background_sync(0.2)
        with TestClient(create_app(foley=foley)) as client:
            dep = Deployment(
                name=request.param,
                settings=settings,
                env=env,
                log_path=root / "worker.log",
                foley=foley,
                client=client,
                queue=client.app.state.queue,  # type: ignore[attr-defined]
            )
            dep.start_worker()
            try:
                dep.wait(dep.submit("ping"), until=("succeeded",), timeout=600)
                yield dep
            finally:
                dep.stop_worker()
        foley.close()


def tiny_captioner_dir(root: Path, clap: Any) -> Path:
    """A tiny random captioner checkpoint over the tiny CLAP when this build has the captioner
    model; otherwise an empty path, and caption jobs fail saying there is no captioner."""
    folder = root / "captioner"
    try:
        from generative.captioner.pipeline import (  # type: ignore
            build_random_captioner,
            save_captioner,
        )
    except ImportError:
        return folder
    save_captioner(build_random_captioner(clap, seed=0), folder)
    return folder
