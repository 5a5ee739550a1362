"""Queries on deliveries: what went out to whom, so nothing is sent twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from digestd.models import Delivery, SentPaper


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


COMPLETED = ("sent", "empty")  # the digest of that day is done: mailed, or nothing was new
FAILED = ("failed", "error")  # refused by the server or not buildable: to be tried again


def last_digest_keys(session: Session) -> dict[int, str]:
    """For each subscriber, the key (local date) of their newest completed digest: sent, or
    found nothing new. A refused or failed one does not count, so it is tried again."""
    rows = session.exec(
        select(Delivery.subscriber_id, func.max(Delivery.digest_key))
        .where(col(Delivery.status).in_(COMPLETED))
        .group_by(col(Delivery.subscriber_id))
    ).all()
    return dict(rows)


def last_completed_at(session: Session) -> dict[int, datetime]:
    """For each subscriber, when their newest completed digest was recorded."""
    return _newest(session, COMPLETED)


def last_failed_at(session: Session) -> dict[int, datetime]:
    """For each subscriber, when their newest refused or failed digest was recorded."""
    return _newest(session, FAILED)


def _newest(session: Session, statuses: tuple[str, ...]) -> dict[int, datetime]:
    rows = session.exec(
        select(Delivery.subscriber_id, func.max(Delivery.created_at))
        .where(col(Delivery.status).in_(statuses))
        .group_by(col(Delivery.subscriber_id))
    ).all()
    return {subscriber_id: _aware(at) for subscriber_id, at in rows}


def _aware(at: datetime) -> datetime:
    # An aggregate bypasses the column type, so SQLite hands back a naive UTC time.
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


_DELIVERY_TABLE = Delivery.__table__  # type: ignore[attr-defined]
_INSERT_DELIVERY = insert(_DELIVERY_TABLE).returning(_DELIVERY_TABLE.c.id)


def record_delivery(
    session: Session,
    *,
    subscriber_id: int,
    digest_key: str,
    status: str,
    message_id: str,
    paper_ids: Sequence[int],
    reply: str,
    now: datetime,
) -> int:
    """Record one digest's outcome; a sent digest marks its papers as sent to the subscriber.
    Returns the delivery's id."""
    # Core statements, not ORM objects: a run records one delivery per digest, and a digest
    # lists dozens of papers.
    delivery_id: int = session.execute(
        _INSERT_DELIVERY,
        {
            "subscriber_id": subscriber_id,
            "digest_key": digest_key,
            "status": status,
            "message_id": message_id,
            "paper_count": len(paper_ids),
            "reply": reply,
            "created_at": now,
        },
    ).scalar_one()
    if status == "sent" and paper_ids:
        connection = session.connection()
        marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        connection.exec_driver_sql(
            "INSERT INTO sent_paper (subscriber_id, paper_id, delivery_id)"
            f" VALUES ({marker}, {marker}, {marker})",
            [(subscriber_id, paper_id, delivery_id) for paper_id in paper_ids],
        )
    return delivery_id


def deliveries_of(session: Session, subscriber_id: int, *, limit: int = 10) -> list[Delivery]:
    """A subscriber's newest deliveries."""
    query = (
        select(Delivery)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(col(Delivery.id).desc())
        .limit(limit)
    )
    return list(session.exec(query).all())
