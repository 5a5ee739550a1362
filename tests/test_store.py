"""Store: migrations from an empty database match the models; the SQLite file gets its pragmas."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import digestd.models  # noqa: F401
from digestd.db import check_schema, make_engine, migrate
from digestd.errors import DigestError


def test_migrations_from_empty_database_match_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with pytest.raises(DigestError, match="does not exist"):
        check_schema(engine)
    migrate(engine)
    migrate(engine)  # a second run is a no-op
    check_schema(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'd.db'}", create=True)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000


def test_unreachable_database_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(DigestError, match="cannot create the folder of database") as info:
        make_engine(f"sqlite:///{tmp_path / 'file.txt' / 'd.db'}", create=True)
    assert "\n" not in str(info.value)
