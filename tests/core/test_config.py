"""Settings: defaults, environment overrides, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, Settings, get_settings


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FOLEY_DATABASE_URL", "FOLEY_QDRANT_URL", "FOLEY_API_KEYS", "FOLEY_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


def test_embedded_defaults_live_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLEY_DATA_DIR", str(tmp_path))
    settings = get_settings()
    assert settings.catalog_url == f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    assert settings.qdrant_url is None and settings.index_path == tmp_path / "index"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)


def test_bad_values_are_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLEY_API_PORT", "70000")
    monkeypatch.setenv("FOLEY_MAX_DURATION_S", "-1")
    with pytest.raises(ConfigError) as err:
        get_settings()
    assert "FOLEY_API_PORT" in str(err.value) and "FOLEY_MAX_DURATION_S" in str(err.value)


def test_database_url_scheme_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOLEY_DATABASE_URL", "mysql://db/foley")
    with pytest.raises(ConfigError, match="FOLEY_DATABASE_URL"):
        get_settings()


def test_production_needs_real_keys_and_absolute_data_dir() -> None:
    with pytest.raises(ValueError, match="FOLEY_API_KEYS"):
        Settings(environment="production", data_dir=Path("/srv/foley"), api_keys="changethis")
    with pytest.raises(ValueError, match="absolute"):
        Settings(environment="production", data_dir=Path("rel"), api_keys="k1")
    ok = Settings(environment="production", data_dir=Path("/srv/foley"), api_keys="k1, k2")
    assert ok.api_key_set == {"k1", "k2"}


def test_worker_pool_processes_follow_the_cores_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for cores, processes in ((1, 1), (2, 2), (16, 2)):
        monkeypatch.setattr("core.config.usable_cores", lambda n=cores: n)
        assert Settings().worker_processes == processes  # the embedded queue
        assert Settings(broker_url="redis://127.0.0.1:6379/0").worker_processes == 1
    monkeypatch.setenv("FOLEY_WORKER_CONCURRENCY", "3")
    assert get_settings().worker_processes == 3
    get_settings.cache_clear()
    monkeypatch.setenv("FOLEY_WORKER_CONCURRENCY", "-1")
    with pytest.raises(ConfigError, match="FOLEY_WORKER_CONCURRENCY"):
        get_settings()
