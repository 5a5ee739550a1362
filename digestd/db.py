"""Engine creation (SQLite pragmas: WAL, foreign keys, busy timeout), migrations and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd.errors import DigestError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take the write lock at BEGIN so two processes queue on busy_timeout instead of failing.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A reader (see read_scope) starts a plain transaction: under WAL it never waits for a
    # writer, and never makes one wait.
    read_only = conn.get_execution_options().get("digestd_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _sqlite_file(url: str) -> Path | None:
    path = sa.engine.make_url(url).database if url.startswith("sqlite") else None
    return Path(path) if path and path != ":memory:" else None


def make_engine(url: str, *, create: bool = False) -> Engine:
    """An engine for ``url`` with SQLite's pragmas set; ``create`` makes a SQLite file's folder
    (a command that only reads never leaves an empty database behind)."""
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if path and create:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DigestError(
                    f"cannot create the folder of database {path}: {exc.strerror}",
                    hint="check [database] url or [paths] data_dir in the config file",
                ) from None
        engine = sa.create_engine(url, connect_args={"timeout": 10})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the database schema up to the newest migration."""
    try:
        command.upgrade(_alembic_config(engine), "head")
    except sa.exc.DBAPIError as exc:
        raise DigestError(
            f"cannot migrate database {engine.url!r}: {exc.orig}",
            hint="check [database] url in the config file",
        ) from None


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database that was never initialised or is behind the code."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    sqlite_file = _sqlite_file(str(engine.url))
    if sqlite_file and not sqlite_file.exists():
        raise DigestError(f"database {sqlite_file} does not exist", hint="run digestd init")
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except sa.exc.DBAPIError as exc:
        raise DigestError(
            f"cannot open database {engine.url!r}: {exc.orig}",
            hint="check [database] url in the config file",
        ) from None
    if current is None:
        raise DigestError(f"database {engine.url!r} is not initialised", hint="run digestd init")
    if current != head:
        raise DigestError(
            f"database {engine.url!r} is at schema {current}, the code needs {head}",
            hint="run digestd init to migrate",
        )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A session for reading only: on SQLite it takes no write lock, so a web page never waits
    behind an ingest or a send run. Closing it ends the transaction (nothing is committed);
    the objects read stay usable."""
    with Session(engine.execution_options(digestd_read_only=True)) as session:
        yield session
