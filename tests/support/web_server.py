"""The web application running for real: uvicorn in a thread on a free loopback port.

``running_app(settings, engine)`` is a context manager giving the base URL. The ``web_site``
fixture gives a whole site: a migrated SQLite database under tmp_path, a real SMTP server
(tests.support.smtp_faults) as the mail backend, a clock the test can move, and the app with
``[feeds] base_url`` pointing at itself, so mailed links lead back to it. A test module uses it
with ``from tests.support.web_server import web_site_fixture  # noqa: F401``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy.engine import Engine

from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate
from digestd.web import create_app
from tests.conftest import free_port
from tests.support.smtp_faults import FaultServer, fault_server


class Clock:
    """A clock a test moves by hand: starts at the real time."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@contextmanager
def running_app(
    settings: Settings,
    engine: Engine,
    *,
    clock: Callable[[], datetime] | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Serve ``create_app(settings, engine)`` on 127.0.0.1 (on ``port``, else a free one) in
    a thread until the block ends; yields the base URL."""
    port = port or free_port()
    app = create_app(settings, engine, clock=clock) if clock else create_app(settings, engine)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        # The tests set X-Forwarded-For themselves: only the app may interpret it.
        proxy_headers=False,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the web application did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class WebSite:
    """A running site and what it runs on."""

    base_url: str
    settings: Settings
    engine: Engine
    clock: Clock
    smtp: FaultServer


def site_settings(settings: Settings, *, port: int, smtp: FaultServer | None = None) -> Settings:
    """``settings`` with links built on http://127.0.0.1:<port> and, given a server, mail
    sent to it by SMTP."""
    settings = dataclasses.replace(
        settings,
        feeds=dataclasses.replace(settings.feeds, base_url=f"http://127.0.0.1:{port}"),
        web=dataclasses.replace(settings.web, port=port),
    )
    if smtp is not None:
        settings = dataclasses.replace(
            settings,
            delivery=dataclasses.replace(settings.delivery, backend="smtp"),
            smtp=dataclasses.replace(settings.smtp, host=smtp.host, port=smtp.port, timeout=5.0),
        )
    return settings


@pytest.fixture(name="web_site")
def web_site_fixture(config_file: Path) -> Iterator[WebSite]:
    """A running site on a fresh database, mailing through a real SMTP server."""
    with fault_server() as smtp:
        port = free_port()
        settings = site_settings(load_settings(config_file), port=port, smtp=smtp)
        engine = make_engine(settings.database_url, create=True)
        migrate(engine)
        clock = Clock()
        try:
            with running_app(settings, engine, clock=clock, port=port) as base_url:
                yield WebSite(base_url, settings, engine, clock, smtp)
        finally:
            engine.dispose()
