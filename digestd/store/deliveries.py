"""The outbox: each digest's row from planned to sent or failed, and what went out to whom.

A digest is a row before it is a message: planned (papers chosen), then "sending" committed
before the server is contacted, then "sent" committed right after its 250, or "retry" with a
next attempt time, or "failed". The unique (subscriber, digest key) pair makes a second digest
for the same key impossible, whoever runs the send.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, update
from sqlmodel import Session, col, select

from digestd.errors import InputError
from digestd.models import Delivery, Paper, SentPaper, Subscriber

OPEN = ("planned", "sending", "retry")  # still to be sent by a run
DONE = ("sent", "empty", "failed")  # the digest of that key is over
COMPLETED = ("sent", "empty")  # mailed, or nothing was new: the next window starts here
STATUSES = (*OPEN, *DONE)
FAULTS = ("recipient", "sender", "")  # whose fault a failed digest is; "": not a refusal

_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
_INSERT_DELIVERY = insert(_DELIVERY).returning(_DELIVERY.c.id)


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
