"""Catalog engine, sessions and migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while an indexing run writes; foreign keys make cascades real.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


SQLITE_BUSY_TIMEOUT_S = 30.0
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")  # where sqlite3 begins a transaction


class SQLiteWriterLock:
    """One writing transaction at a time within this process, handed over by a lock.

    SQLite lets one connection write at a time; the others wait in its busy handler, which
    sleeps in growing steps (1, 2, 5 ... 100 ms) however soon the lock frees. With many
    threads writing small transactions (a batch of upload jobs claiming, reporting progress
    and writing their sounds) those sleeps were most of each write's time: in a batch of 16
    uploads a progress report took 41 ms on average, 1.3 ms of it writing. A connection
    takes this lock before its first write statement (where sqlite3 begins the transaction)
    and gives it back when the transaction ends. Other processes still meet SQLite's busy
    handler; a lock not had within the busy timeout is not waited for further (SQLite then
    decides, as without it), and a thread that already writes on another connection does
    not wait for itself.
    """

    def __init__(self, timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._owner: int | None = None

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before_execute)
        for name in ("commit", "rollback"):
            event.listen(engine, name, self._transaction_ended)
        for name in ("checkin", "close", "invalidate"):  # a connection dropped mid-transaction
            event.listen(engine, name, self._connection_ended)

    @property
    def held(self) -> bool:
        return self._lock.locked()

    def _before_execute(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if conn.info.get(self) or not statement.lstrip().upper().startswith(_WRITES):
            return
        if self._owner == threading.get_ident():
            return
        if self._lock.acquire(timeout=self.timeout_s):
            self._owner = threading.get_ident()
            conn.info[self] = True

    def _release(self, info: dict[Any, Any]) -> None:
        if info.pop(self, False):
            self._owner = None
            self._lock.release()

    def _transaction_ended(self, conn: Any) -> None:
        self._release(conn.info)

    def _connection_ended(self, _dbapi_connection: Any, record: Any, *_: Any) -> None:
        if record is not None:
            self._release(record.info)


# Catalog connections kept open for a process that serves many requests at once (the API:
# AnyIO runs its request threads 40 at a time, each holding a session while it searches), and
# how many more it may open under a burst. SQLAlchemy's default pool keeps 5 and opens up to
# 10 more that it closes again when they come back: at 32 concurrent searches most of them
# opened a fresh connection (SQLite: connect plus pragmas) or waited for one.
SERVING_POOL_SQLITE = {"pool_size": 40, "max_overflow": 24}
# A PostgreSQL connection is a server process: fewer kept, so API processes and workers
# together stay inside the server's max_connections (default 100).
SERVING_POOL_POSTGRES = {"pool_size": 20, "max_overflow": 20}


def make_engine(url: str, serving: bool = False) -> Engine:
    """The catalog's engine; `serving` sizes its connection pool for many concurrent requests."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        pool = SERVING_POOL_SQLITE if serving and path != ":memory:" else {}
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            **pool,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        SQLiteWriterLock().attach(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    pool = SERVING_POOL_POSTGRES if serving else {}
    return create_engine(url, pool_pre_ping=True, **pool)


def migrate(engine: Engine) -> None:
    """Bring the catalog schema to the newest migration (`alembic upgrade head`)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def is_migrated(engine: Engine) -> bool:
    return inspect(engine).has_table("alembic_version")


class Catalog:
    """The catalog's engine and session factory, created once per process."""

    def __init__(self, url: str, *, run_migrations: bool = True, serving: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, serving=serving)
        if run_migrations:
            migrate(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
