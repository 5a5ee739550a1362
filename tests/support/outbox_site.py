"""What the outbox tests share: a fault SMTP server (tests.support.smtp_faults) and settings
that send to it over a migrated database holding the sample. A test module uses the fixtures with
``from tests.support.outbox_site import ready_fixture, server_fixture  # noqa: F401``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digestd import jobs
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate
from tests.support.smtp_faults import FaultServer, fault_server

QUERY = "oracle OR sql OR model OR learning OR language"
# The moment the tests' send runs take as now: a minute ahead, so rows the fixtures write
# "now" are in the past for them.
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)


@pytest.fixture(name="server")
def server_fixture() -> Iterator[FaultServer]:
    """A fault SMTP server on a free loopback port."""
    with fault_server() as running:
        yield running


def smtp_settings(config_file: Path, server: FaultServer) -> Settings:
    """The settings of ``config_file`` sending over SMTP to ``server``."""
    base = load_settings(config_file, environ={})
    return dataclasses.replace(
        base,
        smtp=dataclasses.replace(base.smtp, host=server.host, port=server.port, timeout=5.0),
        delivery=dataclasses.replace(base.delivery, backend="smtp"),
    )


@pytest.fixture(name="ready")
def ready_fixture(
    config_file: Path, server: FaultServer, sample_path: Path
) -> tuple[Settings, Engine]:
    """Settings sending to the fault server, a migrated database with the sample ingested."""
    settings = smtp_settings(config_file, server)
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    jobs.run_ingest(settings, engine, [sample_path])
    return settings, engine
