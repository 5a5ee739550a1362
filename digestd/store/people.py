"""Queries on subscribers, their queries and topics; values are checked by digestd.validation."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from digestd.errors import InputError, NotFoundError
from digestd.models import Delivery, Follow, Profile, SentPaper, Subscriber, Topic
from digestd.schedule import Schedule
from digestd.store.trending import refuse_reserved
from digestd.validation import DIGEST_ORDERS, LANGUAGES, check_queries, normalize_email

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_PAUSE_DAYS = 365


def check_choice(field: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else InputError naming ``field``."""
    if value not in allowed:
        raise InputError(f"{field} {value!r} must be one of {', '.join(allowed)}")
    return value


def local_today(subscriber: Subscriber, now: datetime) -> date:
    """The date it is at ``now`` where the subscriber lives."""
    return now.astimezone(ZoneInfo(subscriber.timezone)).date()


def paused_on(subscriber: Subscriber, now: datetime) -> bool:
    """Whether a pause of some days (``paused_until``) still holds at ``now``, their time."""
    until = subscriber.paused_until
    return until is not None and until > local_today(subscriber, now)


def pause_for_days(subscriber: Subscriber, days: int, *, now: datetime) -> date | None:
    """Pause a subscriber's digests for ``days`` days from their today (0 resumes them at
    once); the date digests start again, None when not paused."""
    if not 0 <= days <= MAX_PAUSE_DAYS:
        raise InputError(f"pause days {days} must be 0 (resume) to {MAX_PAUSE_DAYS}")
    subscriber.paused_until = local_today(subscriber, now) + timedelta(days=days) if days else None
    return subscriber.paused_until


def add_subscriber(
    session: Session,
    email: str,
    *,
    name: str = "",
    queries: Sequence[str] = (),
    topic_slugs: Sequence[str] = (),
    frequency: str = "daily",
    timezone: str = "UTC",
    send_hour: int = 7,
    weekday: str = "mon",
    revised_papers: bool = False,
    language: str = "en",
    digest_order: str = "relevance",
    now: datetime,
    confirmed: bool = True,
) -> Subscriber:
    """Create a subscriber with their queries and followed topics, refusing bad values.

    An operator's subscriber is confirmed at once; a web sign-up (``confirmed=False``) waits
    for the click in its confirmation mail and gets no digest before."""
    address = normalize_email(email)
    Schedule(frequency, send_hour, weekday, timezone).checked()
    check_choice("language", language, LANGUAGES)
    check_choice("digest order", digest_order, DIGEST_ORDERS)
    if not queries and not topic_slugs:
        raise InputError(f"subscriber {address} needs at least one --query or --topic")
    checked = check_queries(queries)
    topics = [topic_by_slug(session, slug) for slug in topic_slugs]
    if find_subscriber(session, address):
        raise InputError(f"subscriber {address} already exists")
    subscriber = Subscriber(
        email=address,
        name=name.strip(),
        timezone=timezone,
        frequency=frequency,
        send_hour=send_hour,
        weekday=weekday,
        revised_papers=revised_papers,
        language=language,
        digest_order=digest_order,
        active=True,
        created_at=now,
        confirmed_at=now if confirmed else None,
    )
    session.add(subscriber)
    session.flush()
    assert subscriber.id is not None
    for query in dict.fromkeys(checked):
        session.add(Profile(subscriber_id=subscriber.id, query=query))
    for topic in {t.id: t for t in topics}.values():
        assert topic.id is not None
        session.add(Follow(subscriber_id=subscriber.id, topic_id=topic.id))
    return subscriber


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address (compared without case), or None."""
    address = email.strip().lower()
    return session.exec(select(Subscriber).where(func.lower(Subscriber.email) == address)).first()


def update_subscriber(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    add_queries: Sequence[str] = (),
    remove_queries: Sequence[str] = (),
    follow: Sequence[str] = (),
    unfollow: Sequence[str] = (),
    frequency: str | None = None,
    timezone: str | None = None,
    send_hour: int | None = None,
    weekday: str | None = None,
    revised_papers: bool | None = None,
    language: str | None = None,
    digest_order: str | None = None,
    pause_days: int | None = None,
    now: datetime | None = None,
) -> Subscriber:
    """Change a subscriber's settings, queries and topics (refusing to leave them with
    neither); ``pause_days`` pauses them for that many days from ``now``, 0 resumes."""
    subscriber = subscriber_by_email(session, email)
    if language is not None:
        subscriber.language = check_choice("language", language, LANGUAGES)
    if digest_order is not None:
        subscriber.digest_order = check_choice("digest order", digest_order, DIGEST_ORDERS)
    if pause_days is not None:
        assert now is not None, "a pause counts from now"
        pause_for_days(subscriber, pause_days, now=now)
    assert subscriber.id is not None
    Schedule(
        frequency or subscriber.frequency,
        subscriber.send_hour if send_hour is None else send_hour,
        weekday or subscriber.weekday,
        timezone or subscriber.timezone,
    ).checked()
    subscriber.frequency = frequency or subscriber.frequency
    subscriber.send_hour = subscriber.send_hour if send_hour is None else send_hour
    subscriber.timezone = timezone or subscriber.timezone
    subscriber.weekday = weekday or subscriber.weekday
    if revised_papers is not None:
        subscriber.revised_papers = revised_papers
    if name is not None:
        subscriber.name = name.strip()
    current = _change_queries(session, subscriber, add=add_queries, remove=remove_queries)
    followed = _change_follows(session, subscriber, follow=follow, unfollow=unfollow)
    if not current and not followed:
        raise InputError(f"subscriber {subscriber.email} would have no query and no topic left")
    session.add(subscriber)
    return subscriber


def _change_queries(
    session: Session, subscriber: Subscriber, *, add: Sequence[str], remove: Sequence[str]
) -> set[str]:
    """Remove and add a subscriber's queries; the queries they have then."""
    assert subscriber.id is not None
    current = set(queries_by_subscriber(session).get(subscriber.id, []))
    for query in remove:
        if query.strip() not in current:
            raise InputError(f"{subscriber.email} has no query {query!r}")
    session.execute(
        delete(Profile).where(
            col(Profile.subscriber_id) == subscriber.id,
            col(Profile.query).in_([q.strip() for q in remove]),
        )
    )
    for query in check_queries(add):
        if query not in current:
            session.add(Profile(subscriber_id=subscriber.id, query=query))
            current.add(query)
    return current - {q.strip() for q in remove}


def _change_follows(
    session: Session, subscriber: Subscriber, *, follow: Sequence[str], unfollow: Sequence[str]
) -> dict[str, Topic]:
    """Stop following and start following topics; the topics followed then, by slug."""
    assert subscriber.id is not None
    followed = {t.slug: t for t in topics_by_subscriber(session).get(subscriber.id, [])}
    for slug in unfollow:
        topic = followed.pop(slug, None)
        if topic is None:
            raise InputError(f"{subscriber.email} does not follow topic {slug!r}")
        session.execute(
            delete(Follow).where(
                col(Follow.subscriber_id) == subscriber.id, col(Follow.topic_id) == topic.id
            )
        )
    for slug in follow:
        if slug not in followed:
            topic = topic_by_slug(session, slug)
            assert topic.id is not None
            session.add(Follow(subscriber_id=subscriber.id, topic_id=topic.id))
            followed[slug] = topic
    return followed


def subscriber_by_email(session: Session, email: str) -> Subscriber:
    """The subscriber with this address, or NotFoundError."""
    found = find_subscriber(session, email)
    if found is None:
        raise NotFoundError(f"no subscriber {email!r}", hint="see digestd subscriber list")
    return found


def subscribers(session: Session, *, active_only: bool = False) -> list[Subscriber]:
    """All subscribers by address (only active ones if asked)."""
    query = select(Subscriber).order_by(col(Subscriber.email))
    if active_only:
        query = query.where(col(Subscriber.active).is_(True))
    return list(session.exec(query).all())


def remove_subscriber(session: Session, email: str) -> None:
    """Delete a subscriber and everything that belongs to them."""
    subscriber = subscriber_by_email(session, email)
    session.execute(delete(SentPaper).where(col(SentPaper.subscriber_id) == subscriber.id))
    session.execute(delete(Delivery).where(col(Delivery.subscriber_id) == subscriber.id))
    session.execute(delete(Follow).where(col(Follow.subscriber_id) == subscriber.id))
    session.execute(delete(Profile).where(col(Profile.subscriber_id) == subscriber.id))
    session.delete(subscriber)


def set_active(session: Session, email: str, active: bool) -> Subscriber:
    """Pause or resume a subscriber."""
    subscriber = subscriber_by_email(session, email)
    subscriber.active = active
    session.add(subscriber)
    return subscriber


def queries_by_subscriber(session: Session) -> dict[int, list[str]]:
    """Each subscriber's keyword queries."""
    result: dict[int, list[str]] = defaultdict(list)
    for profile in session.exec(select(Profile).order_by(col(Profile.id))).all():
        result[profile.subscriber_id].append(profile.query)
    return result


def queries_of(session: Session, subscriber_id: int) -> list[str]:
    """One subscriber's keyword queries, in the order they were added."""
    query = select(Profile.query).where(Profile.subscriber_id == subscriber_id)
    return list(session.exec(query.order_by(col(Profile.id))).all())


def topics_of(session: Session, subscriber_id: int) -> list[Topic]:
    """The topics one subscriber follows, by slug."""
    query = select(Topic).join(Follow, col(Follow.topic_id) == Topic.id)
    query = query.where(Follow.subscriber_id == subscriber_id).order_by(col(Topic.slug))
    return list(session.exec(query).all())


def topics_by_subscriber(session: Session) -> dict[int, list[Topic]]:
    """The topics each subscriber follows."""
    result: dict[int, list[Topic]] = defaultdict(list)
    rows = session.exec(
        select(Follow, Topic).where(Follow.topic_id == Topic.id).order_by(col(Topic.slug))
    )
    for follow, topic in rows.all():
        result[follow.subscriber_id].append(topic)
    return result


def add_topic(
    session: Session,
    slug: str,
    *,
    query: str,
    title: str = "",
    description: str = "",
    now: datetime,
) -> Topic:
    """Create a topic, refusing a bad slug, a taken or reserved slug or an invalid query."""
    refuse_reserved(slug)
    if not SLUG.match(slug):
        raise InputError(f"topic slug {slug!r} must be lower-case letters, digits and dashes")
    check_queries([query])  # a QueryError names the position
    if session.exec(select(Topic).where(Topic.slug == slug)).first():
        raise InputError(f"topic {slug!r} already exists")
    topic = Topic(
        slug=slug,
        title=title.strip() or slug,
        query=query.strip(),
        description=description.strip(),
        created_at=now,
    )
    session.add(topic)
    return topic


def edit_topic(
    session: Session, slug: str, *, title: str | None = None, description: str | None = None
) -> Topic:
    """Change a topic's title or description (its query and slug stay: they are its identity
    for followers and feed readers). The reserved Trending topic is refused."""
    refuse_reserved(slug)
    topic = topic_by_slug(session, slug)
    if title is not None:
        topic.title = title.strip() or slug
    if description is not None:
        topic.description = description.strip()
    session.add(topic)
    return topic


def topic_by_slug(session: Session, slug: str) -> Topic:
    """The topic with this slug, or NotFoundError."""
    found = session.exec(select(Topic).where(Topic.slug == slug)).first()
    if found is None:
        raise NotFoundError(f"no topic {slug!r}", hint="see digestd topic list")
    return found


def topics(session: Session) -> list[Topic]:
    """All topics by slug."""
    return list(session.exec(select(Topic).order_by(col(Topic.slug))).all())


def remove_topic(session: Session, slug: str, *, force: bool = False) -> list[str]:
    """Delete a topic; its followers stop following it. Followers for whom it was the only
    subscription would never get mail again: refused unless ``force``, which pauses them.
    Returns the addresses paused. The reserved Trending topic is refused."""
    refuse_reserved(slug)
    topic = topic_by_slug(session, slug)
    queries = queries_by_subscriber(session)
    followed = topics_by_subscriber(session)
    stranded = [
        s
        for s in subscribers(session)
        if not queries.get(s.id or 0) and [t.slug for t in followed.get(s.id or 0, [])] == [slug]
    ]
    if stranded and not force:
        names = ", ".join(s.email for s in stranded[:3]) + (" …" if len(stranded) > 3 else "")
        raise InputError(
            f"topic {slug!r} is the only subscription of {len(stranded)} subscriber(s): {names}",
            hint="give them a query or topic first, or use --force to remove it and pause them",
        )
    for subscriber in stranded:
        subscriber.active = False
        session.add(subscriber)
    session.execute(delete(Follow).where(col(Follow.topic_id) == topic.id))
    session.delete(topic)
    return [s.email for s in stranded]


def follower_counts(session: Session) -> dict[int, int]:
    """How many subscribers follow each topic."""
    rows = session.exec(select(Follow.topic_id, func.count()).group_by(col(Follow.topic_id))).all()
    return dict(rows)
