"""The outbox against a real SMTP server that misbehaves: every digest once, whatever happens.

Each test counts exactly what the server received. Times are injected (``now=``), never slept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import jobs, store
from digestd.cli.common import out
from digestd.config import Settings, load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.jobs.send_job import backoff_delay
from digestd.models import Bounce, Delivery, Subscriber
from tests.conftest import CliResult
from tests.support.outbox_site import (  # noqa: F401  (the server and ready fixtures)
    QUERY,
    T0,
    ready_fixture,
    server_fixture,
)
from tests.support.smtp_faults import FaultServer, refusing_port


def add_people(engine: Engine, count: int, *, prefix: str = "reader") -> list[str]:
    """``count`` subscribers due at any hour, created a day before T0."""
    addresses = [f"{prefix}{n:04d}@example.org" for n in range(count)]
    with session_scope(engine) as session:
        for address in addresses:
            store.add_subscriber(
                session, address, queries=[QUERY], send_hour=0, now=T0 - timedelta(days=1)
            )
    return addresses


def send(
    settings: Settings, engine: Engine, at: datetime = T0, **options: object
) -> jobs.SendReport:
    return asyncio.run(jobs.run_send(settings, engine, now=at, **options))  # type: ignore[arg-type]


def rows(engine: Engine) -> dict[str, Delivery]:
    """Each subscriber's newest outbox row, by address."""
    with session_scope(engine) as session:
        found = session.exec(
            select(Delivery, Subscriber.email).join(Subscriber).order_by(Delivery.id)
        ).all()
    return {email: delivery for delivery, email in found}


def with_delivery(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, delivery=dataclasses.replace(settings.delivery, **changes))


def test_a_second_send_the_same_day_sends_nothing(
    ready: tuple[Settings, Engine], server: FaultServer
) -> None:
    settings, engine = ready
    add_people(engine, 3)
    first = send(settings, engine)
    assert first.count("sent") == 3 and server.count == 3
    again = send(settings, engine, T0 + timedelta(hours=2))
    assert (again.due, again.outcomes) == (0, [])
    assert server.count == 3
    assert {d.status for d in rows(engine).values()} == {"sent"}
    # Each message carries the Message-ID of its outbox row.
    assert sorted(server.received_message_ids()) == sorted(
        d.message_id for d in rows(engine).values()
    )


def test_451_is_retried_with_backoff_until_the_server_recovers(
    ready: tuple[Settings, Engine], server: FaultServer
) -> None:
    settings, engine = ready
    ada, bob = add_people(engine, 2)
    server.refuse_soft = {ada}
    first = send(settings, engine)
    assert [o.status for o in first.outcomes] == ["retry", "sent"]
    row = rows(engine)[ada]
    assert (row.status, row.attempts) == ("retry", 1)
    assert "451" in row.reply
    wait = store.aware(row.next_attempt_at) - T0  # type: ignore[arg-type]
    first_wait = timedelta(minutes=settings.delivery.retry_minutes)
    assert first_wait / 2 <= wait <= first_wait
    rcpts = server.rcpt_commands
    early = send(settings, engine, T0 + wait - timedelta(seconds=1))
    assert early.outcomes == [] and server.rcpt_commands == rcpts  # not before its time
    second = send(settings, engine, T0 + wait)
    assert [o.status for o in second.outcomes] == ["retry"]
    row = rows(engine)[ada]
    assert row.attempts == 2
    second_wait = store.aware(row.next_attempt_at) - (T0 + wait)  # type: ignore[arg-type]
    assert first_wait <= second_wait <= 2 * first_wait  # doubled, with jitter
    server.accept_all()
    third = send(settings, engine, T0 + wait + second_wait)
    assert [o.status for o in third.outcomes] == ["sent"]
    assert Counter(m.rcpt_tos[0] for m in server.messages) == {ada: 1, bob: 1}
    row = rows(engine)[ada]
    assert (row.status, row.attempts) == ("sent", 3)
    # Ada's one digest went out under the Message-ID it was planned with.
    assert [m.message_id for m in server.messages if m.rcpt_tos == (ada,)] == [row.message_id]


def test_451_for_good_is_given_up_after_the_give_up_period(
    ready: tuple[Settings, Engine], server: FaultServer
) -> None:
    settings = with_delivery(ready[0], give_up_hours=3.0, retry_minutes=10.0)
    engine = ready[1]
    (ada,) = add_people(engine, 1)
    server.refuse_soft = True
    now, attempts = T0, 0
    while True:
        report = send(settings, engine, now)
        attempts += 1
        row = rows(engine)[ada]
        if row.status != "retry":
            break
        assert row.next_attempt_at is not None
        now = store.aware(row.next_attempt_at)
        assert now <= T0 + timedelta(hours=3)
    assert row.status == "failed" and "gave up after" in row.reply and "451" in row.reply
    assert report.outcomes[0].status == "failed"
    assert now == T0 + timedelta(hours=3)  # the last attempt is at the give-up time
    # 10, 20, 40, 80 minutes (each halved at worst by jitter), then the give-up time.
    assert 5 <= attempts <= 12
    assert server.rcpt_commands == attempts == row.attempts
    assert server.count == 0


def test_backoff_doubles_up_to_the_longest_wait() -> None:
    waits = [backoff_delay(n, first_minutes=10, max_minutes=240) for n in range(1, 10)]
    for n, wait in enumerate(waits, start=1):
        full = timedelta(minutes=min(10 * 2 ** (n - 1), 240))
        assert full / 2 <= wait <= full


def test_550_is_a_bounce_that_suppresses_without_retry(
    ready: tuple[Settings, Engine], server: FaultServer, cli: object
) -> None:
    settings, engine = ready
    ada, bob, cy = add_people(engine, 3)
    server.refuse_hard = {bob}
    report = send(settings, engine)
    assert sorted(o.status for o in report.outcomes) == ["failed", "sent", "sent"]
    assert server.count == 2 and {m.rcpt_tos[0] for m in server.messages} == {ada, cy}
    row = rows(engine)[bob]
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    with session_scope(engine) as session:
        subscriber = store.subscriber_by_email(session, bob)
        assert subscriber.suppressed_at is not None
        assert "550" in subscriber.suppressed_reason
        (bounce,) = session.exec(select(Bounce)).all()
        assert (bounce.kind, bounce.source, bounce.subscriber_id) == ("hard", "smtp", subscriber.id)
    server.accept_all()
    rcpts = server.rcpt_commands
    later = send(settings, engine, T0 + timedelta(days=1), ignore_schedule=True)
    assert bob not in {o.email for o in later.outcomes}
    assert server.rcpt_commands - rcpts == len(later.outcomes)
    shown = cli("subscriber", "show", bob)  # type: ignore[operator]
    assert "suppressed since" in shown.out and "550" in shown.out


def test_connection_refused_is_temporary_one_line_per_attempt_and_pauses_the_run(
    ready: tuple[Settings, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    settings, engine = ready
    with refusing_port() as port:
        settings = dataclasses.replace(
            with_delivery(settings, error_threshold=3),
            smtp=dataclasses.replace(settings.smtp, port=port),
        )
        add_people(engine, 5)
        caplog.set_level(logging.WARNING, logger="digestd")
        started = time.monotonic()
        report = send(settings, engine)
        assert time.monotonic() - started < 10  # no tight loop, no long wait either
    temporary = [r for r in caplog.records if "temporary failure" in r.getMessage()]
    assert len(temporary) == 3 == len(report.outcomes)
    assert all("refused" in r.getMessage() for r in temporary)
    assert "3 failures in a row" in report.paused
    statuses = Counter(d.status for d in rows(engine).values())
    assert statuses == {"retry": 3, "planned": 2}  # the rest wait for the next run


def test_rate_limit_holds_over_the_whole_run(
    ready: tuple[Settings, Engine], server: FaultServer
) -> None:
    settings = with_delivery(ready[0], rate_per_second=20.0)
    settings = dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, connections=3))
    engine = ready[1]
    add_people(engine, 12)
    started = time.monotonic()
    assert send(settings, engine).count("sent") == 12
    arrivals = sorted(m.monotonic for m in server.messages)
    assert len(arrivals) == 12
    # The bucket starts empty: the k-th message cannot arrive before k/R seconds have passed.
    for k, arrival in enumerate(arrivals, start=1):
        assert arrival - started >= k / 20
    assert arrivals[-1] - started >= 12 / 20


@pytest.mark.parametrize("runner", ["send", "daemon"])
@pytest.mark.slow
def test_killed_send_resumes_with_the_same_message_ids(
    config_file: Path, server: FaultServer, sample_path: Path, tmp_path: Path, runner: str
) -> None:
    """SIGKILL in the middle of a 500-subscriber run (``digestd send``, or the daemon's send
    job), then run again: one digest each."""
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    jobs.run_ingest(settings, engine, [sample_path])
    people = add_people(engine, 500)
    env = {
        **os.environ,
        "DIGESTD_DELIVERY_BACKEND": "smtp",
        "DIGESTD_SMTP_HOST": server.host,
        "DIGESTD_SMTP_PORT": str(server.port),
        "DIGESTD_SMTP_CONNECTIONS": "4",
        "DIGESTD_SCHEDULE_SEND_CHECK_MINUTES": "0.01",
    }
    digestd = [sys.executable, "-m", "digestd", "--config", str(config_file)]
    command = [*digestd, "send", "--now"] if runner == "send" else [*digestd, "run"]
    server.reply_delay = 0.02  # a slow server, so that messages are in flight at the kill
    run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert server.wait_for(150, timeout=120)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    # The kernel may still hold a whole message the killed client wrote: the server reads it
    # after the kill. Count what it received once every connection of the run has closed.
    closing = time.monotonic() + 30
    while server.open_connections and time.monotonic() < closing:
        time.sleep(0.05)
    before_kill = Counter(server.received_message_ids())
    at_crash = rows(engine)
    in_flight = {d.message_id for d in at_crash.values() if d.status == "sending"}
    assert in_flight, "the kill should catch digests in flight"
    assert sum(d.status == "sent" for d in at_crash.values()) >= 100
    server.reply_delay = 0.0
    if runner == "send":
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        summary = " ".join(again.stdout.split())
    else:
        daemon = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300
            while {d.status for d in rows(engine).values()} != {"sent"} or len(rows(engine)) < 500:
                assert time.monotonic() < deadline, "the restarted daemon did not finish"
                time.sleep(0.5)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, log = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, log
        summary = " ".join(log.split())
    assert f"{len(in_flight)} sent again after an interrupted run" in summary
    final = rows(engine)
    assert len(final) == 500 and {d.status for d in final.values()} == {"sent"}
    received = Counter(server.received_message_ids())
    # Every subscriber's digest arrived under one Message-ID, the one of their outbox row.
    assert set(received) == {d.message_id for d in final.values()}
    assert {m.rcpt_tos[0] for m in server.messages} == set(people)
    # Only digests in flight at the kill can arrive twice, and only those the server had
    # already taken: the server received exactly 500 plus those.
    duplicates = {mid for mid, n in received.items() if n > 1}
    assert duplicates <= in_flight and all(n <= 2 for n in received.values())
    assert duplicates == {mid for mid in in_flight if before_kill[mid]}
    assert server.count == 500 + len(duplicates)
    assert sum(d.interrupted for d in final.values()) == len(in_flight)
    with session_scope(engine) as session:
        assert store.resent_count(session) == len(in_flight)


@pytest.mark.slow
def test_a_cli_write_and_a_daemon_write_at_once_both_succeed(
    config_file: Path, tmp_path: Path
) -> None:
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    # The "daemon" holds the write lock for a while; the CLI's write waits its turn.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from datetime import UTC, datetime\n"
            "from digestd import store\n"
            "from digestd.db import make_engine, session_scope\n"
            "engine = make_engine(sys.argv[1])\n"
            "with session_scope(engine) as s:\n"
            "    store.add_topic(s, 'held', query='oracle', now=datetime.now(UTC))\n"
            "    print('holding', flush=True)\n"
            "    time.sleep(1.5)\n",
            settings.database_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    command = ["topic", "add", "cli", "--query", "sql"]
    cli = subprocess.run(
        [sys.executable, "-m", "digestd", "--config", str(config_file), *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert holder.wait(timeout=30) == 0
    assert cli.returncode == 0, cli.stderr
    with session_scope(engine) as session:
        assert sorted(t.slug for t in store.topics(session)) == ["cli", "held"]


def test_operator_sees_the_outbox_and_re_queues_failed_digests(
    ready: tuple[Settings, Engine],
    server: FaultServer,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(out, "width", 220)  # one table row per line
    settings, engine = ready
    ada, bob, cy = add_people(engine, 3)
    server.refuse_soft = {ada}
    server.refuse_hard = {bob}
    send(settings, engine)
    listing = cli("deliveries")
    assert listing.code == 0 and "3 shown" in listing.out
    for address, status in ((ada, "retry"), (bob, "failed"), (cy, "sent")):
        assert any(address in line and status in line for line in listing.out.splitlines())
    only_retry = cli("deliveries", "--status", "retry")
    assert ada in only_retry.out and bob not in only_retry.out and "1 shown" in only_retry.out
    assert "0 shown" in cli("deliveries", "--since", "2999-01-01").out
    stats = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in cli("stats").out.splitlines()
        if line.count("│") == 3
    }
    assert stats["sent"] == "1" and stats["retrying"] == "1" and stats["failed"] == "1"
    assert stats["subscribers suppressed"] == "1"
    bad = cli("deliveries", "--status", "lost")
    assert bad.code == 1 and "--status 'lost'" in bad.err and len(bad.err.splitlines()) == 1
    # The operator acts at the run's time (T0 is set when the module is imported; a long test
    # session must not make Bob's re-queued attempt later than the next run).
    monkeypatch.setattr(jobs, "utc_now", lambda: T0)
    ada_row = rows(engine)[ada]
    refused = cli("deliveries", "retry", str(ada_row.id))
    assert refused.code == 1 and "only failed ones" in refused.err
    assert cli("deliveries", "retry").code == 1  # neither an id nor --all-failed
    # Bob is suppressed: his failed digest stays failed until that is lifted.
    assert "0 re-queued" in cli("deliveries", "retry", "--all-failed").out
    assert cli("subscriber", "unsuppress", bob).code == 0
    bob_row = rows(engine)[bob]
    assert "1 re-queued" in cli("deliveries", "retry", str(bob_row.id)).out
    server.accept_all()
    report = send(settings, engine, T0 + timedelta(minutes=1))
    assert [o.email for o in report.outcomes] == [bob]  # Ada waits for her next attempt
    assert Counter(m.rcpt_tos[0] for m in server.messages) == {bob: 1, cy: 1}


def test_a_refused_sender_fails_the_digest_without_blaming_the_subscriber(
    ready: tuple[Settings, Engine], server: FaultServer
) -> None:
    settings, engine = ready
    (ada,) = add_people(engine, 1)
    server.refuse_sender = True
    report = send(settings, engine)
    assert [o.status for o in report.outcomes] == ["failed"]
    assert server.count == 0 and server.rcpt_commands == 0
    row = rows(engine)[ada]
    assert (row.status, row.fault) == ("failed", "sender") and "553" in row.reply
    with session_scope(engine) as session:
        (bounce,) = session.exec(select(Bounce)).all()
        assert (bounce.kind, bounce.status, bounce.source) == ("refused", "5.7.1", "smtp")
        assert store.subscriber_by_email(session, ada).suppressed_at is None
