"""CLI commands for topics and subscribers."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from digestd import jobs, store
from digestd.cli.common import (
    command_runtime,
    database,
    out,
    reading,
    settings,
    subscriber_app,
    table,
    topic_app,
)
from digestd.errors import InputError
from digestd.models import Subscriber
from digestd.schedule import Schedule
from digestd.store.people import MAX_PAUSE_DAYS, check_choice, paused_on
from digestd.validation import DIGEST_ORDERS, LANGUAGES


@topic_app.command("add")
def topic_add(
    slug: str,
    query: Annotated[str, typer.Option("--query", "-q", help="the topic's query")],
    title: Annotated[
        str, typer.Option("--title", "-t", help="display title (default: the slug)")
    ] = "",
    description: Annotated[
        str, typer.Option("--description", "-d", help="a sentence for the sign-up page and feed")
    ] = "",
) -> None:
    """Create a topic."""
    with database() as session:
        store.add_topic(
            session, slug, query=query, title=title, description=description, now=jobs.utc_now()
        )
    out.print(f"topic {slug} added")


@topic_app.command("edit")
def topic_edit(
    slug: str,
    title: Annotated[str | None, typer.Option("--title", "-t", help="new display title")] = None,
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="new description")
    ] = None,
) -> None:
    """Change a topic's title or description; its feed is rebuilt."""
    if title is None and description is None:
        raise InputError("give --title or --description")
    config = settings()
    with database(config) as session:
        store.edit_topic(session, slug, title=title, description=description)
    runtime = command_runtime(config)
    jobs.run_feeds(config, runtime.engine, runtime=runtime)
    out.print(f"topic {slug} updated; feeds rebuilt")


@topic_app.command("list")
def topic_list() -> None:
    """List topics with their queries and followers."""
    with reading() as session:
        rows = store.topics(session)
        followers = store.follower_counts(session)
    result = table("slug", "title", "query", "description", "followers")
    for topic in rows:
        result.add_row(
            topic.slug,
            topic.title,
            topic.query,
            topic.description,
            str(followers.get(topic.id or 0, 0)),
        )
    out.print(result)


@topic_app.command("remove")
def topic_remove(
    slug: str,
    force: Annotated[
        bool, typer.Option("--force", help="also when it is someone's only subscription")
    ] = False,
) -> None:
    """Delete a topic; its followers stop following it."""
    with database() as session:
        paused = store.remove_topic(session, slug, force=force)
    out.print(f"topic {slug} removed")
    if paused:
        out.print(
            f"paused {len(paused)} subscriber(s) left without a subscription: " + ", ".join(paused)
        )


# -- subscribers --------------------------------------------------------------------------------

# The schedule options that `subscriber add` and `subscriber edit` share.
TimezoneOption = Annotated[str | None, typer.Option(help="IANA timezone, e.g. Europe/Paris")]
SendHourOption = Annotated[int | None, typer.Option(help="hour 0-23 in their timezone")]
WeekdayOption = Annotated[str | None, typer.Option(help="weekday of a weekly digest: mon..sun")]
RevisedOption = Annotated[
    bool | None,
    typer.Option(
        "--revised/--no-revised",
        help="also send a paper again when a new arXiv version of it appears (default: no)",
    ),
]
LanguageOption = Annotated[
    str | None, typer.Option("--language", help="of their mails and pages: en or de")
]
OrderOption = Annotated[
    str | None,
    typer.Option("--order", help="of their digest: relevance (default), newest or upvotes"),
]


def _checked_choices(language: str | None, order: str | None) -> None:
    """Refuse a --language or --order digestd does not know, naming the option."""
    if language is not None:
        check_choice("--language", language, LANGUAGES)
    if order is not None:
        check_choice("--order", order, DIGEST_ORDERS)


@subscriber_app.command("add")
def subscriber_add(
    email: str,
    name: Annotated[str, typer.Option("--name", help="display name")] = "",
    query: Annotated[
        list[str] | None, typer.Option("--query", "-q", help="a keyword query (repeatable)")
    ] = None,
    topic: Annotated[
        list[str] | None, typer.Option("--topic", help="a topic slug to follow (repeatable)")
    ] = None,
    frequency: Annotated[str, typer.Option(help="daily or weekly")] = "daily",
    timezone: TimezoneOption = None,
    send_hour: SendHourOption = None,
    weekday: WeekdayOption = None,
    revised: RevisedOption = None,
    language: LanguageOption = None,
    order: OrderOption = None,
) -> None:
    """Add a subscriber with keyword queries and followed topics."""
    _checked_choices(language, order)
    config = settings()
    with database(config) as session:
        subscriber = store.add_subscriber(
            session,
            email,
            name=name,
            queries=query or [],
            topic_slugs=topic or [],
            frequency=frequency,
            timezone=timezone or config.schedule.default_timezone,
            send_hour=config.schedule.default_send_hour if send_hour is None else send_hour,
            weekday=weekday or config.schedule.weekly_day,
            revised_papers=bool(revised),
            language=language or config.digest.default_language,
            digest_order=order or "relevance",
            now=jobs.utc_now(),
        )
    out.print(f"subscriber {subscriber.email} added")


@subscriber_app.command("edit")
def subscriber_edit(
    email: str,
    name: Annotated[str | None, typer.Option("--name", help="new display name")] = None,
    add_query: Annotated[
        list[str] | None, typer.Option("--add-query", help="add a keyword query (repeatable)")
    ] = None,
    remove_query: Annotated[
        list[str] | None, typer.Option("--remove-query", help="remove a query (repeatable)")
    ] = None,
    follow: Annotated[
        list[str] | None, typer.Option("--follow", help="follow a topic slug (repeatable)")
    ] = None,
    unfollow: Annotated[
        list[str] | None, typer.Option("--unfollow", help="stop following a topic (repeatable)")
    ] = None,
    frequency: Annotated[str | None, typer.Option(help="daily or weekly")] = None,
    timezone: TimezoneOption = None,
    send_hour: SendHourOption = None,
    weekday: WeekdayOption = None,
    revised: RevisedOption = None,
    language: LanguageOption = None,
    order: OrderOption = None,
    pause_days: Annotated[
        int | None,
        typer.Option(
            "--pause-days", help="skip their digests for N days from their today; 0 resumes"
        ),
    ] = None,
) -> None:
    """Change a subscriber's queries, topics, schedule, language, digest order or
    revised-papers choice, or pause them for some days."""
    _checked_choices(language, order)
    if pause_days is not None and not 0 <= pause_days <= MAX_PAUSE_DAYS:
        raise InputError(f"--pause-days {pause_days} must be 0 (resume) to {MAX_PAUSE_DAYS}")
    with database() as session:
        subscriber = store.update_subscriber(
            session,
            email,
            name=name,
            add_queries=add_query or [],
            remove_queries=remove_query or [],
            follow=follow or [],
            unfollow=unfollow or [],
            frequency=frequency,
            timezone=timezone,
            send_hour=send_hour,
            weekday=weekday,
            revised_papers=revised,
            language=language,
            digest_order=order,
            pause_days=pause_days,
            now=jobs.utc_now(),
        )
    out.print(f"subscriber {subscriber.email} updated")


def _status(subscriber: Subscriber) -> str:
    """One word for where a subscriber stands ("paused until <date>" for a pause of days)."""
    if subscriber.suppressed_at is not None:
        return "suppressed"
    if subscriber.confirmed_at is None:
        return "pending"
    if not subscriber.active:
        return "paused"
    if paused_on(subscriber, jobs.utc_now()):
        return f"paused until {subscriber.paused_until}"
    return "active"


@subscriber_app.command("list")
def subscriber_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List subscribers."""
    with reading() as session:
        people = store.subscribers(session)
        queries = store.queries_by_subscriber(session)
        followed = store.topics_by_subscriber(session)
    rows: list[dict[str, Any]] = [
        {
            "email": s.email,
            "name": s.name,
            "status": _status(s),
            "frequency": s.frequency,
            "timezone": s.timezone,
            "send_hour": s.send_hour,
            "weekday": s.weekday,
            "revised_papers": s.revised_papers,
            "language": s.language,
            "digest_order": s.digest_order,
            "paused_until": s.paused_until.isoformat() if s.paused_until else None,
            "queries": queries.get(s.id or 0, []),
            "topics": [t.slug for t in followed.get(s.id or 0, [])],
        }
        for s in people
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    result = table("email", "name", "status", "schedule", "language", "order", "queries", "topics")
    for row in rows:
        schedule = f"{row['frequency']} {row['send_hour']:02d}:00 {row['timezone']}"
        result.add_row(
            row["email"],
            row["name"],
            row["status"],
            schedule,
            row["language"],
            row["digest_order"],
            "\n".join(row["queries"]),
            ", ".join(row["topics"]),
        )
    out.print(result)


def _next_digest(s: Subscriber, last_key: str | None) -> str:
    """When the subscriber's next digest is due, in words."""
    now = jobs.utc_now()
    if not s.active or s.suppressed_at is not None or paused_on(s, now):
        return "none while paused or suppressed"
    when = Schedule.of(s).next_send(now, last_key=last_key, created=store.aware(s.created_at))
    if when <= now:
        return "due now (the next send run)"
    return when.strftime("%Y-%m-%d %H:%M ") + s.timezone


@subscriber_app.command("show")
def subscriber_show(email: str) -> None:
    """Show one subscriber, their queries, topics and recent deliveries."""
    with reading() as session:
        s = store.subscriber_by_email(session, email)
        queries = store.queries_by_subscriber(session).get(s.id or 0, [])
        followed = store.topics_by_subscriber(session).get(s.id or 0, [])
        deliveries = store.deliveries_of(session, s.id or 0)
        bounces = store.bounces_of(session, s.id or 0)
        last_key = store.last_digest_keys(session).get(s.id or 0)
    next_digest = _next_digest(s, last_key)
    about = table("field", "value", title=s.email)
    status = _status(s)
    if status == "pending":
        status = "pending: signed up on the web, not confirmed yet"
    if s.suppressed_at is not None:
        status = (
            f"suppressed since {s.suppressed_at.isoformat(timespec='seconds')}: "
            f"{s.suppressed_reason} (digestd subscriber unsuppress {s.email} lifts it)"
        )
    for key, value in (
        ("name", s.name),
        ("status", status),
        ("frequency", s.frequency + (f" on {s.weekday}" if s.frequency == "weekly" else "")),
        ("send hour", f"{s.send_hour:02d}:00 {s.timezone}"),
        ("next digest", next_digest),
        ("revised papers", "sent again when a new version appears" if s.revised_papers else "no"),
        ("language", s.language),
        ("digest order", s.digest_order),
        ("paused until", s.paused_until.isoformat() if s.paused_until else "-"),
        ("queries", "\n".join(queries)),
        ("topics", ", ".join(t.slug for t in followed)),
        ("since", s.created_at.isoformat(timespec="seconds")),
    ):
        about.add_row(key, value)
    out.print(about)
    if deliveries:
        sent = table("when", "digest", "status", "papers", "reply", title="recent deliveries")
        for d in deliveries:
            sent.add_row(
                d.created_at.isoformat(timespec="seconds"),
                d.digest_key,
                d.status,
                str(d.paper_count),
                d.reply,
            )
        out.print(sent)
    if bounces:
        bounced = table("when", "kind", "status", "from", "reason", title="bounces")
        for b in bounces:
            bounced.add_row(
                b.created_at.isoformat(timespec="seconds"), b.kind, b.status, b.source, b.reason
            )
        out.print(bounced)


@subscriber_app.command("remove")
def subscriber_remove(email: str) -> None:
    """Delete a subscriber and their history."""
    with database() as session:
        store.remove_subscriber(session, email)
    out.print(f"subscriber {email} removed")


@subscriber_app.command("pause")
def subscriber_pause(email: str) -> None:
    """Stop sending to a subscriber until resumed."""
    with database() as session:
        store.set_active(session, email, False)
    out.print(f"subscriber {email} paused")


@subscriber_app.command("resume")
def subscriber_resume(email: str) -> None:
    """Send to a paused subscriber again."""
    with database() as session:
        store.set_active(session, email, True)
    out.print(f"subscriber {email} resumed")


@subscriber_app.command("unsuppress")
def subscriber_unsuppress(email: str) -> None:
    """Mail a subscriber again who was suppressed after bounces, a complaint or a mailed
    unsubscribe (only when they asked for it)."""
    with database() as session:
        store.lift_suppression(session, email, now=jobs.utc_now())
    out.print(f"subscriber {email} will be mailed again")
