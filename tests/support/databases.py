"""A migrated database for tests that run on SQLite and, where a server is at hand, on
PostgreSQL. A test module uses it with
``from tests.support.databases import engine_fixture  # noqa: F401`` beside the
``postgres_url`` fixture of tests.test_postgres."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digestd.db import make_engine, migrate


@pytest.fixture(
    name="engine", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def engine_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'd.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()
