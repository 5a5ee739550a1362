"""Subscribers who serve themselves: sign-up with double opt-in, preferences, unsubscribing.

Every change here is reached through a signed link or a form; none of them tells the caller
whether an address was subscribed before (the web pages say the same thing either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from digestd.errors import InputError
from digestd.models import Follow, Profile, Subscriber
from digestd.store.bounces import suppress
from digestd.store.deliveries import aware
from digestd.store.people import (
    add_subscriber,
    check_queries,
    check_schedule,
    find_subscriber,
    normalize_email,
    remove_subscriber,
    topic_by_slug,
)

UNSUBSCRIBED = "unsubscribed"  # the start of the suppression reason a subscriber chose


@dataclass(frozen=True)
class Preferences:
    """What a subscriber chooses on the sign-up form or the preference page."""

    queries: Sequence[str]
    topic_slugs: Sequence[str]
    frequency: str = "daily"
    timezone: str = "UTC"
    send_hour: int = 7
    weekday: str = "mon"
    paused: bool = False


@dataclass(frozen=True)
class SignUp:
    """The outcome of a sign-up: whom it concerns and which mail to send them, if any."""

    subscriber: Subscriber | None
    mail: str | None  # "confirm" (a new or pending sign-up), "already" (confirmed), or None


def check_preferences(preferences: Preferences) -> None:
    """Refuse preferences that cannot be stored, naming the field that is wrong."""
    check_schedule(
        frequency=preferences.frequency,
        send_hour=preferences.send_hour,
        timezone=preferences.timezone,
        weekday=preferences.weekday,
    )
    if not [q for q in preferences.queries if q.strip()] and not preferences.topic_slugs:
        raise InputError("choose at least one topic or write keywords")
    check_queries([q for q in preferences.queries if q.strip()])


def sign_up(
    session: Session,
    email: str,
    preferences: Preferences,
    *,
    now: datetime,
    resend_after: timedelta,
) -> SignUp:
    """Record a web sign-up and say which mail it calls for.

    A new address becomes a pending subscriber with these preferences. A pending one, or one
    who unsubscribed, takes the new preferences and waits for confirmation again. A confirmed
    subscriber's preferences are never changed from the open form: they get a mail with their
    preference link instead. Someone suppressed after bounces or a complaint is not mailed. At
    most one mail goes to an address per ``resend_after``.
    """
    address = normalize_email(email)
    check_preferences(preferences)
    topics = [topic_by_slug(session, slug) for slug in preferences.topic_slugs]
    subscriber = find_subscriber(session, address)
    if subscriber is None:
        subscriber = add_subscriber(
            session,
            address,
            queries=[q for q in preferences.queries if q.strip()],
            topic_slugs=[t.slug for t in topics],
            frequency=preferences.frequency,
            timezone=preferences.timezone,
            send_hour=preferences.send_hour,
            weekday=preferences.weekday,
            now=now,
            confirmed=False,
        )
        subscriber.confirmation_sent_at = now
        return SignUp(subscriber, "confirm")
    reason = subscriber.suppressed_reason
    if subscriber.suppressed_at is not None and not reason.startswith(UNSUBSCRIBED):
        return SignUp(subscriber, None)
    returning = subscriber.suppressed_at is not None
    mail = "confirm" if subscriber.confirmed_at is None or returning else "already"
    if mail == "confirm":
        if returning:
            subscriber.confirmed_at = None  # they opted out: they opt in again
        set_preferences(session, subscriber, preferences)
    sent = subscriber.confirmation_sent_at
    if sent is not None and aware(sent) > now - resend_after:
        return SignUp(subscriber, None)
    subscriber.confirmation_sent_at = now
    session.add(subscriber)
    return SignUp(subscriber, mail)


def confirm(session: Session, subscriber_id: int, *, now: datetime) -> Subscriber | None:
    """Confirm a pending sign-up (and lift the subscriber's own unsubscribe); None if there
    is no such subscriber. Confirming twice changes nothing."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if subscriber.suppressed_at is not None:
        if not subscriber.suppressed_reason.startswith(UNSUBSCRIBED):
            return subscriber  # bounced or complained: an operator's decision
        subscriber.suppressed_at = None
        subscriber.suppressed_reason = ""
    if subscriber.confirmed_at is None:
        subscriber.confirmed_at = now
        subscriber.created_at = now  # the first digest reaches back from here
    session.add(subscriber)
    return subscriber


def unsubscribe(session: Session, subscriber_id: int, *, how: str, now: datetime) -> None:
    """Stop mailing a subscriber at their own request (``how`` says by which link)."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.suppressed_at is not None:
        return
    suppress(session, subscriber, reason=f"{UNSUBSCRIBED} ({how})", now=now)


def purge_unconfirmed(session: Session, *, before: datetime) -> list[str]:
    """Delete the sign-ups never confirmed whose confirmation mail went out before ``before``
    (their link has expired); returns their addresses. Nobody confirmed is touched."""
    query = select(Subscriber).where(
        col(Subscriber.confirmed_at).is_(None),
        col(Subscriber.confirmation_sent_at).is_not(None),
        col(Subscriber.confirmation_sent_at) < before,
    )
    removed = []
    for subscriber in session.exec(query).all():
        removed.append(subscriber.email)
        remove_subscriber(session, subscriber.email)
    return removed


def set_preferences(session: Session, subscriber: Subscriber, preferences: Preferences) -> None:
    """Replace a subscriber's queries, topics and schedule with ``preferences``."""
    check_preferences(preferences)
    assert subscriber.id is not None
    queries = list(dict.fromkeys(check_queries([q for q in preferences.queries if q.strip()])))
    topics = {topic_by_slug(session, slug).id for slug in preferences.topic_slugs}
    session.execute(delete(Profile).where(col(Profile.subscriber_id) == subscriber.id))
    session.execute(delete(Follow).where(col(Follow.subscriber_id) == subscriber.id))
    for query in queries:
        session.add(Profile(subscriber_id=subscriber.id, query=query))
    for topic_id in topics:
        assert topic_id is not None
        session.add(Follow(subscriber_id=subscriber.id, topic_id=topic_id))
    subscriber.frequency = preferences.frequency
    subscriber.timezone = preferences.timezone
    subscriber.send_hour = preferences.send_hour
    subscriber.weekday = preferences.weekday
    subscriber.active = not preferences.paused
    session.add(subscriber)
