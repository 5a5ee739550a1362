"""What the source tests share: a config with [fetching] and [[sources]] in a temporary
folder, its migrated SQLite database, and the loopback source server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import func, select

from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, read_scope
from digestd.models import Dump, Paper
from tests.conftest import SAMPLE
from tests.support.source_server import SourceServer

BODY = SAMPLE.read_bytes()  # a text dump of 87 papers
FAST = {
    "timeout_seconds": 1.0,
    "deadline_seconds": 5.0,
    "retries": 2,
    "retry_seconds": 0.05,
    "spacing_seconds": 0.0,
    "max_retry_after_seconds": 5.0,
}

# The server notes a request's end after its last write, which the client may have read (and
# ended its turn on) a moment before: gaps are measured with this much slack.
SLACK = 0.02


def config_text(tmp_path: Path, sources: list[dict[str, Any]], fetching: dict[str, Any]) -> str:
    lines = [
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n',
        '[smtp]\nfrom_address = "papers@digest.example.org"\n',
        "[fetching]",
        *(f"{key} = {json.dumps(value)}" for key, value in {**FAST, **fetching}.items()),
    ]
    for source in sources:
        lines.append("\n[[sources]]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in source.items())
    return "\n".join(lines) + "\n"


@dataclass
class Site:
    settings: Settings
    engine: Engine
    config: Path

    def dumps(self) -> int:
        with read_scope(self.engine) as session:
            return session.exec(select(func.count()).select_from(Dump)).one()

    def papers(self) -> int:
        with read_scope(self.engine) as session:
            return session.exec(select(func.count()).select_from(Paper)).one()


@pytest.fixture(name="server")
def server_fixture() -> Iterator[SourceServer]:
    with SourceServer().running() as running:
        yield running


SiteFor = Callable[..., Site]


@pytest.fixture(name="site_for")
def site_for_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SiteFor]:
    """``site_for(sources, **fetching)``: settings and a migrated database for them."""
    for name in list(__import__("os").environ):
        if name.startswith("DIGESTD_"):
            monkeypatch.delenv(name)
    engines: list[Engine] = []

    def make(sources: list[dict[str, Any]], **fetching: Any) -> Site:
        path = tmp_path / "config.toml"
        path.write_text(config_text(tmp_path, sources, fetching), encoding="utf-8")
        settings = load_settings(path, environ={})
        engine = make_engine(settings.database_url, create=True)
        migrate(engine)
        engines.append(engine)
        return Site(settings, engine, path)

    yield make
    for engine in engines:
        engine.dispose()
