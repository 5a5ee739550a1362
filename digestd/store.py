"""Every database query, as a plain function taking a Session. Operator input is validated here."""

from __future__ import annotations

import re
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import email_validator
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from digestd.digest import WEEKDAYS
from digestd.errors import InputError, NotFoundError, QueryError
from digestd.ingest import DumpFile, paper_uid, title_key
from digestd.match import compile_query
from digestd.models import Delivery, Dump, Follow, Paper, Profile, SentPaper, Subscriber, Topic

FREQUENCIES = ("daily", "weekly")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


# -- dumps and papers ---------------------------------------------------------------------------


def dump_by_sha256(session: Session, sha256: str) -> Dump | None:
    """The dump already ingested with these exact bytes, if any."""
    return session.exec(select(Dump).where(Dump.sha256 == sha256)).first()


def store_dump(session: Session, dump_file: DumpFile, *, now: datetime) -> tuple[int, int]:
    """Store a parsed dump and its papers not seen before; returns (new, already known) counts."""
    parsed = dump_file.parsed
    dump = Dump(
        sha256=dump_file.sha256,
        file_name=dump_file.path.name,
        dump_date=parsed.dump_date,
        ingested_at=now,
        paper_count=len(parsed.papers),
        new_count=0,
    )
    session.add(dump)
    session.flush()
    assert dump.id is not None
    uids = {paper_uid(p): p for p in parsed.papers}
    keys = {title_key(p.title) for p in parsed.papers}
    known_uids = set(session.exec(select(Paper.uid).where(col(Paper.uid).in_(list(uids)))).all())
    known_keys = set(
        session.exec(select(Paper.title_key).where(col(Paper.title_key).in_(list(keys)))).all()
    )
    new = 0
    for uid, paper in uids.items():
        key = title_key(paper.title)
        if uid in known_uids or key in known_keys:
            continue
        known_uids.add(uid)
        known_keys.add(key)
        session.add(
            Paper(
                uid=uid,
                title_key=key,
                arxiv_id=paper.arxiv_id,
                title=paper.title,
                abstract=paper.abstract,
                dump_id=dump.id,
                dump_date=parsed.dump_date,
                first_seen=now,
            )
        )
        new += 1
    dump.new_count = new
    return new, len(parsed.papers) - new


def papers_since(session: Session, since: datetime) -> list[Paper]:
    """Papers first stored at or after ``since``, in the order they were stored."""
    return list(
        session.exec(select(Paper).where(Paper.first_seen >= since).order_by(col(Paper.id))).all()
    )


def all_papers(session: Session) -> list[Paper]:
    """Every stored paper, newest first."""
    return list(
        session.exec(select(Paper).order_by(col(Paper.first_seen).desc(), col(Paper.id))).all()
    )


def paper_count(session: Session) -> int:
    """How many papers are stored."""
    return session.exec(select(func.count()).select_from(Paper)).one()


# -- subscribers --------------------------------------------------------------------------------


def normalize_email(address: str) -> str:
    """The address in normalized form; InputError naming the problem if it is not valid."""
    try:
        return email_validator.validate_email(address, check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        raise InputError(f"email {address!r} is not valid: {exc}") from None


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA timezone, else InputError."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"timezone {name!r} is not an IANA timezone name such as Europe/Paris"
        ) from None
    return name


def check_queries(queries: Iterable[str]) -> list[str]:
    """The queries, each parsed to be sure it is valid (QueryError names the position)."""
    checked = []
    for query in queries:
        compile_query(query)
        checked.append(query.strip())
    return checked


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
    now: datetime,
) -> Subscriber:
    """Create a subscriber with their queries and followed topics, refusing bad values."""
    address = normalize_email(email)
    if frequency not in FREQUENCIES:
        raise InputError(f"frequency {frequency!r} must be daily or weekly")
    if not 0 <= send_hour <= 23:
        raise InputError(f"send hour {send_hour} must be 0-23")
    check_timezone(timezone)
    if weekday not in WEEKDAYS:
        raise InputError(f"weekday {weekday!r} must be one of {', '.join(WEEKDAYS)}")
    if not queries and not topic_slugs:
        raise InputError(f"subscriber {address} needs at least one --query or --topic")
    checked = check_queries(queries)
    topics = [topic_by_slug(session, slug) for slug in topic_slugs]
    if session.exec(select(Subscriber).where(Subscriber.email == address)).first():
        raise InputError(f"subscriber {address} already exists")
    subscriber = Subscriber(
        email=address,
        name=name.strip(),
        timezone=timezone,
        frequency=frequency,
        send_hour=send_hour,
        weekday=weekday,
        active=True,
        created_at=now,
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


def subscriber_by_email(session: Session, email: str) -> Subscriber:
    """The subscriber with this address, or NotFoundError."""
    address = email.strip().lower()
    found = session.exec(select(Subscriber).where(func.lower(Subscriber.email) == address)).first()
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


def topics_by_subscriber(session: Session) -> dict[int, list[Topic]]:
    """The topics each subscriber follows."""
    result: dict[int, list[Topic]] = defaultdict(list)
    rows = session.exec(
        select(Follow, Topic).where(Follow.topic_id == Topic.id).order_by(col(Topic.slug))
    )
    for follow, topic in rows.all():
        result[follow.subscriber_id].append(topic)
    return result


# -- topics -------------------------------------------------------------------------------------


def add_topic(session: Session, slug: str, *, query: str, title: str = "", now: datetime) -> Topic:
    """Create a topic, refusing a bad slug, a taken slug or an invalid query."""
    if not SLUG.match(slug):
        raise InputError(f"topic slug {slug!r} must be lower-case letters, digits and dashes")
    try:
        compile_query(query)
    except QueryError as exc:
        raise InputError(f"topic {slug}: {exc}") from None
    if session.exec(select(Topic).where(Topic.slug == slug)).first():
        raise InputError(f"topic {slug!r} already exists")
    topic = Topic(slug=slug, title=title.strip() or slug, query=query.strip(), created_at=now)
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


def remove_topic(session: Session, slug: str) -> None:
    """Delete a topic; subscribers stop following it."""
    topic = topic_by_slug(session, slug)
    session.execute(delete(Follow).where(col(Follow.topic_id) == topic.id))
    session.delete(topic)


def follower_counts(session: Session) -> dict[int, int]:
    """How many subscribers follow each topic."""
    rows = session.exec(select(Follow.topic_id, func.count()).group_by(col(Follow.topic_id))).all()
    return dict(rows)


# -- deliveries ---------------------------------------------------------------------------------


def sent_paper_ids(session: Session) -> dict[int, set[int]]:
    """For each subscriber, the ids of the papers already sent to them."""
    result: dict[int, set[int]] = defaultdict(set)
    for subscriber_id, paper_id in session.exec(
        select(SentPaper.subscriber_id, SentPaper.paper_id)
    ).all():
        result[subscriber_id].add(paper_id)
    return result


def last_digest_keys(session: Session) -> dict[int, str]:
    """For each subscriber, the digest key (local date) of their newest sent digest."""
    rows = session.exec(
        select(Delivery.subscriber_id, func.max(Delivery.digest_key))
        .where(Delivery.status == "sent")
        .group_by(col(Delivery.subscriber_id))
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
