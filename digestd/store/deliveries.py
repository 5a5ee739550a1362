"""Queries on deliveries: what went out to whom, so nothing is sent twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from digestd.models import Delivery, SentPaper


def sent_paper_ids(session: Session) -> dict[int, set[int]]:
    """For each subscriber, the ids of the papers already sent to them."""
    result: dict[int, set[int]] = defaultdict(set)
    for subscriber_id, paper_id in session.exec(
        select(SentPaper.subscriber_id, SentPaper.paper_id)
    ).all():
        result[subscriber_id].add(paper_id)
    return result


def last_digest_keys(session: Session) -> dict[int, str]:
    """For each subscriber, the key (local date) of the newest digest made for them, whatever
    its outcome: sent, refused, failed to build or found nothing new."""
    rows = session.exec(
        select(Delivery.subscriber_id, func.max(Delivery.digest_key)).group_by(
            col(Delivery.subscriber_id)
        )
    ).all()
    return dict(rows)


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
) -> Delivery:
    """Record one digest's outcome; a sent digest marks its papers as sent to the subscriber."""
    delivery = Delivery(
        subscriber_id=subscriber_id,
        digest_key=digest_key,
        status=status,
        message_id=message_id,
        paper_count=len(paper_ids),
        reply=reply,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    assert delivery.id is not None
    if status == "sent":
        for paper_id in paper_ids:
            session.add(
                SentPaper(subscriber_id=subscriber_id, paper_id=paper_id, delivery_id=delivery.id)
            )
    return delivery


def deliveries_of(session: Session, subscriber_id: int, *, limit: int = 10) -> list[Delivery]:
    """A subscriber's newest deliveries."""
    query = (
        select(Delivery)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(col(Delivery.id).desc())
        .limit(limit)
    )
    return list(session.exec(query).all())
