"""Every database error digestd can meet becomes one line with a hint and the right kind
(StorageError: exit 4, BusyError: exit 5): real errors from SQLite and PostgreSQL, never
SQLAlchemy's statement, parameters or "Background on this error" link."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from digestd.db import database_error, make_engine, migrate
from digestd.errors import BusyError, DigestError, StorageError
from tests.test_postgres import postgres_url  # noqa: F401  (the fixture)

SECRET = "s3cret-value"  # a parameter that must never reach the message


def error_of(action: Callable[[], object]) -> sa.exc.SQLAlchemyError:
    with pytest.raises(sa.exc.SQLAlchemyError) as info:
        action()
    return info.value


def assert_one_clean_line(error: DigestError, *, where: str) -> str:
    text = str(error)
    assert "\n" not in text and where in text, text
    for leak in ("Background on this error", "sqlalche.me", "[SQL", "INSERT INTO", SECRET):
        assert leak not in text, text
    assert error.hint, text
    return text


@pytest.fixture
def database(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "d.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return f"sqlite:///{path}", path


def insert(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO topic (slug, title, query, description, created_at) "
                "VALUES (:secret, :secret, :secret, '', :at)"
            ),
            {"secret": SECRET, "at": datetime(2026, 1, 1, tzinfo=UTC)},
        )


def test_a_full_sqlite_database(database: tuple[str, Path]) -> None:
    url, path = database
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def no_room_to_grow(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # SQLite's own "database or disk is full", as on a full disk (no root needed).
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    def fill() -> None:
        with engine.begin() as conn:
            for n in range(2000):
                conn.exec_driver_sql(
                    "INSERT INTO topic (slug, title, query, description, created_at) "
                    "VALUES (?, ?, ?, '', '2026-01-01')",
                    (f"{SECRET}{n}", "x" * 500, "x"),
                )

    error = database_error(error_of(fill), url=url)
    assert isinstance(error, StorageError)
    text = assert_one_clean_line(error, where=str(path))
    assert text == (
        f"the database {path} is full: no space left on its disk "
        f"(free space on the disk that holds {path.parent}; nothing stored is lost)"
    )


def test_a_locked_sqlite_database_is_busy(database: tuple[str, Path]) -> None:
    url, path = database
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        impatient = sa.create_engine(url, connect_args={"timeout": 0.1})
        error = database_error(error_of(lambda: insert(impatient)), url=url)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(error, BusyError)
    text = assert_one_clean_line(error, where=str(path))
    assert text.startswith(f"another digestd process is writing the database {path} (")
    assert "[database] url" not in text


def test_a_read_only_sqlite_database(database: tuple[str, Path]) -> None:
    url, path = database
    read_only = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    error = database_error(error_of(lambda: insert(read_only)), url=url)
    assert isinstance(error, StorageError)
    assert "is read-only" in assert_one_clean_line(error, where=str(path))


def test_a_sqlite_database_that_cannot_be_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'd.db'}"
    error = database_error(error_of(lambda: sa.create_engine(url).connect()), url=url)
    assert isinstance(error, StorageError)
    text = assert_one_clean_line(error, where=str(tmp_path / "missing" / "d.db"))
    assert text.startswith("cannot open the database")


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    path.write_bytes(b"this is not sqlite" * 100)
    url = f"sqlite:///{path}"
    error = database_error(error_of(lambda: insert(sa.create_engine(url))), url=url)
    assert isinstance(error, StorageError)
    assert "damaged or not a database" in assert_one_clean_line(error, where=str(path))


def test_a_change_the_database_refuses(database: tuple[str, Path]) -> None:
    url, _ = database
    engine = sa.create_engine(url)
    insert(engine)
    error = database_error(error_of(lambda: insert(engine)), url=url)
    assert type(error) is DigestError
    assert "refused a change: UNIQUE constraint failed" in assert_one_clean_line(error, where="")


def test_an_unreachable_postgresql_server() -> None:
    url = "postgresql+psycopg://digestd:pw@127.0.0.1:1/digestd"
    error = database_error(error_of(lambda: sa.create_engine(url).connect()), url=url)
    assert isinstance(error, StorageError)
    text = assert_one_clean_line(error, where="postgresql+psycopg://digestd:***@127.0.0.1:1/")
    assert "pw@" not in text and "Connection refused" in text


def test_a_postgresql_server_out_of_disk_space() -> None:
    # A server's full disk cannot be made here; psycopg's own error class stands for it.
    url = "postgresql+psycopg://digestd@db.example.org/digestd"
    wrapped = sa.exc.OperationalError(
        "INSERT INTO paper ...", {"title": SECRET}, psycopg.errors.DiskFull("could not extend")
    )
    error = database_error(wrapped, url=url)
    assert isinstance(error, StorageError)
    assert "free space on the server's disk" in assert_one_clean_line(error, where=url)


@pytest.mark.postgres
def test_a_postgresql_lock_held_too_long_is_busy(postgres_url: str) -> None:  # noqa: F811
    engine = make_engine(postgres_url)
    migrate(engine)
    insert(engine)
    with engine.connect() as holder:
        holder.exec_driver_sql("UPDATE topic SET title = 'held'")  # holds the row lock

        def update_impatiently() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                conn.exec_driver_sql("UPDATE topic SET title = %s", (SECRET,))

        error = database_error(error_of(update_impatiently), url=engine.url)
        holder.rollback()
    engine.dispose()
    assert isinstance(error, BusyError)
    assert_one_clean_line(error, where="postgresql")


@pytest.mark.postgres
def test_a_read_only_postgresql_server(postgres_url: str) -> None:  # noqa: F811
    engine = make_engine(postgres_url)
    migrate(engine)

    def insert_read_only() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL default_transaction_read_only = on")
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql(
                "INSERT INTO topic (slug, title, query, description, created_at) "
                "VALUES (%s, 't', 'q', '', now())",
                (SECRET,),
            )

    error = database_error(error_of(insert_read_only), url=engine.url)
    engine.dispose()
    assert isinstance(error, StorageError)
    assert "is read-only" in assert_one_clean_line(error, where="postgresql")


def test_the_daemon_logs_a_database_error_in_one_line_and_goes_on(
    config_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from digestd.config import load_settings
    from digestd.daemon import ingest_and_publish, send_due

    settings = load_settings(config_file, environ={})
    path = settings.data_dir / "digestd.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not sqlite" * 100)
    engine = make_engine(settings.database_url)
    caplog.set_level(logging.INFO, logger="digestd")
    send_due(settings, engine)
    ingest_and_publish(settings, engine)
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in said] == ["send job", "ingest job"]
    for record in said:
        assert not record.exc_info and "Background on this error" not in record.getMessage()
        assert f"the database {path} is damaged or not a database" in record.getMessage()
        assert record.getMessage().endswith("; the daemon goes on")
