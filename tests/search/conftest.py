"""A Foley with the test library indexed and synced, and an API client over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from index_builder.runner import index_library
from search.api.main import create_app
from search.service import Foley


def open_indexed(settings: Settings, clap, library: Path) -> Foley:  # noqa: ANN001
    opened = Foley.open(settings, clap=clap)
    index_library(opened.catalog, clap, library, opened.limits)
    opened.sync()
    return opened


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
