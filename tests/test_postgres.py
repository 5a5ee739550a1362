"""The same code on PostgreSQL: migrations, ingest, dedup, send-once and removal on a real server.

The server is the one at $POSTGRES_TEST_URL (default: postgres on 127.0.0.1:5432 with trust
auth, which scripts/check starts in CI); each test gets a database of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from digestd.db import make_engine, migrate
from tests.conftest import CliResult

SERVER = os.environ.get("POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = f"digestd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_match_the_models_on_postgres(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    engine.dispose()


def test_pipeline_on_postgres(
    cli: Callable[..., CliResult],
    config_file: Path,
    postgres_url: str,
    sample_path: Path,
    tmp_path: Path,
) -> None:
    config_file.write_text(
        config_file.read_text(encoding="utf-8") + f'\n[database]\nurl = "{postgres_url}"\n',
        encoding="utf-8",
    )
    assert cli("init").code == 0
    assert "87 new, 0 already known" in cli("ingest", str(sample_path)).out
    assert "0 new, 87 already known" in cli("ingest", str(sample_path)).out
    assert cli("topic", "add", "sql", "--query", '"text-to-sql"').code == 0
    assert (
        cli("subscriber", "add", "a@example.org", "--query", "oracle", "--topic", "sql").code == 0
    )
    assert "1 sent" in cli("send", "--now").out
    assert "0 sent" in cli("send", "--now").out
    assert len(list((tmp_path / "data" / "outbox").glob("*.eml"))) == 1
    assert cli("feeds").code == 0
    assert (tmp_path / "data" / "feeds" / "sql.atom").exists()
    assert cli("topic", "remove", "sql").code == 0
    assert cli("subscriber", "remove", "a@example.org").code == 0
    assert "[]" in cli("subscriber", "list", "--json").out
