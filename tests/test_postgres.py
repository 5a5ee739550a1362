"""The same code on PostgreSQL: migrations, ingest, dedup, send-once and removal on a real server.

The server is the one at $POSTGRES_TEST_URL (default: postgres on 127.0.0.1:5432 with trust
auth, which scripts/check starts in CI); each test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from digestd.db import make_engine, migrate, read_scope, session_scope
from digestd.ingest import DumpFile, ParsedDump, ParsedPaper
from digestd.models import Paper
from digestd.store import papers as papers_module
from digestd.store import store_dump
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


@pytest.mark.slow
def test_two_ingests_at_once_give_every_paper_an_instant_of_its_own(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL nothing queues two ingests: both read the newest instant before either
    # commits. The database's unique index makes the later one look again.
    engine = make_engine(postgres_url)
    migrate(engine)
    both_started = threading.Barrier(2)
    insert = papers_module._insert_papers

    def together(session: Session, fresh: list[Any], **options: Any) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_started.wait(timeout=5)  # the retry goes alone
        insert(session, fresh, **options)

    monkeypatch.setattr(papers_module, "_insert_papers", together)
    now = datetime(2026, 3, 14, 7, tzinfo=UTC)

    def ingest(number: int) -> tuple[int, int]:
        papers = tuple(ParsedPaper(f"Paper {number}-{n}", "Text.") for n in range(20))
        dump = DumpFile(
            Path(f"{number}.txt"), f"{number:064d}", ParsedDump(date(2026, 3, 14), papers)
        )
        with session_scope(engine) as session:
            return store_dump(session, dump, now=now)[:2]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(ingest, (1, 2)))
    assert results == [(20, 0), (20, 0)]
    with read_scope(engine) as session:
        stamps = session.exec(select(Paper.updated_at)).all()
    assert len(stamps) == 40 and len(set(stamps)) == 40
    engine.dispose()
