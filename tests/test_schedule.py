"""Scheduled sends through the job itself: once per local day, an empty day is still a day."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.models import Delivery
from digestd.validation import WEEKDAYS
from tests.conftest import SmtpServer


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


def test_catch_up_after_long_downtime_still_delivers_the_papers(
    ready: tuple[Settings, Engine], sample_path: Path
) -> None:
    settings, engine = ready
    jobs.run_ingest(settings, engine, [sample_path])
    stored = datetime.now(UTC)
    back_online = stored + timedelta(days=9)
    weekday = WEEKDAYS[(back_online - timedelta(days=2)).weekday()]  # missed two days ago
    with session_scope(engine) as session:
        subscriber = store.add_subscriber(
            session,
            "w@example.org",
            queries=["oracle"],
            frequency="weekly",
            weekday=weekday,
            send_hour=0,
            now=stored - timedelta(days=30),
        )
        assert subscriber.id is not None
        last = stored - timedelta(days=10)
        session.add(
            Delivery(
                subscriber_id=subscriber.id,
                digest_key=last.date().isoformat(),
                status="sent",
                message_id="<old@x>",
                paper_count=0,
                reply="250",
                created_at=last,
            )
        )
    report = asyncio.run(jobs.run_send(settings, engine, now=back_online))
    assert report.count("sent") == 1
    assert report.outcomes[0].papers > 0  # papers stored 9 days ago are not lost


def test_refused_digest_is_not_retried_and_its_papers_come_in_the_next_digest(
    ready: tuple[Settings, Engine], sample_path: Path, smtp_server: SmtpServer
) -> None:
    settings, engine = ready
    settings = dataclasses.replace(
        settings,
        delivery=dataclasses.replace(settings.delivery, backend="smtp", hard_bounces=2),
        smtp=dataclasses.replace(settings.smtp, host=smtp_server.host, port=smtp_server.port),
    )
    jobs.run_ingest(settings, engine, [sample_path])
    with session_scope(engine) as session:
        store.add_subscriber(
            session,
            "r@example.org",
            queries=["oracle"],
            send_hour=0,
            now=datetime.now(UTC) - timedelta(days=1),
        )
    smtp_server.handler.refuse.add("r@example.org")
    now = datetime.now(UTC)
    first = asyncio.run(jobs.run_send(settings, engine, now=now))
    assert first.count("failed") == 1
    smtp_server.handler.refuse.clear()
    # A permanent refusal is final for that day's digest; one hard bounce of two allowed.
    assert asyncio.run(jobs.run_send(settings, engine, now=now + timedelta(hours=2))).due == 0
    later = asyncio.run(jobs.run_send(settings, engine, now=now + timedelta(days=1)))
    assert later.count("sent") == 1
    # The refused digest's papers were never marked sent: the next digest carries them.
    assert later.outcomes[0].papers == first.outcomes[0].papers
    assert [e.rcpt_tos for e in smtp_server.handler.envelopes] == [["r@example.org"]]


def test_feeds_are_built_from_the_recent_papers_only(
    ready: tuple[Settings, Engine], sample_path: Path
) -> None:
    import feedparser
    from sqlalchemy import update

    from digestd.models import Paper

    settings, engine = ready
    jobs.run_ingest(settings, engine, [sample_path])
    with session_scope(engine) as session:
        store.add_topic(session, "oracle", query="title:oracle", now=datetime.now(UTC))

    def entries() -> int:
        jobs.run_feeds(settings, engine)
        return len(feedparser.parse(settings.folder("feeds") / "oracle.atom").entries)

    assert entries() == 3
    with session_scope(engine) as session:
        session.execute(update(Paper).values(first_seen=datetime.now(UTC) - timedelta(days=100)))
    assert entries() == 0  # older than [feeds] lookback_days = 90
    settings = dataclasses.replace(
        settings, feeds=dataclasses.replace(settings.feeds, lookback_days=200)
    )
    assert entries() == 3
