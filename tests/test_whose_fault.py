"""Whose fault a 5xx is, end to end: a real SMTP server answers with each class of refusal at
RCPT TO or after DATA; the outbox row, the bounces, the suppression and what `digestd stats`
and `digestd deliveries` show follow from it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from digestd import jobs, store
from digestd.cli.common import out
from digestd.config import Settings
from digestd.db import session_scope
from digestd.models import Bounce, Delivery, Subscriber
from tests.conftest import CliResult
from tests.support.outbox_site import (  # noqa: F401  (the server and ready fixtures)
    QUERY,
    T0,
    ready_fixture,
    server_fixture,
)
from tests.support.smtp_faults import FaultServer

RCPT, DATA = "RCPT TO", "DATA"


def add_people(engine: Engine, *names: str) -> list[str]:
    addresses = [f"{name}@example.org" for name in names]
    with session_scope(engine) as session:
        for address in addresses:
            store.add_subscriber(
                session, address, queries=[QUERY], send_hour=0, now=T0 - timedelta(days=1)
            )
    return addresses


def send(settings: Settings, engine: Engine, at: datetime = T0) -> jobs.SendReport:
    return asyncio.run(jobs.run_send(settings, engine, now=at))


def row_of(engine: Engine, address: str) -> Delivery:
    with session_scope(engine) as session:
        return session.exec(
            select(Delivery)
            .join(Subscriber)
            .where(Subscriber.email == address)
            .order_by(Delivery.id.desc())  # type: ignore[union-attr]
        ).first()  # type: ignore[return-value]


def bounces_of(engine: Engine, address: str) -> list[tuple[str, str, str, str]]:
    with session_scope(engine) as session:
        subscriber = store.subscriber_by_email(session, address)
        found = session.exec(select(Bounce).where(Bounce.subscriber_id == subscriber.id)).all()
        return [(b.kind, b.status, b.source, b.reason) for b in found]


def suppressed(engine: Engine, address: str) -> bool:
    with session_scope(engine) as session:
        return store.subscriber_by_email(session, address).suppressed_at is not None


# (the step the server refuses, its reply, whose fault); every class of the README's table.
REPLIES = [
    (RCPT, "550 5.1.1 <{to}>: Recipient address rejected: User unknown", "recipient"),
    (RCPT, "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", "recipient"),
    (RCPT, "550 5.2.1 The email account that you tried to reach is disabled", "recipient"),
    (RCPT, "550 5.4.1 Recipient address rejected: Access denied", "recipient"),
    (RCPT, "550 5.7.17 Mailbox owner has changed", "recipient"),
    (RCPT, "550 Requested action not taken: mailbox unavailable", "recipient"),
    (RCPT, "553 Requested action not taken: mailbox name not allowed", "recipient"),
    (DATA, "552 5.2.2 The email account that you tried to reach is over quota", "recipient"),
    (DATA, "550 5.1.1 <{to}>: unknown user", "recipient"),
    (RCPT, "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked", "sender"),
    (RCPT, "554 5.7.1 <{to}>: Relay access denied", "sender"),
    (RCPT, "530 5.7.0 Authentication required", "sender"),
    (RCPT, "550 5.1.8 Bad sender's system address", "sender"),
    (RCPT, "554 Transaction failed", "sender"),
    (DATA, "552 5.3.4 Message size exceeds fixed maximum message size", "sender"),
    (DATA, "552 5.2.3 Message length exceeds administrative limit", "sender"),
    (DATA, "554 5.7.1 Message rejected as spam", "sender"),
    (DATA, "550 5.7.26 This mail is unauthenticated and has been blocked", "sender"),
    (DATA, "554 5.6.0 Content rejected", "sender"),
    (DATA, "500 5.5.2 Syntax error", "sender"),
    (DATA, "552 Requested mail action aborted: exceeded storage allocation", "sender"),
    (DATA, "554 Transaction failed", "sender"),
]


@pytest.mark.parametrize(("step", "reply", "fault"), REPLIES)
def test_a_refusal_is_recorded_as_whose_fault_it_is(
    ready: tuple[Settings, Engine], server: FaultServer, step: str, reply: str, fault: str
) -> None:
    settings, engine = ready
    (ada,) = add_people(engine, "ada")
    reply = reply.format(to=ada)
    replies = server.rcpt_replies if step == RCPT else server.data_replies
    replies[ada] = reply
    report = send(settings, engine)
    assert [(o.status, o.detail) for o in report.outcomes] == [("failed", reply)]
    row = row_of(engine, ada)
    assert (row.status, row.fault, row.reply, row.attempts) == ("failed", fault, reply, 1)
    assert row.next_attempt_at is None  # permanent: no retry
    status = reply.split()[1] if reply.split()[1][0] == "5" else ""
    kind = "hard" if fault == "recipient" else "refused"
    assert bounces_of(engine, ada) == [(kind, status, "smtp", reply)]
    assert suppressed(engine, ada) == (fault == "recipient")  # [delivery] hard_bounces = 1
    # The next day, with the server taking mail again: a subscriber refused for our sake
    # gets their digest, a suppressed one does not.
    server.accept_all()
    later = send(settings, engine, T0 + timedelta(days=1))
    assert [o.status for o in later.outcomes] == ([] if fault == "recipient" else ["sent"])
    assert server.count == (0 if fault == "recipient" else 1)


def test_refusals_for_our_sake_never_add_up_to_a_suppression(
    ready: tuple[Settings, Engine], server: FaultServer
) -> None:
    settings, engine = ready
    settings = dataclasses.replace(
        settings, delivery=dataclasses.replace(settings.delivery, hard_bounces=2)
    )
    (ada,) = add_people(engine, "ada")
    for day, reply in enumerate(
        ["554 5.7.1 Message rejected as spam", "552 5.3.4 Message too big", "554 5.7.1 spam"]
    ):
        server.data_replies[ada] = reply
        send(settings, engine, T0 + timedelta(days=day))
    assert [b[0] for b in bounces_of(engine, ada)] == ["refused"] * 3
    assert not suppressed(engine, ada)
    server.data_replies[ada] = "550 5.1.1 unknown user"
    send(settings, engine, T0 + timedelta(days=3))
    assert not suppressed(engine, ada)  # one hard bounce of two
    send(settings, engine, T0 + timedelta(days=4))
    assert suppressed(engine, ada)


def test_refusals_for_our_sake_pause_the_run_like_any_failure(
    ready: tuple[Settings, Engine], server: FaultServer
) -> None:
    # A relay refusing every message (a block list, a broken DKIM setup) is what the failure
    # streak is for: the digests not yet tried wait for the next run instead of failing too.
    settings, engine = ready
    settings = dataclasses.replace(
        settings, delivery=dataclasses.replace(settings.delivery, error_threshold=2)
    )
    add_people(engine, "ada", "bob", "cy", "dan")
    server.data_replies["*"] = "554 5.7.1 Service unavailable; client host blocked"
    report = send(settings, engine)
    assert [o.status for o in report.outcomes] == ["failed", "failed"]
    assert "2 failures in a row" in report.paused
    with session_scope(engine) as session:
        statuses = sorted(d.status for d in session.exec(select(Delivery)).all())
    assert statuses == ["failed", "failed", "planned", "planned"]


def test_stats_and_deliveries_show_failures_apart(
    ready: tuple[Settings, Engine],
    server: FaultServer,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(out, "width", 250)  # one table row per line
    settings, engine = ready
    settings = dataclasses.replace(
        settings, delivery=dataclasses.replace(settings.delivery, give_up_hours=1.0)
    )
    ada, bob, cy, dan = add_people(engine, "ada", "bob", "cy", "dan")
    server.rcpt_replies[ada] = "550 5.1.1 unknown user"
    server.data_replies[bob] = "552 5.3.4 Message size exceeds fixed maximum message size"
    server.refuse_soft = {cy}
    send(settings, engine)
    send(settings, engine, T0 + timedelta(hours=2))  # Cy's digest is given up
    assert [row_of(engine, a).fault for a in (ada, bob, cy, dan)] == [
        "recipient",
        "sender",
        "",
        "",
    ]
    stats = cli("stats")
    counts = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in stats.out.splitlines()
        if line.count("│") == 3
    }
    assert counts["sent"] == "1" and counts["failed"] == "3"
    assert counts["failed: the recipient's address (hard bounce)"] == "1"
    assert counts["failed: refused for our message or server (not the recipient's)"] == "1"
    other = "failed: other (gave up after retries, could not be built, subscriber suppressed)"
    assert counts[other] == "1"
    assert counts["subscribers suppressed"] == "1"
    listing = cli("deliveries").out.splitlines()

    def status_of(address: str) -> str:
        (line,) = [line for line in listing if address in line]
        return line.split("│")[4].strip()

    assert status_of(ada) == "failed (hard bounce)"
    assert status_of(bob) == "failed (refused)"
    assert status_of(cy) == "failed"
    assert status_of(dan) == "sent"
    # Bob's digest, re-queued once the message fits, goes out and is no longer a failure.
    server.accept_all()
    assert "1 re-queued" in cli("deliveries", "retry", str(row_of(engine, bob).id)).out
    assert row_of(engine, bob).fault == ""
    send(settings, engine, T0 + timedelta(hours=3))
    assert (row_of(engine, bob).status, row_of(engine, bob).fault) == ("sent", "")
    shown = cli("subscriber", "show", bob)
    assert "refused" in shown.out and "5.3.4" in shown.out
