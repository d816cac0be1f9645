"""A Foley with the test library indexed and synced (with a reranker or without), and an API
client over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.config import Settings, get_settings
from index_builder.runner import index_library
from search.api.main import create_app
from search.service import Foley


def open_indexed(settings: Settings, clap, library: Path) -> Foley:  # noqa: ANN001
    opened = Foley.open(settings, clap=clap)
    index_library(opened.catalog, clap, library, opened.limits)
    opened.sync()
    return opened


def save_tiny_diffatr(out: Path, clap, alpha: float = 0.5) -> Path:  # noqa: ANN001
    from generative.diffatr.model import DiffATRConfig, build_denoiser, save_diffatr

    config = DiffATRConfig(
        feature_dim=clap.dim, width=8, heads=2, train_timesteps=20, sample_steps=2,
        alpha=alpha, top_n=64, clap_model_id=clap.model_id,
    )  # fmt: skip
    return save_diffatr(build_denoiser(config, seed=0), config, out)


def settings_with(monkeypatch: pytest.MonkeyPatch, checkpoint: Path) -> Settings:
    monkeypatch.setenv("FOLEY_DIFFATR_CHECKPOINT", str(checkpoint))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def foley_with_reranker(
    settings: Settings,
    library: Path,
    tiny_clap,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Foley]:
    """The test library indexed, with a tiny random DiffATR fitted to the tiny CLAP."""
    checkpoint = save_tiny_diffatr(tmp_path / "diffatr", tiny_clap)
    opened = open_indexed(settings_with(monkeypatch, checkpoint), tiny_clap, library)
    yield opened
    opened.close()


@pytest.fixture
def client(foley: Foley) -> Iterator[TestClient]:
    with TestClient(create_app(foley=foley)) as test_client:
        yield test_client


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    """Keep each phase's report on the test, so a fixture can see that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
