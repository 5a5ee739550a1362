"""Schema changes once, however many nodes start at the same moment, and never by an older
digestd: several `digestd init` processes on one fresh database all succeed and leave it at
the newest schema; a database a newer digestd migrated is refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from digestd.db import _alembic_config, make_engine, migrate
from tests.test_concurrent_sends import node_config
from tests.test_postgres import postgres_url  # noqa: F401  (the PostgreSQL fixture)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file nobody created yet, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("postgres_url"))


def digestd(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "digestd", "--config", str(config), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_nodes_starting_together_migrate_once(database_url: str, tmp_path: Path) -> None:
    configs = [node_config(tmp_path / f"node{n}", database_url) for n in range(3)]
    runs = [digestd(config, "init") for config in configs]
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    engine = make_engine(database_url)
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        versions = [
            row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")
        ]
    assert versions == [head]
    engine.dispose()


def test_a_database_a_newer_digestd_migrated_is_refused(database_url: str, tmp_path: Path) -> None:
    config = node_config(tmp_path / "old-node", database_url)
    engine = make_engine(database_url, create=True)
    migrate(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0999'")
    engine.dispose()
    for command in (["run"], ["stats"]):
        run = digestd(config, *command)
        _, stderr = run.communicate(timeout=60)
        assert run.returncode != 0
        lines = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, stderr
        assert "is at schema 0999, newer than this digestd knows" in lines[0]
