"""Scheduled sends through the job itself: once per local day, an empty day is still a day."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope


@pytest.fixture
def ready(config_file: Path) -> tuple[Settings, Engine]:
    """Settings from the test config and a migrated database."""
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    return settings, engine


def test_daily_digest_once_per_day_and_nothing_new_is_not_retried(
    ready: tuple[Settings, Engine], sample_path: Path
) -> None:
    settings, engine = ready
    jobs.run_ingest(settings, engine, [sample_path])
    with session_scope(engine) as session:
        store.add_subscriber(
            session,
            "a@example.org",
            queries=["oracle"],
            send_hour=7,
            timezone="Asia/Tokyo",
            now=datetime.now(UTC) - timedelta(days=1),
        )
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    # 07:30 in Tokyo is 22:30 UTC the day before
    first = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 22, 30, tzinfo=UTC) - timedelta(1)
    early = first - timedelta(hours=1)

    def send(at: datetime) -> jobs.SendReport:
        return asyncio.run(jobs.run_send(settings, engine, now=at))

    assert send(early).due == 0  # 06:30 local
    report = send(first)
    assert (report.due, report.count("sent")) == (1, 1)
    assert send(first + timedelta(hours=2)).due == 0  # already had today's digest
    next_day = send(first + timedelta(days=1))
    assert (next_day.due, next_day.nothing_new, next_day.outcomes) == (1, 1, [])
    assert send(first + timedelta(days=1, hours=1)).due == 0  # the empty day is recorded
    outbox = list(settings.folder("outbox").glob("*.eml"))
    assert len(outbox) == 1


def test_inbox_files_still_changing_wait_for_a_later_run(
    ready: tuple[Settings, Engine], sample_path: Path
) -> None:
    settings, engine = ready
    inbox = settings.folder("inbox")
    inbox.mkdir(parents=True)
    dump = inbox / "today.txt"
    dump.write_bytes(sample_path.read_bytes()[:60_000])  # a copy in progress
    report = jobs.run_ingest(settings, engine, settle_seconds=30)
    assert report.files == [] and dump.exists()
    dump.write_bytes(sample_path.read_bytes())
    old = time.time() - 60
    os.utime(dump, (old, old))
    report = jobs.run_ingest(settings, engine, settle_seconds=30)
    assert report.new == 87
    assert not dump.exists()
