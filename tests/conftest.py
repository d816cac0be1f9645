"""Shared fixtures: settings in a temporary data dir, catalogs on SQLite and PostgreSQL,
a tiny random CLAP checkpoint, and a folder of generated sound files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.services import fresh_postgres_database  # noqa: E402
from core.config import Settings, get_settings  # noqa: E402
from core.db import Catalog  # noqa: E402
from tests.sounds import write_library  # noqa: E402


def postgres_url() -> str | None:
    return os.environ.get("FOLEY_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compact checkpoint folder holding a tiny random CLAP (fixed seed)."""
    from generative.clap.config import tiny_clap_config
    from generative.clap.model import build_random_clap, save_compact

    config = tiny_clap_config()
    out = tmp_path_factory.mktemp("tiny-clap")
    save_compact(build_random_clap(config, seed=0), config, out)
    return out


@pytest.fixture(scope="session")
def tiny_clap(tiny_clap_dir: Path):  # noqa: ANN201 - ClapModel imports torch
    from generative.clap.load import load_clap

    return load_clap(tiny_clap_dir)


@pytest.fixture
def settings(tmp_path: Path, tiny_clap_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FOLEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FOLEY_CLAP_CHECKPOINT", str(tiny_clap_dir))
    # The committed generator is trained on another CLAP: tests that generate bring their own.
    monkeypatch.setenv("FOLEY_GENERATOR_CHECKPOINT", str(tmp_path / "no-generator"))
    for name in ("FOLEY_DATABASE_URL", "FOLEY_QDRANT_URL", "FOLEY_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty catalog database on each back end."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
        return
    base = postgres_url()
    if not base:
        pytest.skip("FOLEY_TEST_POSTGRES_URL is not set: PostgreSQL catalog tests skipped")
    with fresh_postgres_database(base) as url:
        yield url


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    cat = Catalog(catalog_url)
    yield cat
    cat.dispose()


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    write_library(root)
    return root
