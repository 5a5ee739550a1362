"""Bounces and complaints, and the suppression they lead to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from digestd.errors import InputError
from digestd.models import Bounce, Delivery, Subscriber
from digestd.store.deliveries import cancel_open
from digestd.store.people import subscriber_by_email

# "refused": a permanent refusal that is not the recipient's fault; it never counts against them.
KINDS = ("hard", "soft", "complaint", "refused")


def record_bounce(
    session: Session,
    *,
    subscriber_id: int,
    kind: str,
    reason: str,
    source: str,
    now: datetime,
    hard_limit: int,
    status: str = "",
    delivery_id: int | None = None,
    report_key: str | None = None,
    may_suppress: bool = True,
) -> str | None:
    """Record a bounce or complaint; suppress the subscriber after ``hard_limit`` hard bounces
    or any complaint (unless not ``may_suppress``); a soft or "refused" one never suppresses.
    Returns the suppression reason when this bounce suppressed them, else None. A report
    already recorded (same ``report_key``) records nothing."""
    if kind not in KINDS:
        raise ValueError(f"unknown bounce kind {kind!r}")
    if (
        report_key is not None
        and session.exec(select(Bounce.id).where(Bounce.report_key == report_key)).first()
    ):
        return None
    session.add(
        Bounce(
            subscriber_id=subscriber_id,
            delivery_id=delivery_id,
            kind=kind,
            status=status[:16],
            reason=reason[:1000],
            source=source,
            report_key=report_key,
            created_at=now,
        )
    )
    session.flush()
    subscriber = session.get(Subscriber, subscriber_id)
    if not may_suppress or subscriber is None or subscriber.suppressed_at is not None:
        return None
    if kind == "complaint":
        why = f"complaint: {reason}"
    elif kind == "hard" and hard_bounce_count(session, subscriber_id) >= hard_limit:
        why = f"hard bounce: {reason}"
    else:
        return None
    suppress(session, subscriber, reason=why[:500], now=now)
    return subscriber.suppressed_reason


def bounce_report_known(session: Session, report_key: str) -> bool:
    """Whether a report with this key was recorded already."""
    return (
        session.exec(select(Bounce.id).where(Bounce.report_key == report_key)).first() is not None
    )


def hard_bounce_count(session: Session, subscriber_id: int) -> int:
    """How many hard bounces a subscriber has had since their suppression was last lifted."""
    subscriber = session.get(Subscriber, subscriber_id)
    query = select(func.count()).where(Bounce.subscriber_id == subscriber_id, Bounce.kind == "hard")
    if subscriber is not None and subscriber.lifted_at is not None:
        query = query.where(Bounce.created_at > subscriber.lifted_at)
    return int(session.exec(query).one())


def suppress(session: Session, subscriber: Subscriber, *, reason: str, now: datetime) -> None:
    """Stop mailing a subscriber, saying why; their open digests are failed."""
    subscriber.suppressed_at = now
    subscriber.suppressed_reason = reason
    session.add(subscriber)
    assert subscriber.id is not None
    cancel_open(session, subscriber.id, reason=f"subscriber suppressed: {reason}"[:500])


def lift_suppression(session: Session, email: str, *, now: datetime) -> Subscriber:
    """Mail a suppressed subscriber again (an operator's decision); earlier hard bounces no
    longer count towards the next suppression."""
    subscriber = subscriber_by_email(session, email)
    if subscriber.suppressed_at is None:
        raise InputError(f"subscriber {email}: is not suppressed")
    subscriber.suppressed_at = None
    subscriber.suppressed_reason = ""
    subscriber.lifted_at = now
    session.add(subscriber)
    return subscriber


def bounces_of(session: Session, subscriber_id: int, *, limit: int = 10) -> list[Bounce]:
    """A subscriber's newest bounces and complaints."""
    query = (
        select(Bounce)
        .where(Bounce.subscriber_id == subscriber_id)
        .order_by(col(Bounce.id).desc())
        .limit(limit)
    )
    return list(session.exec(query).all())


def delivery_by_message_id(session: Session, message_id: str) -> Delivery | None:
    """The outbox row whose message carried ``message_id`` (with its angle brackets)."""
    return session.exec(select(Delivery).where(Delivery.message_id == message_id)).first()


def suppressed_count(session: Session) -> int:
    """How many subscribers are suppressed."""
    query = select(func.count()).where(col(Subscriber.suppressed_at).is_not(None))
    return int(session.exec(query).one())
