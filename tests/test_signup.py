"""Self-service sign-up in the store: double opt-in, one mail per window, no state leaks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from digestd import jobs, store
from digestd.config import load_settings
from digestd.db import make_engine, migrate, session_scope
from digestd.errors import DigestError, InputError
from digestd.models import Delivery, SignUpRequest
from digestd.store import signup
from digestd.store.signup import Preferences
from tests.conftest import CliResult
from tests.test_postgres import postgres_url  # noqa: F401  (the postgres_url fixture)

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
    return sign_up_result(engine, email, wants, at).mail


def sign_up_result(
    engine: Engine, email: str, wants: Preferences = WANTS, at: datetime = NOW
) -> signup.SignUp:
    with session_scope(engine) as session:
        return signup.sign_up(session, email, wants, now=at, resend_after=WINDOW)


def confirm(
    engine: Engine, email: str, nonce: str | None, at: datetime = NOW
) -> signup.Confirmation | None:
    with session_scope(engine) as session:
        found = store.subscriber_by_email(session, email)
        return signup.confirm(session, found.id or 0, nonce, now=at, valid_for=timedelta(hours=48))


def requests_of(engine: Engine, email: str) -> list[Preferences]:
    with session_scope(engine) as session:
        found = store.subscriber_by_email(session, email)
        rows = session.exec(
            select(SignUpRequest)
            .where(SignUpRequest.subscriber_id == found.id)
            .order_by(SignUpRequest.id)  # type: ignore[arg-type]
        ).all()
        return [signup.request_preferences(row) for row in rows]


def subscriber(engine: Engine, email: str) -> tuple[object, list[str], list[str]]:
    with session_scope(engine) as session:
        found = store.subscriber_by_email(session, email)
        queries = store.queries_by_subscriber(session).get(found.id or 0, [])
        topics = [t.slug for t in store.topics_by_subscriber(session).get(found.id or 0, [])]
        return found, queries, topics


def test_a_new_address_is_pending_until_confirmed(engine: Engine) -> None:
    first = sign_up_result(engine, "Ada@Example.org")
    assert first.mail == "confirm" and first.nonce is not None and len(first.nonce) == 32
    found, queries, _ = subscriber(engine, "ada@example.org")
    assert found.confirmed_at is None and queries == ["oracle"]  # type: ignore[attr-defined]
    assert requests_of(engine, "ada@example.org") == [WANTS]
    assert confirm(engine, "ada@example.org", "f" * 32) is None  # no such request
    done = confirm(engine, "ada@example.org", first.nonce, NOW + timedelta(hours=1))
    assert done is not None and done.preferences == WANTS
    found, _, _ = subscriber(engine, "ada@example.org")
    assert found.confirmed_at is not None  # type: ignore[attr-defined]
    assert requests_of(engine, "ada@example.org") == []
    assert confirm(engine, "ada@example.org", first.nonce, NOW + timedelta(hours=2)) is None


def test_each_sign_up_confirms_its_own_preferences(engine: Engine) -> None:
    first = sign_up_result(engine, "ada@example.org")
    other = Preferences(queries=["sql"], topic_slugs=["llm"], frequency="weekly", weekday="fri")
    # Inside the resend window: nothing mailed, nothing recorded, nothing changed.
    inside = sign_up_result(engine, "ada@example.org", other, NOW + timedelta(minutes=5))
    assert (inside.mail, inside.nonce) == (None, None)
    assert requests_of(engine, "ada@example.org") == [WANTS]
    second = sign_up_result(engine, "ada@example.org", other, NOW + timedelta(minutes=61))
    assert second.mail == "confirm" and second.nonce not in (None, first.nonce)
    # Pending: what is stored stays the first sign-up's until a link is confirmed.
    assert subscriber(engine, "ada@example.org")[1:] == (["oracle"], [])
    assert requests_of(engine, "ada@example.org") == [WANTS, other]
    done = confirm(engine, "ada@example.org", second.nonce, NOW + timedelta(hours=1))
    assert done is not None and done.preferences == other
    found, queries, topics = subscriber(engine, "ada@example.org")
    assert (queries, topics, found.frequency, found.weekday) == (["sql"], ["llm"], "weekly", "fri")  # type: ignore[attr-defined]
    done = confirm(engine, "ada@example.org", first.nonce, NOW + timedelta(hours=2))
    assert done is not None and done.preferences == WANTS
    assert subscriber(engine, "ada@example.org")[1:] == (["oracle"], [])


def test_a_confirmed_subscriber_is_not_changed_from_the_form(engine: Engine) -> None:
    first = sign_up_result(engine, "ada@example.org")
    assert confirm(engine, "ada@example.org", first.nonce) is not None
    other = Preferences(queries=["sql"], topic_slugs=["llm"])
    # Anyone can type Ada's address: her preferences stay hers; she gets her manage link.
    assert sign_up(engine, "ada@example.org", other, NOW + timedelta(hours=3)) == "already"
    assert subscriber(engine, "ada@example.org")[1] == ["oracle"]
    assert requests_of(engine, "ada@example.org") == []
    assert sign_up(engine, "ada@example.org", other, NOW + timedelta(hours=3, minutes=1)) is None


def test_a_request_expires_and_a_removed_topic_is_left_out(engine: Engine) -> None:
    wants = Preferences(queries=[], topic_slugs=["llm"])
    late = sign_up_result(engine, "late@example.org", wants)
    assert confirm(engine, "late@example.org", late.nonce, NOW + timedelta(hours=48)) is None
    assert subscriber(engine, "late@example.org")[0].confirmed_at is None  # type: ignore[attr-defined]
    both = Preferences(queries=["sql"], topic_slugs=["llm"])
    ada = sign_up_result(engine, "ada@example.org", both)
    with session_scope(engine) as session:
        store.remove_topic(session, "llm", force=True)
    done = confirm(engine, "ada@example.org", ada.nonce)
    assert done is not None and (list(done.preferences.queries), done.preferences.topic_slugs) == (
        ["sql"],
        [],
    )


def test_an_unsubscribe_withdraws_every_link_mailed_before(engine: Engine) -> None:
    first = sign_up_result(engine, "ada@example.org")
    with session_scope(engine) as session:
        ada_id = store.subscriber_by_email(session, "ada@example.org").id or 0
        signup.unsubscribe(session, ada_id, how="one-click", now=NOW)
    assert requests_of(engine, "ada@example.org") == []
    assert confirm(engine, "ada@example.org", first.nonce, NOW + timedelta(minutes=1)) is None
    found = subscriber(engine, "ada@example.org")[0]
    assert found.suppressed_reason == "unsubscribed (one-click)"  # type: ignore[attr-defined]
    # A link from before sign-ups were requests does not lift it either.
    assert confirm(engine, "ada@example.org", None, NOW + timedelta(minutes=2)) is None
    assert subscriber(engine, "ada@example.org")[0].suppressed_at is not None  # type: ignore[attr-defined]


def test_unsubscribed_can_opt_in_again_but_bounced_is_never_mailed(engine: Engine) -> None:
    first = sign_up_result(engine, "ada@example.org")
    confirm(engine, "ada@example.org", first.nonce)
    with session_scope(engine) as session:
        ada = store.subscriber_by_email(session, "ada@example.org")
        signup.unsubscribe(session, ada.id or 0, how="one-click", now=NOW)
    found = subscriber(engine, "ada@example.org")[0]
    assert found.suppressed_reason == "unsubscribed (one-click)"  # type: ignore[attr-defined]
    later = NOW + timedelta(days=2)
    again = sign_up_result(engine, "ada@example.org", Preferences(["sql"], []), later)
    assert again.mail == "confirm"
    # Nothing changes until the new link is confirmed: still unsubscribed, same preferences.
    found, queries, _ = subscriber(engine, "ada@example.org")
    assert found.suppressed_at is not None and queries == ["oracle"]  # type: ignore[attr-defined]
    assert found.confirmed_at is not None  # type: ignore[attr-defined]  # once confirmed, stays so
    assert confirm(engine, "ada@example.org", again.nonce, later) is not None
    found, queries, _ = subscriber(engine, "ada@example.org")
    assert found.suppressed_at is None and queries == ["sql"]  # type: ignore[attr-defined]
    assert found.created_at.replace(tzinfo=UTC) == later  # type: ignore[attr-defined]
    bob = sign_up_result(engine, "bob@example.org")
    with session_scope(engine) as session:
        bob_id = store.subscriber_by_email(session, "bob@example.org").id or 0
        store.record_bounce(
            session,
            subscriber_id=bob_id,
            kind="complaint",
            reason="abuse",
            source="report",
            now=NOW,
            hard_limit=1,
        )
    assert sign_up(engine, "bob@example.org", at=later) is None
    assert confirm(engine, "bob@example.org", bob.nonce) is None  # a fresh link cannot lift it
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
    ada = sign_up_result(engine, "ada@example.org", at=now)
    report = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
    assert (report.due, report.outcomes) == (0, [])
    assert confirm(engine, "ada@example.org", ada.nonce, now) is not None
    report = asyncio.run(jobs.run_send(settings, engine, ignore_schedule=True))
    assert report.count("sent") == 1
    (mail,) = settings.folder("outbox").glob("*.eml")
    assert "/manage/" in mail.read_text()  # every digest carries the manage link


def test_expired_sign_ups_are_purged_and_nobody_else(
    engine: Engine, cli: Callable[..., CliResult]
) -> None:
    sign_up(engine, "old@example.org", at=NOW - timedelta(hours=49))
    sign_up(engine, "new@example.org", at=NOW - timedelta(hours=1))
    done = sign_up_result(engine, "done@example.org", at=NOW - timedelta(hours=49))
    confirm(engine, "done@example.org", done.nonce, NOW - timedelta(hours=48, minutes=30))
    # Confirmed once, unsubscribed, signed up again and never confirmed that: kept.
    back = sign_up_result(engine, "back@example.org", at=NOW - timedelta(days=9))
    confirm(engine, "back@example.org", back.nonce, NOW - timedelta(days=9))
    with session_scope(engine) as session:
        back_id = store.subscriber_by_email(session, "back@example.org").id or 0
        signup.unsubscribe(session, back_id, how="web", now=NOW - timedelta(days=8))
    sign_up(engine, "back@example.org", at=NOW - timedelta(hours=49))
    # The same story stored by an earlier version, which forgot that they had confirmed:
    # the digest they were sent says so.
    old_back = sign_up_result(engine, "oldback@example.org", at=NOW - timedelta(days=9))
    confirm(engine, "oldback@example.org", old_back.nonce, NOW - timedelta(days=9))
    with session_scope(engine) as session:
        row = store.subscriber_by_email(session, "oldback@example.org")
        session.add(
            Delivery(
                subscriber_id=row.id or 0,
                digest_key="2026-11-15",
                status="sent",
                message_id="<old@digest.example.org>",
                paper_count=1,
                created_at=NOW - timedelta(days=9),
            )
        )
        signup.unsubscribe(session, row.id or 0, how="web", now=NOW - timedelta(days=8))
        row.confirmed_at = None
        row.confirmation_sent_at = NOW - timedelta(hours=49)
        session.add(row)
    with session_scope(engine) as session:
        store.add_subscriber(session, "cli@example.org", queries=["x"], now=NOW - timedelta(days=9))
    listed = {
        row["email"]: row["status"] for row in json.loads(cli("subscriber", "list", "--json").out)
    }
    assert listed["old@example.org"] == listed["new@example.org"] == "pending"
    assert "pending: signed up on the web" in cli("subscriber", "show", "new@example.org").out
    with session_scope(engine) as session:
        removed = signup.purge_unconfirmed(session, before=NOW - timedelta(hours=48))
    assert removed.subscribers == ["old@example.org"]
    with session_scope(engine) as session:
        left = sorted(s.email for s in store.subscribers(session))
        open_requests = session.exec(select(SignUpRequest)).all()
    assert left == [
        "back@example.org",
        "cli@example.org",
        "done@example.org",
        "new@example.org",
        "oldback@example.org",
    ]
    # Only the request younger than the links' lifetime is left.
    assert [r.created_at.replace(tzinfo=UTC) for r in open_requests] == [NOW - timedelta(hours=1)]
    back_row = subscriber(engine, "back@example.org")[0]
    assert back_row.suppressed_at is not None and back_row.confirmed_at is not None  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_two_confirmations_at_once_apply_the_request_once(postgres_url: str) -> None:  # noqa: F811
    # On PostgreSQL two transactions can both read the request; only the one whose delete
    # finds it confirms. (SQLite takes its write lock at BEGIN: there they queue.)
    engine = make_engine(postgres_url)
    migrate(engine)
    with session_scope(engine) as session:
        result = signup.sign_up(session, "ada@example.org", WANTS, now=NOW, resend_after=WINDOW)
        assert result.subscriber is not None and result.subscriber.id is not None
        ada_id, nonce = result.subscriber.id, result.nonce

    def confirm_in_a_session_of_its_own() -> bool:
        with session_scope(engine) as other:
            done = signup.confirm(other, ada_id, nonce, now=NOW, valid_for=timedelta(hours=48))
            return done is not None

    try:
        with Session(engine) as first, ThreadPoolExecutor(1) as pool:
            assert signup.confirm(first, ada_id, nonce, now=NOW, valid_for=timedelta(hours=48))
            second = pool.submit(confirm_in_a_session_of_its_own)
            time.sleep(0.5)  # the second has read the request and waits on the first's delete
            first.commit()
            assert second.result(timeout=30) is False
    finally:
        engine.dispose()
