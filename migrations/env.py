"""Alembic environment: the database URL comes from Foley's settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from core.catalog import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from core.config import get_settings
    from core.db import make_engine

    engine = make_engine(get_settings().catalog_url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


def run_migrations_offline() -> None:
    from core.config import get_settings

    context.configure(url=get_settings().catalog_url, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
