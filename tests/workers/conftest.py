"""Queue tests run against a real deployment (tests/workers/deployment.py), parametrised
over the embedded queue (SQLite catalog, SQLite broker) and scale-out (Redis broker from
FOLEY_TEST_REDIS_URL, PostgreSQL catalog from FOLEY_TEST_POSTGRES_URL), each started once per
test module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workers.deployment import Deployment, backends, open_deployment


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
        with open_deployment(
            request.param,
            root,
            backend,
            tiny_clap_dir,
            tiny_clap,
            captioner=tiny_captioner_dir(root, tiny_clap),
            extra_env={"FOLEY_GENERATOR_CHECKPOINT": str(tiny_generator_dir(root, tiny_clap))},
            # Tests make their libraries in their own temporary folders.
            library_roots=tmp_path_factory.getbasetemp(),
        ) as dep:
            yield dep


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


def tiny_generator_dir(root: Path, clap: Any) -> Path:
    """A tiny random Re-AudioLDM generator checkpoint over the tiny CLAP."""
    from generative.generator.config import tiny_config
    from generative.generator.pipeline import build_random_generator, save_generator

    generator = build_random_generator(tiny_config(clap.dim), seed=0)
    generator.config.clap_model_id = clap.model_id
    return save_generator(generator, root / "generator")
