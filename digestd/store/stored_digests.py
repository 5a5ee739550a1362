"""What showing a digest again needs from the store: its outbox row, when the digest before it
was completed, and how many papers were stored in its window."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from digestd.models import Delivery, Paper
from digestd.store.deliveries import COMPLETED, aware

# The outbox statuses of a digest that carried papers (an empty one carried none).
CARRIED = ("planned", "sending", "retry", "sent", "failed")


def carried_delivery(session: Session, subscriber_id: int, digest_key: str) -> Delivery | None:
    """The subscriber's outbox row for ``digest_key`` if that digest carried papers."""
    query = select(Delivery).where(
        Delivery.subscriber_id == subscriber_id,
        Delivery.digest_key == digest_key,
        col(Delivery.status).in_(CARRIED),
    )
    return session.exec(query).first()


def completed_before(session: Session, subscriber_id: int, at: datetime) -> datetime | None:
    """When the subscriber's newest sent or empty digest planned before ``at`` was planned."""
    query = select(func.max(Delivery.created_at)).where(
        Delivery.subscriber_id == subscriber_id,
        col(Delivery.status).in_(COMPLETED),
        col(Delivery.created_at) < at,
    )
    found = session.exec(query).one()
    return aware(found) if found is not None else None


def stored_count(session: Session, since: datetime, until: datetime) -> int:
    """How many papers were first stored from ``since`` up to ``until`` (both included)."""
    query = (
        select(func.count())
        .select_from(Paper)
        .where(col(Paper.first_seen) >= since, col(Paper.first_seen) <= until)
    )
    return int(session.exec(query).one())
