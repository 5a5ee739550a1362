"""Subscribers who serve themselves: sign-up with double opt-in, preferences, unsubscribing.

Every change here is reached through a signed link or a form; none of them tells the caller
whether an address was subscribed before (the web pages say the same thing either way).

A web sign-up is a request (SignUpRequest) holding the preferences it asked for; the link in its
confirmation mail names it, and confirming applies exactly those preferences. Anyone can type
anyone's address into the form, so a sign-up never changes what an earlier one's link does, nor
a confirmed subscriber's preferences. Unsubscribing withdraws every open request: no link mailed
before it subscribes the address again; only a new sign-up, confirmed from its own mail, does.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from digestd.errors import InputError
from digestd.models import Delivery, Follow, Profile, SignUpRequest, Subscriber, Topic
from digestd.schedule import Schedule
from digestd.store.bounces import suppress
from digestd.store.deliveries import aware
from digestd.store.people import (
    add_subscriber,
    check_choice,
    find_subscriber,
    remove_subscriber,
    topic_by_slug,
)
from digestd.validation import DIGEST_ORDERS, LANGUAGES, check_queries, normalize_email

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
    revised_papers: bool = False  # a paper sent before comes again when a new version appears
    language: str = "en"  # of their mails and pages
    digest_order: str = "relevance"  # how their digest is ordered


@dataclass(frozen=True)
class SignUp:
    """The outcome of a sign-up: whom it concerns, which mail to send them, if any, and the
    request its confirmation link names."""

    subscriber: Subscriber | None
    mail: str | None  # "confirm" (a new or pending sign-up), "already" (confirmed), or None
    nonce: str | None = None  # with "confirm": the SignUpRequest the link confirms


@dataclass(frozen=True)
class Confirmation:
    """A confirmed sign-up: the subscriber, and the preferences that were applied (the
    request's, without topics removed since)."""

    subscriber: Subscriber
    preferences: Preferences


def check_preferences(preferences: Preferences) -> None:
    """Refuse preferences that cannot be stored, naming the field that is wrong."""
    Schedule.of(preferences).checked()
    check_choice("language", preferences.language, LANGUAGES)
    check_choice("digest order", preferences.digest_order, DIGEST_ORDERS)
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

    A new address becomes a pending subscriber with these preferences, and a request for them.
    A pending address, or one that unsubscribed, gets a request of its own and nothing else
    changes until its link is confirmed. A confirmed subscriber's preferences are never changed
    from the open form: they get a mail with their preference link instead. Someone suppressed
    after bounces or a complaint is not mailed. At most one mail goes to an address per
    ``resend_after``; a sign-up inside that window records nothing.
    """
    address = normalize_email(email)
    check_preferences(preferences)
    for slug in preferences.topic_slugs:
        topic_by_slug(session, slug)
    subscriber = find_subscriber(session, address)
    if subscriber is None:
        subscriber = add_subscriber(
            session,
            address,
            queries=[q for q in preferences.queries if q.strip()],
            topic_slugs=list(preferences.topic_slugs),
            frequency=preferences.frequency,
            timezone=preferences.timezone,
            send_hour=preferences.send_hour,
            weekday=preferences.weekday,
            revised_papers=preferences.revised_papers,
            language=preferences.language,
            digest_order=preferences.digest_order,
            now=now,
            confirmed=False,
        )
        subscriber.confirmation_sent_at = now
        return SignUp(subscriber, "confirm", _add_request(session, subscriber, preferences, now))
    if subscriber.suppressed_at is not None and not unsubscribed_themselves(subscriber):
        return SignUp(subscriber, None)
    sent = subscriber.confirmation_sent_at
    if sent is not None and aware(sent) > now - resend_after:
        return SignUp(subscriber, None)
    subscriber.confirmation_sent_at = now
    session.add(subscriber)
    if subscriber.confirmed_at is not None and subscriber.suppressed_at is None:
        return SignUp(subscriber, "already")
    return SignUp(subscriber, "confirm", _add_request(session, subscriber, preferences, now))


def unsubscribed_themselves(subscriber: Subscriber) -> bool:
    """Whether the subscriber is suppressed because they unsubscribed (not for bounces or a
    complaint: those only an operator lifts)."""
    reason = subscriber.suppressed_reason
    return subscriber.suppressed_at is not None and reason.startswith(UNSUBSCRIBED)


def confirm(
    session: Session,
    subscriber_id: int,
    nonce: str | None,
    *,
    now: datetime,
    valid_for: timedelta,
) -> Confirmation | None:
    """Confirm the sign-up request ``nonce`` names, made less than ``valid_for`` ago: apply
    its preferences, confirm the subscriber (lifting their own unsubscribe) and delete the
    request. None, changing nothing, when there is no such open request (a link that names
    none confirms nothing) or the subscriber is suppressed for bounces or a complaint."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if subscriber.suppressed_at is not None and not unsubscribed_themselves(subscriber):
        return None  # bounced or complained: an operator's decision
    if nonce is None:
        return None
    request = session.exec(
        select(SignUpRequest).where(
            SignUpRequest.nonce == nonce, SignUpRequest.subscriber_id == subscriber_id
        )
    ).first()
    if request is None or aware(request.created_at) <= now - valid_for:
        return None
    wanted = request_preferences(request)
    # Taken by deleting it: of two clicks at once, only the one whose delete found it applies.
    taken = session.execute(delete(SignUpRequest).where(col(SignUpRequest.id) == request.id))
    if getattr(taken, "rowcount", 1) != 1:
        return None
    existing = {topic.slug for topic in session.exec(select(Topic)).all()}
    applied = Preferences(
        queries=wanted.queries,
        topic_slugs=[slug for slug in wanted.topic_slugs if slug in existing],
        frequency=wanted.frequency,
        timezone=wanted.timezone,
        send_hour=wanted.send_hour,
        weekday=wanted.weekday,
        revised_papers=wanted.revised_papers,
        language=wanted.language,
        digest_order=wanted.digest_order,
    )
    _replace_preferences(session, subscriber, applied)
    _start_digests(session, subscriber, now=now)
    return Confirmation(subscriber, applied)


def request_preferences(request: SignUpRequest) -> Preferences:
    """The preferences a sign-up request asked for."""
    return Preferences(
        queries=[line for line in request.queries.split("\n") if line],
        topic_slugs=[slug for slug in request.topics.split(",") if slug],
        frequency=request.frequency,
        timezone=request.timezone,
        send_hour=request.send_hour,
        weekday=request.weekday,
        revised_papers=request.revised_papers,
        language=request.language,
        digest_order=request.digest_order,
    )


def request_language(session: Session, subscriber_id: int, nonce: str | None) -> str | None:
    """The language the sign-up request ``nonce`` of a subscriber asked for; None if there is
    no such request."""
    if nonce is None:
        return None
    found = session.exec(
        select(SignUpRequest.language).where(
            SignUpRequest.nonce == nonce, SignUpRequest.subscriber_id == subscriber_id
        )
    ).first()
    return found


def withdraw_sign_ups(session: Session, subscriber_id: int) -> int:
    """Delete every open sign-up request of a subscriber, so no confirmation link mailed so far
    works; how many there were."""
    result = session.execute(
        delete(SignUpRequest).where(col(SignUpRequest.subscriber_id) == subscriber_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def unsubscribe(session: Session, subscriber_id: int, *, how: str, now: datetime) -> bool:
    """Stop mailing a subscriber at their own request (``how`` says by which link or mail),
    and withdraw their open sign-ups: no confirmation link mailed before now works. Whether
    this stopped their mail (False when it was stopped already, or there is no such one)."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    withdraw_sign_ups(session, subscriber_id)
    if subscriber.suppressed_at is not None:
        return False
    suppress(session, subscriber, reason=f"{UNSUBSCRIBED} ({how})", now=now)
    return True


@dataclass(frozen=True)
class PurgedSignUps:
    """What ``purge_unconfirmed`` deleted: how many expired sign-up requests, and the addresses
    of the subscribers who never confirmed."""

    requests: int
    subscribers: list[str]


def purge_unconfirmed(session: Session, *, before: datetime) -> PurgedSignUps:
    """Delete the sign-up requests made before ``before`` (their links have expired), and the
    subscribers who never confirmed and were last mailed a link before then. Nobody who ever
    confirmed is touched, whatever they did since."""
    expired = session.execute(delete(SignUpRequest).where(col(SignUpRequest.created_at) < before))
    requests = int(expired.rowcount)  # type: ignore[attr-defined]
    ever_mailed = select(Delivery.subscriber_id).where(Delivery.subscriber_id == Subscriber.id)
    waiting = select(SignUpRequest.subscriber_id).where(
        SignUpRequest.subscriber_id == Subscriber.id
    )
    query = select(Subscriber).where(
        col(Subscriber.confirmed_at).is_(None),
        col(Subscriber.confirmation_sent_at).is_not(None),
        col(Subscriber.confirmation_sent_at) < before,
        # A digest went out, so they confirmed once (before a version that kept confirmed_at
        # when they came back); an open request means a newer link is still good.
        ~ever_mailed.exists(),
        ~waiting.exists(),
    )
    removed = []
    for subscriber in session.exec(query).all():
        removed.append(subscriber.email)
        remove_subscriber(session, subscriber.email)
    return PurgedSignUps(requests=requests, subscribers=removed)


def set_preferences(session: Session, subscriber: Subscriber, preferences: Preferences) -> None:
    """Replace a subscriber's queries, topics and schedule with ``preferences``."""
    check_preferences(preferences)
    _replace_preferences(session, subscriber, preferences)


def _replace_preferences(
    session: Session, subscriber: Subscriber, preferences: Preferences
) -> None:
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
    subscriber.revised_papers = preferences.revised_papers
    subscriber.language = preferences.language
    subscriber.digest_order = preferences.digest_order
    subscriber.active = not preferences.paused
    session.add(subscriber)


def _add_request(
    session: Session, subscriber: Subscriber, preferences: Preferences, now: datetime
) -> str:
    """Record a sign-up request for ``preferences`` (already checked); its nonce."""
    assert subscriber.id is not None
    queries = list(dict.fromkeys(check_queries([q for q in preferences.queries if q.strip()])))
    if any(len(query.splitlines()) > 1 for query in queries):
        raise InputError("a query is one line: write each query on a line of its own")
    nonce = secrets.token_hex(16)
    session.add(
        SignUpRequest(
            subscriber_id=subscriber.id,
            nonce=nonce,
            queries="\n".join(queries),
            topics=",".join(dict.fromkeys(preferences.topic_slugs)),
            frequency=preferences.frequency,
            send_hour=preferences.send_hour,
            timezone=preferences.timezone,
            weekday=preferences.weekday,
            revised_papers=preferences.revised_papers,
            language=preferences.language,
            digest_order=preferences.digest_order,
            created_at=now,
        )
    )
    return nonce


def _start_digests(session: Session, subscriber: Subscriber, *, now: datetime) -> None:
    """Mark a subscriber confirmed now and receiving digests (lifting their own unsubscribe)."""
    if subscriber.confirmed_at is None or subscriber.suppressed_at is not None:
        subscriber.created_at = now  # their first digest (again) reaches back from here
    subscriber.suppressed_at = None
    subscriber.suppressed_reason = ""
    subscriber.confirmed_at = now
    subscriber.active = True
    session.add(subscriber)
