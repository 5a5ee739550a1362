"""Self-service sign-up in the store: double opt-in, one mail per window, no state leaks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digestd import jobs, store
from digestd.config import load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.errors import DigestError, InputError
from digestd.store import signup
from digestd.store.signup import Preferences
from tests.conftest import CliResult

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=60)
WANTS = Preferences(queries=["oracle"], topic_slugs=[], frequency="daily", send_hour=6)


@pytest.fixture
def engine(config_file: Path) -> Engine:
    settings = load_settings(config_file, environ={})
    engine = make_engine(settings.database_url, create=True)
    migrate(engine)
    with session_scope(engine) as session:
        store.add_topic(session, "llm", query="language model", now=NOW)
    return engine


def sign_up(
    engine: Engine, email: str, wants: Preferences = WANTS, at: datetime = NOW
) -> str | None:
    with session_scope(engine) as session:
        return signup.sign_up(session, email, wants, now=at, resend_after=WINDOW).mail


def subscriber(engine: Engine, email: str) -> tuple[object, list[str], list[str]]:
    with session_scope(engine) as session:
        found = store.subscriber_by_email(session, email)
        queries = store.queries_by_subscriber(session).get(found.id or 0, [])
        topics = [t.slug for t in store.topics_by_subscriber(session).get(found.id or 0, [])]
        return found, queries, topics


def test_a_new_address_is_pending_until_confirmed(engine: Engine) -> None:
    assert sign_up(engine, "Ada@Example.org") == "confirm"
    found, queries, _ = subscriber(engine, "ada@example.org")
    assert found.confirmed_at is None and queries == ["oracle"]  # type: ignore[attr-defined]
    with session_scope(engine) as session:
        signup.confirm(session, found.id, now=NOW + timedelta(hours=1))  # type: ignore[attr-defined]
    found, _, _ = subscriber(engine, "ada@example.org")
    assert found.confirmed_at is not None  # type: ignore[attr-defined]


def test_one_mail_per_window_and_a_confirmed_subscriber_is_not_changed(engine: Engine) -> None:
    assert sign_up(engine, "ada@example.org") == "confirm"
    other = Preferences(queries=["sql"], topic_slugs=["llm"])
    assert sign_up(engine, "ada@example.org", other, NOW + timedelta(minutes=5)) is None
    assert subscriber(engine, "ada@example.org")[1:] == (["sql"], ["llm"])  # still pending
    assert sign_up(engine, "ada@example.org", at=NOW + timedelta(minutes=61)) == "confirm"
    with session_scope(engine) as session:
        signup.confirm(
            session, store.subscriber_by_email(session, "ada@example.org").id or 0, now=NOW
        )
    # Anyone can type Ada's address: her preferences stay hers; she gets her manage link.
    assert sign_up(engine, "ada@example.org", other, NOW + timedelta(hours=3)) == "already"
    assert subscriber(engine, "ada@example.org")[1] == ["oracle"]
    assert sign_up(engine, "ada@example.org", other, NOW + timedelta(hours=3, minutes=1)) is None


def test_unsubscribed_can_opt_in_again_but_bounced_is_never_mailed(engine: Engine) -> None:
    sign_up(engine, "ada@example.org")
    with session_scope(engine) as session:
        ada = store.subscriber_by_email(session, "ada@example.org")
        signup.confirm(session, ada.id or 0, now=NOW)
        signup.unsubscribe(session, ada.id or 0, how="one-click", now=NOW)
    found = subscriber(engine, "ada@example.org")[0]
    assert found.suppressed_reason == "unsubscribed (one-click)"  # type: ignore[attr-defined]
    later = NOW + timedelta(days=2)
    assert sign_up(engine, "ada@example.org", Preferences(["sql"], []), later) == "confirm"
    found, queries, _ = subscriber(engine, "ada@example.org")
    assert found.confirmed_at is None and queries == ["sql"]  # type: ignore[attr-defined]
    with session_scope(engine) as session:
        signup.confirm(session, found.id, now=later)  # type: ignore[attr-defined]
    found = subscriber(engine, "ada@example.org")[0]
    assert found.suppressed_at is None and found.confirmed_at is not None  # type: ignore[attr-defined]
    with session_scope(engine) as session:
        store.add_subscriber(session, "bob@example.org", queries=["x"], now=NOW)
        bob = store.subscriber_by_email(session, "bob@example.org")
        store.record_bounce(
            session,
            subscriber_id=bob.id or 0,
            kind="complaint",
            reason="abuse",
            source="report",
            now=NOW,
            hard_limit=1,
        )
    assert sign_up(engine, "bob@example.org", at=later) is None
    with session_scope(engine) as session:
        signup.confirm(session, bob.id or 0, now=later)  # a stale confirm link cannot lift it
    assert subscriber(engine, "bob@example.org")[0].suppressed_at is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("wants", "message"),
    [
        (Preferences(queries=[], topic_slugs=[]), "at least one topic"),
        (Preferences(queries=['"unclosed'], topic_slugs=[]), "unclosed"),
        (Preferences(queries=["x"], topic_slugs=["nope"]), "nope"),
        (Preferences(queries=["x"], topic_slugs=[], send_hour=24), "0-23"),
        (Preferences(queries=["x"], topic_slugs=[], timezone="Mars/Base"), "Mars/Base"),
        (Preferences(queries=["x"], topic_slugs=[], timezone="America"), "America"),
    ],
)
def test_bad_preferences_are_refused_and_nothing_is_stored(
    engine: Engine, wants: Preferences, message: str
) -> None:
    with pytest.raises(DigestError, match=message):
        sign_up(engine, "ada@example.org", wants)
    with session_scope(engine) as session:
        assert store.subscribers(session) == []


def test_bad_address_is_refused(engine: Engine) -> None:
    with pytest.raises(InputError, match="not valid"):
        sign_up(engine, "not an address")


def test_set_preferences_replaces_everything(engine: Engine) -> None:
    sign_up(engine, "ada@example.org")
    with session_scope(engine) as session:
        ada = store.subscriber_by_email(session, "ada@example.org")
        signup.set_preferences(
            session,
            ada,
            Preferences(
                queries=["sql", "sql", " "],
                topic_slugs=["llm"],
                frequency="weekly",
                timezone="Europe/Paris",
                send_hour=9,
                weekday="fri",
                paused=True,
            ),
        )
    found, queries, topics = subscriber(engine, "ada@example.org")
    assert (queries, topics) == (["sql"], ["llm"])
    assert (found.frequency, found.timezone, found.send_hour, found.weekday, found.active) == (  # type: ignore[attr-defined]
        "weekly",
        "Europe/Paris",
        9,
        "fri",
        False,
    )


def test_a_pending_sign_up_gets_no_digest_until_confirmed(
    config_file: Path, engine: Engine, sample_path: Path
) -> None:
    settings = load_settings(config_file, environ={})
    jobs.run_ingest(settings, engine, [sample_path])
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        signup.sign_up(session, "ada@example.org", WANTS, now=now, resend_after=WINDOW)
    report = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
    assert (report.due, report.outcomes) == (0, [])
    with session_scope(engine) as session:
        signup.confirm(
            session, store.subscriber_by_email(session, "ada@example.org").id or 0, now=now
        )
    report = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
    assert report.count("sent") == 1
    (mail,) = settings.folder("outbox").glob("*.eml")
    assert "/manage/" in mail.read_text()  # every digest carries the manage link


def test_expired_sign_ups_are_purged_and_nobody_else(
    engine: Engine, cli: Callable[..., CliResult]
) -> None:
    sign_up(engine, "old@example.org", at=NOW - timedelta(hours=49))
    sign_up(engine, "new@example.org", at=NOW - timedelta(hours=1))
    sign_up(engine, "done@example.org", at=NOW - timedelta(hours=49))
    with session_scope(engine) as session:
        done = store.subscriber_by_email(session, "done@example.org")
        signup.confirm(session, done.id or 0, now=NOW - timedelta(hours=48))
        store.add_subscriber(session, "cli@example.org", queries=["x"], now=NOW - timedelta(days=9))
    listed = {
        row["email"]: row["status"] for row in json.loads(cli("subscriber", "list", "--json").out)
    }
    assert listed["old@example.org"] == listed["new@example.org"] == "pending"
    assert "pending: signed up on the web" in cli("subscriber", "show", "new@example.org").out
    with session_scope(engine) as session:
        removed = signup.purge_unconfirmed(session, before=NOW - timedelta(hours=48))
    assert removed == ["old@example.org"]
    with session_scope(engine) as session:
        left = sorted(s.email for s in store.subscribers(session))
    assert left == ["cli@example.org", "done@example.org", "new@example.org"]
