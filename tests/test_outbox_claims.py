"""The outbox's rules, kept by the database whichever process writes: one open digest per
subscriber, a digest sent by the one run that claimed it, a holder whose lease ended recording
nothing over the run that took over, and papers never carried twice. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd import store
from digestd.db import session_scope
from digestd.models import Delivery, Dump, Paper
from tests.support.databases import engine_fixture  # noqa: F401  (the two backends)
from tests.test_postgres import postgres_url  # noqa: F401  (the PostgreSQL fixture)

NOW = datetime(2026, 3, 14, 7, 0, tzinfo=UTC)
HERE = "this-host:100"
THERE = "other-host:200"


def add_papers(session: Session, count: int) -> list[int]:
    dump = Dump(
        sha256="0" * 64,
        file_name="d.txt",
        dump_date=date(2026, 3, 14),
        ingested_at=NOW,
        paper_count=count,
        new_count=count,
    )
    session.add(dump)
    session.flush()
    assert dump.id is not None
    papers = [
        Paper(
            uid=f"t:paper{n}",
            title_key=f"paper{n}",
            title=f"Paper {n}",
            abstract="About models.",
            dump_id=dump.id,
            dump_date=dump.dump_date,
            first_seen=NOW,
            updated_at=NOW + timedelta(microseconds=n),
        )
        for n in range(count)
    ]
    session.add_all(papers)
    session.flush()
    return [p.id for p in papers if p.id is not None]


def plan(session: Session, subscriber_id: int, key: str, paper_ids: list[int]) -> int | None:
    row = store.PlannedRow(subscriber_id, key, f"<{key}.{subscriber_id}@x>", paper_ids, NOW)
    return store.add_planned(session, [row], now=NOW)[0]


def claim(session: Session, delivery_id: int, subscriber_id: int, ids: list[int], who: str) -> str:
    return store.claim_for_sending(
        session, delivery_id, subscriber_id=subscriber_id, paper_ids=ids, claimant=who
    )


@pytest.fixture
def reader(engine: Engine) -> tuple[int, list[int]]:
    with session_scope(engine) as session:
        subscriber = store.add_subscriber(session, "ada@example.org", queries=["model"], now=NOW)
        papers = add_papers(session, 4)
        assert subscriber.id is not None
        return subscriber.id, papers


def test_one_open_digest_per_subscriber(engine: Engine, reader: tuple[int, list[int]]) -> None:
    subscriber, papers = reader
    with session_scope(engine) as session:
        first = plan(session, subscriber, "2026-03-14", papers)
        # A second planner at the same moment, another key (a forced run): refused.
        assert plan(session, subscriber, "2026-03-14T070000", papers) is None
    assert first is not None
    with session_scope(engine) as session:
        assert claim(session, first, subscriber, papers, HERE) == "claimed"
        store.mark_sent(
            session,
            first,
            claimant=HERE,
            subscriber_id=subscriber,
            paper_ids=papers,
            reply="250 ok",
            now=NOW,
        )
    with session_scope(engine) as session:  # once it is over, the next may come
        assert plan(session, subscriber, "2026-03-15", papers[:1]) is not None


def test_a_claimed_digest_is_its_holders_until_the_lease_ends(
    engine: Engine, reader: tuple[int, list[int]]
) -> None:
    subscriber, papers = reader
    with session_scope(engine) as session:
        row = plan(session, subscriber, "2026-03-14", papers)
        assert row is not None
        assert claim(session, row, subscriber, papers, HERE) == "claimed"
    with session_scope(engine) as session:  # another process, while the holder lives
        assert claim(session, row, subscriber, papers, THERE) == "taken"
        with pytest.raises(store.LostClaim):
            store.mark_retry(session, row, claimant=THERE, reply="451", at=NOW)
    with session_scope(engine) as session:  # the holder's lease ends: it is taken over
        session.execute(
            update(Delivery.__table__).values(lease_until=datetime(2000, 1, 1))  # type: ignore[attr-defined]
        )
    with session_scope(engine) as session:
        assert claim(session, row, subscriber, papers, THERE) == "resumed"
    # The late holder records nothing over it.
    with session_scope(engine) as session, pytest.raises(store.LostClaim):
        store.mark_sent(
            session,
            row,
            claimant=HERE,
            subscriber_id=subscriber,
            paper_ids=papers,
            reply="250 late",
            now=NOW,
        )
    with session_scope(engine) as session:
        store.mark_sent(
            session,
            row,
            claimant=THERE,
            subscriber_id=subscriber,
            paper_ids=papers,
            reply="250 ok",
            now=NOW,
        )
        done = session.get(Delivery, row)
        assert done is not None
        assert (done.status, done.reply, done.interrupted, done.attempts) == (
            "sent",
            "250 ok",
            1,
            2,
        )


def test_a_digest_whose_papers_went_out_in_another_is_not_sent(
    engine: Engine, reader: tuple[int, list[int]]
) -> None:
    subscriber, papers = reader
    with session_scope(engine) as session:
        first = plan(session, subscriber, "2026-03-14", papers[:2])
        assert first is not None and claim(session, first, subscriber, papers[:2], HERE)
        store.mark_sent(
            session,
            first,
            claimant=HERE,
            subscriber_id=subscriber,
            paper_ids=papers[:2],
            reply="250 ok",
            now=NOW,
        )
    # Planned by a run that read the sent papers before the first digest was recorded.
    with session_scope(engine) as session:
        second = plan(session, subscriber, "2026-03-14T070001", papers[:2])
        assert second is not None
        assert claim(session, second, subscriber, papers[:2], THERE) == "duplicate"
        row = session.get(Delivery, second)
        assert row is not None and row.status == "empty"
    # One that carries a paper not sent yet still goes: a repeat is better than a loss.
    with session_scope(engine) as session:
        third = plan(session, subscriber, "2026-03-14T070002", papers[1:3])
        assert third is not None
        assert claim(session, third, subscriber, papers[1:3], THERE) == "claimed"


def test_a_process_of_this_machine_that_ended_leaves_its_digests_at_once(
    engine: Engine, reader: tuple[int, list[int]]
) -> None:
    import socket

    subscriber, papers = reader
    gone = f"{socket.gethostname()[:80]}:{2**22 + 12345}"  # no such process
    assert store.holder_is_gone(gone)
    assert not store.holder_is_gone(f"{socket.gethostname()[:80]}:1")  # init lives
    assert not store.holder_is_gone(THERE)  # elsewhere: only its lease tells
    with session_scope(engine) as session:
        row = plan(session, subscriber, "2026-03-14", papers)
        assert row is not None and claim(session, row, subscriber, papers, gone) == "claimed"
    with session_scope(engine) as session:
        assert claim(session, row, subscriber, papers, HERE) == "resumed"
