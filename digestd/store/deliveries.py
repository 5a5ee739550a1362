"""The outbox: each digest's row from planned to sent or failed, and what went out to whom.

A digest is a row before it is a message: planned (papers chosen), then "sending" committed
before the server is contacted, then "sent" committed right after its 250, or "retry" with a
next attempt time, or "failed". The unique (subscriber, digest key) pair makes a second digest
for the same key impossible, whoever runs the send.
"""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Insert, and_, func, insert, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from digestd.errors import InputError
from digestd.models import Delivery, Paper, SentPaper, Subscriber

OPEN = ("planned", "sending", "retry")  # still to be sent by a run
DONE = ("sent", "empty", "failed")  # the digest of that key is over
COMPLETED = ("sent", "empty")  # mailed, or nothing was new: the next window starts here
STATUSES = (*OPEN, *DONE)
# How long a process holds a digest it is sending (one SMTP transaction: connect, send, reply,
# each bounded by [smtp] timeout) before another may decide it died and take the digest over.
LEASE_SECONDS = 600
FAULTS = ("recipient", "sender", "")  # whose fault a failed digest is; "": not a refusal

_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
_INSERT_DELIVERY = insert(_DELIVERY).returning(_DELIVERY.c.id)


class LostClaim(Exception):
    """A digest's row was not in the state this run left it in: another run changed it, so
    this run records nothing over it."""

    def __init__(self, delivery_id: int, wanted: str) -> None:
        super().__init__(f"delivery {delivery_id}: no longer this run's to mark {wanted}")
        self.delivery_id = delivery_id


@dataclass(frozen=True)
class PlannedRow:
    """A digest to put into the outbox as planned."""

    subscriber_id: int
    digest_key: str
    message_id: str
    paper_ids: Sequence[int]
    give_up_at: datetime


def sent_paper_ids(session: Session, *, from_paper_id: int = 0) -> dict[int, set[int]]:
    """For each subscriber, the ids of the papers already sent to them (only papers with an
    id of at least ``from_paper_id``: ids grow, so older papers can be left out)."""
    result: dict[int, set[int]] = defaultdict(set)
    query = select(SentPaper.subscriber_id, SentPaper.paper_id).where(
        SentPaper.paper_id >= from_paper_id
    )
    for subscriber_id, paper_id in session.exec(query).all():
        result[subscriber_id].add(paper_id)
    return result


def sent_versions(
    session: Session, subscriber_ids: Sequence[int], paper_ids: Sequence[int]
) -> dict[tuple[int, int], int | None]:
    """For each (subscriber, paper) of these that went out, the paper's version then."""
    result: dict[tuple[int, int], int | None] = {}
    for start in range(0, len(paper_ids), 500):
        query = select(SentPaper.subscriber_id, SentPaper.paper_id, SentPaper.version).where(
            col(SentPaper.subscriber_id).in_(subscriber_ids),
            col(SentPaper.paper_id).in_(paper_ids[start : start + 500]),
        )
        for subscriber_id, paper_id, version in session.exec(query).all():
            result[subscriber_id, paper_id] = version
    return result


def last_digest_keys(session: Session) -> dict[int, str]:
    """For each subscriber, the key (local date) of their newest finished digest: sent, empty
    or failed for good. Open digests are not finished: they are resumed, not planned again."""
    rows = session.exec(
        select(Delivery.subscriber_id, func.max(Delivery.digest_key))
        .where(col(Delivery.status).in_(DONE))
        .group_by(col(Delivery.subscriber_id))
    ).all()
    return dict(rows)


def last_completed_at(session: Session) -> dict[int, datetime]:
    """For each subscriber, when their newest sent or empty digest was planned."""
    rows = session.exec(
        select(Delivery.subscriber_id, func.max(Delivery.created_at))
        .where(col(Delivery.status).in_(COMPLETED))
        .group_by(col(Delivery.subscriber_id))
    ).all()
    return {subscriber_id: aware(at) for subscriber_id, at in rows}


def aware(at: datetime | str) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive times, or strings
    from aggregates)."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def open_deliveries(session: Session) -> dict[int, Delivery]:
    """Each subscriber's open digest (planned, sending or retry), the oldest if several."""
    rows = session.exec(
        select(Delivery).where(col(Delivery.status).in_(OPEN)).order_by(col(Delivery.id).desc())
    ).all()
    return {row.subscriber_id: row for row in rows}


def paper_id_list(delivery: Delivery) -> list[int]:
    """The planned papers of an outbox row, in their ranked order."""
    return [int(part) for part in delivery.paper_ids.split(",") if part]


def add_planned(session: Session, rows: Iterable[PlannedRow], *, now: datetime) -> list[int | None]:
    """Put digests into the outbox as planned; returns their ids, in order, None for a digest
    the database refused because another run holds an open digest of that subscriber (or
    one for that key): the digest is theirs, and this run leaves it."""
    statement = _insert_unless_taken(session)
    ids = []
    for row in rows:
        ids.append(
            session.execute(
                statement,
                {
                    "subscriber_id": row.subscriber_id,
                    "digest_key": row.digest_key,
                    "status": "planned",
                    "message_id": row.message_id,
                    "paper_count": len(row.paper_ids),
                    "paper_ids": ",".join(map(str, row.paper_ids)),
                    "reply": "",
                    "attempts": 0,
                    "interrupted": 0,
                    "created_at": now,
                    "give_up_at": row.give_up_at,
                },
            ).scalar_one_or_none()
        )
    return ids


def _insert_unless_taken(session: Session) -> Insert:
    """The outbox insert that skips a row a unique index refuses (the subscriber's open
    digest, or the key's digest), as SQLite and PostgreSQL both write it."""
    dialect = session.connection().dialect.name
    make = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement: Insert = make(_DELIVERY).on_conflict_do_nothing().returning(_DELIVERY.c.id)
    return statement


def claim_for_sending(
    session: Session,
    delivery_id: int,
    *,
    subscriber_id: int,
    paper_ids: Sequence[int],
    claimant: str,
) -> str:
    """Mark a digest "sending" for ``claimant`` (an attempt counted), holding it until
    LEASE_SECONDS from now by the database's clock, if it is still open and nobody else holds
    it, and none of its papers went out to the subscriber in another digest since it was
    planned. Returns "claimed" ("resumed" for a digest taken over from a process that died);
    "taken" when another process has it or it is over; or "duplicate" when another digest
    carried its papers first (it is then marked empty).

    A "sending" digest whose lease has ended, or whose holder was a process of this machine
    that has ended, was left by a process that died: it is taken over and counted as
    interrupted. The papers are checked in the same transaction as the claim:
    with the one-open-digest index, a digest planned while another was being sent is caught
    here, whatever the clocks of the machines say.
    """
    column = _DELIVERY.c
    ended = or_(column.lease_until.is_(None), column.lease_until < _database_time(session, 0))
    found = session.execute(
        select(column.status, column.claimed_by, ended).where(column.id == delivery_id)
    ).first()
    if found is None or found[0] not in OPEN:
        return "taken"
    status, holder, lease_ended = found
    # A digest left "sending" is taken over when its holder is gone: its lease ended, it was a
    # process of this machine that ended, or it is this very process (an earlier run of it
    # stopped, say on a full disk, before recording the digest).
    if status == "sending" and not (lease_ended or holder == claimant or holder_is_gone(holder)):
        return "taken"
    if paper_ids and _sent_elsewhere(session, delivery_id, subscriber_id, paper_ids):
        mark_empty(session, delivery_id, reply="its papers went out in another digest")
        return "duplicate"
    values: dict[str, Any] = {
        "status": "sending",
        "attempts": column.attempts + 1,
        "claimed_by": claimant,
        "lease_until": _database_time(session, LEASE_SECONDS),
    }
    if status == "sending":
        values["interrupted"] = column.interrupted + 1
    # Compare-and-set: only if nobody claimed it since it was read.
    result = session.execute(
        update(_DELIVERY)
        .where(column.id == delivery_id, column.status == status, column.claimed_by == holder)
        .values(**values)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return "taken"
    return "resumed" if status == "sending" else "claimed"


def holder_is_gone(claimant: str) -> bool:
    """Whether the process named ``claimant`` ("host:pid") ran on this machine and has ended:
    its digests need not wait for their lease to end. A process elsewhere is never known to be
    gone (its lease says it)."""
    host, _, pid = claimant.rpartition(":")
    if host != socket.gethostname()[:80] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, but not ours to signal
        return False
    return False


def _free(session: Session) -> ColumnElement[bool]:
    """An open digest nobody holds: not "sending", or its holder's lease has ended."""
    column = _DELIVERY.c
    return and_(
        column.status.in_(OPEN),
        or_(
            column.status != "sending",
            column.lease_until.is_(None),
            column.lease_until < _database_time(session, 0),
        ),
    )


def _held_by(claimant: str) -> ColumnElement[bool]:
    """A digest ``claimant`` holds (being sent by it)."""
    return and_(_DELIVERY.c.status == "sending", _DELIVERY.c.claimed_by == claimant)


def _database_time(session: Session, seconds: int) -> ColumnElement[datetime]:
    """The database's time (naive UTC) ``seconds`` from now: every process sharing it agrees."""
    if session.connection().dialect.name == "postgresql":
        return func.timezone("utc", func.now()) + timedelta(seconds=seconds)
    return func.datetime("now", f"+{seconds} seconds")


def _sent_elsewhere(
    session: Session, delivery_id: int, subscriber_id: int, paper_ids: Sequence[int]
) -> bool:
    """Whether another digest already carried one of ``paper_ids`` to the subscriber in the
    version it has now (a newer version going out again is no repeat)."""
    query = (
        select(SentPaper.paper_id)
        .join(Paper, col(Paper.id) == SentPaper.paper_id)
        .where(
            SentPaper.subscriber_id == subscriber_id,
            col(SentPaper.paper_id).in_(paper_ids),
            SentPaper.delivery_id != delivery_id,
            func.coalesce(SentPaper.version, 0) >= func.coalesce(Paper.version, 0),
        )
        .limit(1)
    )
    return session.exec(query).first() is not None


def record_empty(session: Session, subscriber_id: int, digest_key: str, *, now: datetime) -> None:
    """Record that a subscriber's digest for ``digest_key`` found nothing new."""
    session.execute(
        _INSERT_DELIVERY,
        {
            "subscriber_id": subscriber_id,
            "digest_key": digest_key,
            "status": "empty",
            "message_id": "",
            "paper_count": 0,
            "paper_ids": "",
            "reply": "nothing new",
            "attempts": 0,
            "interrupted": 0,
            "created_at": now,
        },
    )


def mark_sent(
    session: Session,
    delivery_id: int,
    *,
    claimant: str,
    subscriber_id: int,
    paper_ids: Sequence[int],
    reply: str,
    now: datetime,
) -> None:
    """Mark a digest sent and its papers as sent to the subscriber (never sent again)."""
    result = session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, _held_by(claimant))
        .values(status="sent", reply=reply, sent_at=now, next_attempt_at=None, lease_until=None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LostClaim(delivery_id, "sent")
    if paper_ids:
        connection = session.connection()
        marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        # Each paper with its version now. A paper can already be marked when a failed digest
        # is re-queued after a later one (kept), or when a revised paper went out again (its
        # newer version is recorded).
        connection.exec_driver_sql(
            "INSERT INTO sent_paper (subscriber_id, paper_id, delivery_id, version)"
            f" SELECT {marker}, id, {marker}, version FROM paper WHERE id = {marker}"
            " ON CONFLICT (subscriber_id, paper_id) DO UPDATE"
            " SET version = excluded.version, delivery_id = excluded.delivery_id"
            " WHERE excluded.version > COALESCE(sent_paper.version, 0)",
            [(subscriber_id, delivery_id, paper_id) for paper_id in paper_ids],
        )


def mark_retry(
    session: Session, delivery_id: int, *, claimant: str, reply: str, at: datetime
) -> None:
    """Mark a digest ``claimant`` holds to be tried again at ``at`` after a temporary failure."""
    result = session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, _held_by(claimant))
        .values(status="retry", reply=reply, next_attempt_at=at, lease_until=None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LostClaim(delivery_id, "retry")


def mark_failed(
    session: Session,
    delivery_id: int,
    *,
    reply: str,
    fault: str = "",
    claimant: str | None = None,
) -> None:
    """Mark a digest failed for good (refused, given up, or not buildable): one ``claimant``
    holds, or (None) one nobody holds. ``fault`` says whose fault a refusal was: "recipient" or
    "sender" (see Delivery.fault), "" for others."""
    if fault not in FAULTS:
        raise ValueError(f"unknown delivery fault {fault!r}")
    held = _held_by(claimant) if claimant is not None else _free(session)
    result = session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, held)
        .values(status="failed", reply=reply, fault=fault, next_attempt_at=None, lease_until=None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LostClaim(delivery_id, "failed")


def mark_bounced(session: Session, delivery_id: int, *, reply: str, fault: str) -> bool:
    """A digest the server took, then reported undeliverable for good (a bounce report): it
    failed after all, ``fault`` says whose fault. Only a digest recorded as sent changes;
    whether it did."""
    if fault not in FAULTS or not fault:
        raise ValueError(f"unknown delivery fault {fault!r}")
    result = session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, _DELIVERY.c.status == "sent")
        .values(status="failed", reply=reply[:1000], fault=fault)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_empty(session: Session, delivery_id: int, *, reply: str) -> None:
    """Mark an open digest over with nothing to send (its papers no longer match)."""
    session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, _DELIVERY.c.status.in_(OPEN))
        .values(status="empty", reply=reply, next_attempt_at=None)
    )


def cancel_open(session: Session, subscriber_id: int, *, reason: str) -> int:
    """Mark a subscriber's open digests failed (they were suppressed); returns how many."""
    result = session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.subscriber_id == subscriber_id, _DELIVERY.c.status.in_(OPEN))
        .values(status="failed", reply=reason, next_attempt_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def requeue(
    session: Session,
    *,
    delivery_id: int | None,
    now: datetime,
    give_up_at: datetime,
) -> list[int]:
    """Put failed digests back to retry now (one by id, or every failed one when None); returns
    the ids re-queued. Digests of suppressed subscribers stay failed."""
    query = (
        select(Delivery, Subscriber)
        .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
        .where(Delivery.status == "failed")
    )
    if delivery_id is not None:
        found = session.get(Delivery, delivery_id)
        if found is None:
            raise InputError(f"delivery {delivery_id}: no such delivery")
        if found.status != "failed":
            raise InputError(f"delivery {delivery_id}: is {found.status}, only failed ones retry")
        query = query.where(Delivery.id == delivery_id)
    requeued = []
    for delivery, subscriber in session.exec(query).all():
        if subscriber.suppressed_at is not None:
            if delivery_id is not None:
                raise InputError(
                    f"delivery {delivery_id}: {subscriber.email} is suppressed "
                    f"({subscriber.suppressed_reason}); lift that first"
                )
            continue
        assert delivery.id is not None
        requeued.append(delivery.id)
    if requeued:
        session.execute(
            update(_DELIVERY)
            .where(_DELIVERY.c.id.in_(requeued))
            .values(status="retry", fault="", next_attempt_at=now, give_up_at=give_up_at)
        )
    return requeued


def deliveries_of(session: Session, subscriber_id: int, *, limit: int = 10) -> list[Delivery]:
    """A subscriber's newest deliveries."""
    query = (
        select(Delivery)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(col(Delivery.id).desc())
        .limit(limit)
    )
    return list(session.exec(query).all())


def list_deliveries(
    session: Session, *, status: str | None = None, since: datetime | None = None, limit: int = 100
) -> list[tuple[Delivery, str]]:
    """The newest outbox rows with their subscriber's address, optionally of one status and
    planned since a time."""
    query = select(Delivery, Subscriber.email).join(
        Subscriber, col(Subscriber.id) == Delivery.subscriber_id
    )
    if status is not None:
        if status not in STATUSES:
            raise InputError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
        query = query.where(Delivery.status == status)
    if since is not None:
        query = query.where(Delivery.created_at >= since)
    query = query.order_by(col(Delivery.id).desc()).limit(limit)
    return [(delivery, email) for delivery, email in session.exec(query).all()]


def delivery_counts(session: Session, *, since: datetime | None = None) -> dict[str, int]:
    """How many outbox rows are in each status (planned since ``since`` when given)."""
    query = select(Delivery.status, func.count()).group_by(col(Delivery.status))
    if since is not None:
        query = query.where(Delivery.created_at >= since)
    return {status: int(count) for status, count in session.exec(query).all()}


def failed_by_fault(session: Session, *, since: datetime | None = None) -> dict[str, int]:
    """How many failed digests are the recipient's fault, the sender's, or neither ("")
    (planned since ``since`` when given)."""
    query = (
        select(Delivery.fault, func.count())
        .where(Delivery.status == "failed")
        .group_by(col(Delivery.fault))
    )
    if since is not None:
        query = query.where(Delivery.created_at >= since)
    counts = dict.fromkeys(FAULTS, 0)
    for fault, count in session.exec(query).all():
        counts[fault if fault in counts else ""] += int(count)
    return counts


def resent_count(session: Session, *, since: datetime | None = None) -> int:
    """How many times digests were sent again after a crash left them "sending"."""
    query = select(func.coalesce(func.sum(Delivery.interrupted), 0))
    if since is not None:
        query = query.where(Delivery.created_at >= since)
    return int(session.exec(query).one())


def sent_papers(
    session: Session, subscriber_id: int, *, limit: int
) -> list[tuple[Paper, datetime]]:
    """The newest ``limit`` papers recorded as sent to a subscriber, with when: newest digest
    first, each digest's papers in the order it ranked them."""
    sent_at = func.coalesce(Delivery.sent_at, Delivery.created_at)
    of_subscriber = select(SentPaper.delivery_id).where(SentPaper.subscriber_id == subscriber_id)
    # Every digest holds at least one paper, so the newest ``limit`` digests are enough.
    digests = session.exec(
        select(Delivery.id, sent_at, Delivery.paper_ids)
        .where(col(Delivery.id).in_(of_subscriber))
        .order_by(sent_at.desc(), col(Delivery.id).desc())
        .limit(limit)
    ).all()
    order = {delivery_id: n for n, (delivery_id, _, _) in enumerate(digests)}
    times = {delivery_id: aware(at) for delivery_id, at, _ in digests}
    ranks = {
        delivery_id: {int(p): r for r, p in enumerate(ids.split(",")) if p.isdigit()}
        for delivery_id, _, ids in digests
    }
    rows = session.exec(
        select(SentPaper.delivery_id, Paper)
        .join(Paper, col(Paper.id) == SentPaper.paper_id)
        .where(SentPaper.subscriber_id == subscriber_id, col(SentPaper.delivery_id).in_(order))
    ).all()

    def position(row: tuple[int, Paper]) -> tuple[int, int, int]:
        delivery_id, paper = row
        paper_id = paper.id or 0
        rank = ranks[delivery_id]
        return order[delivery_id], rank.get(paper_id, len(rank)), paper_id

    return [
        (paper, times[delivery_id]) for delivery_id, paper in sorted(rows, key=position)[:limit]
    ]
