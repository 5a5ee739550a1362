"""Engine creation (SQLite pragmas: WAL, foreign keys, busy timeout), migrations, sessions, and
what a database error means for the operator (``database_error``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd.errors import BusyError, DigestError, StorageError
from digestd.storage import free_bytes

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_SECONDS = 10


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take the write lock at BEGIN so two processes queue on busy_timeout instead of failing.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A reader (see read_scope) starts a plain transaction: under WAL it never waits for a
    # writer, and never makes one wait.
    read_only = conn.get_execution_options().get("digestd_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def sqlite_file(url: str | sa.URL) -> Path | None:
    """The file of a SQLite database URL; None for a server or an in-memory database."""
    url = sa.engine.make_url(url)
    path = url.database if url.get_backend_name() == "sqlite" else None
    return Path(path) if path and path != ":memory:" else None


def describe_database(url: str | sa.URL) -> str:
    """How the operator knows the database at ``url``: a SQLite file's path, else the URL
    without its password."""
    path = sqlite_file(url)
    if path:
        return str(path)
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, *, create: bool = False) -> Engine:
    """An engine for ``url`` with SQLite's pragmas set; ``create`` makes a SQLite file's folder
    (a command that only reads never leaves an empty database behind)."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path and create:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the folder of database {path}: {exc.strerror}",
                    hint="check [database] url or [paths] data_dir in the config file",
                ) from None
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def _revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's schema revision, the code's newest), read without a write lock."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    try:
        with engine.execution_options(digestd_read_only=True).connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(exc, url=engine.url) from None
    return current, head


def migrate(engine: Engine) -> None:
    """Bring the database schema up to the newest migration; when it is current already, only
    read (no write lock: the daemon starts while another process writes). A database already
    past this code's newest migration (a newer digestd migrated it) is refused."""
    current, head = _revisions(engine)
    if current == head:
        return
    _refuse_newer(engine, current, head)
    try:
        command.upgrade(_alembic_config(engine), "head")
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(exc, url=engine.url) from None


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database that was never initialised or is behind the code. Only
    reads: a command that reads never waits behind a writer."""
    path = sqlite_file(engine.url)
    if path and not path.exists():
        raise DigestError(f"database {path} does not exist", hint="run digestd init")
    current, head = _revisions(engine)
    shown = describe_database(engine.url)
    if current is None:
        raise DigestError(f"database {shown} is not initialised", hint="run digestd init")
    _refuse_newer(engine, current, head)
    if current != head:
        raise DigestError(
            f"database {shown} is at schema {current}, the code needs {head}",
            hint="run digestd init to migrate",
        )


def _refuse_newer(engine: Engine, current: str | None, head: str | None) -> None:
    """Refuse a database whose schema a newer digestd made: this code does not know it."""
    from alembic.script import ScriptDirectory

    if current is None:
        return
    scripts = ScriptDirectory.from_config(_alembic_config(engine))
    if current not in {script.revision for script in scripts.walk_revisions()}:
        raise DigestError(
            f"database {describe_database(engine.url)} is at schema {current}, newer than this "
            f"digestd knows (its newest is {head})",
            hint="run the newer digestd on this node too; an older one must not touch it",
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


# -- what a database error means -------------------------------------------------------------

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_FULL = {sqlite3.SQLITE_FULL}
_SQLITE_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_SQLITE_READ_ONLY = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM}
_SQLITE_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# PostgreSQL's SQLSTATEs (psycopg's ``sqlstate``).
_PG_FULL = {"53100"}  # disk_full
_PG_BUSY = {"55P03"}  # lock_not_available (lock_timeout)
_PG_READ_ONLY = {"25006"}  # read_only_sql_transaction (a standby, or default_transaction_read_only)
_PG_UNREACHABLE_CLASSES = ("08", "57P", "28")  # connection, shutdown, authentication


def driver_line(exc: BaseException) -> str:
    """The first line of the driver's own message: never SQLAlchemy's statement, parameters or
    "Background on this error" link."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc.args[0] if exc.args else exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(orig or exc).__name__


def database_error(exc: sa.exc.SQLAlchemyError, *, url: str | sa.URL | None) -> DigestError:
    """What ``exc`` (raised working on the database at ``url``) means, as one line with a hint:
    BusyError when another process held the write lock too long, StorageError when the database
    cannot be read or written (full, read-only, damaged, unreachable), DigestError for a change
    the database refused."""
    where = describe_database(url) if url is not None else "the database"
    database_file = sqlite_file(url) if url is not None else None
    orig = getattr(exc, "orig", None)
    line = driver_line(exc)
    code = getattr(orig, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    state = str(getattr(orig, "sqlstate", None) or "")
    disk = f"the disk that holds {database_file.parent}" if database_file else "the server's disk"
    full = StorageError(
        f"the database {where} is full: no space left on its disk",
        hint=f"free space on {disk}; nothing stored is lost",
    )
    if primary in _SQLITE_FULL or state in _PG_FULL or "No space left on device" in line:
        return full
    if primary in _SQLITE_BUSY or state in _PG_BUSY:
        waited = f"past the {BUSY_TIMEOUT_SECONDS} s wait" if primary else "past lock_timeout"
        return BusyError(
            f"another digestd process is writing the database {where}",
            hint=f"it held the lock {waited}; try again when it is done",
        )
    sqlite_problem = _sqlite_storage_error(
        primary, where=where, line=line, full=full, file=database_file
    )
    if sqlite_problem is not None:
        return sqlite_problem
    if state in _PG_READ_ONLY:
        return StorageError(
            f"cannot write the database {where}: it is read-only ({line})",
            hint="the server takes only reads (a standby?): point [database] url at the primary",
        )
    statement = getattr(exc, "statement", "")
    if state.startswith(_PG_UNREACHABLE_CLASSES) or (statement is None and not database_file):
        return StorageError(
            f"cannot reach the database {where}: {line}",
            hint="check [database] url and that the server is running",
        )
    if isinstance(exc, sa.exc.IntegrityError):
        return DigestError(
            f"the database refused a change: {line}",
            hint="another process may have made the same change just now; try again",
        )
    return StorageError(f"the database {where} failed: {line}", hint="run with --debug for details")


def _sqlite_storage_error(
    primary: int | None, *, where: str, line: str, full: StorageError, file: Path | None
) -> StorageError | None:
    """The StorageError an SQLite primary result code means, if it means one."""
    if primary in _SQLITE_READ_ONLY:
        return StorageError(
            f"cannot write the database {where}: it is read-only ({line})",
            hint="let this user write the file and its folder, or mount the disk read-write",
        )
    if primary == sqlite3.SQLITE_IOERR:
        free = free_bytes(file) if file else None
        if free is not None and free < 64 * 1024:  # SQLite says I/O error where the disk is full
            return full
        return StorageError(
            f"cannot read or write the database {where}: {line}",
            hint="check the disk (the system log says more); nothing stored is lost",
        )
    if primary == sqlite3.SQLITE_CANTOPEN:
        return StorageError(
            f"cannot open the database {where}",
            hint="check [database] url, and that its folder exists and this user may write there",
        )
    if primary in _SQLITE_DAMAGED:
        return StorageError(
            f"the database {where} is damaged or not a database ({line})",
            hint="restore it from a backup, or point [database] url at the right file",
        )
    return None
