"""The admin CLI: parses arguments, calls the stages, turns DigestError into a one-line error."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.engine import Engine

from digestd import jobs, store
from digestd.config import Settings, load_settings
from digestd.db import check_schema, make_engine, migrate, session_scope
from digestd.demo import run_demo
from digestd.errors import DigestError, QueryError

app = typer.Typer(
    help="digestd: paper dumps in, personalized email digests and topic Atom feeds out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
topic_app = typer.Typer(
    help="Manage topics (admin-defined named queries with a feed).", no_args_is_help=True
)
subscriber_app = typer.Typer(
    help="Manage subscribers and their keyword queries.", no_args_is_help=True
)
app.add_typer(topic_app, name="topic")
app.add_typer(subscriber_app, name="subscriber")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


class State:
    """What the global options set up for the commands."""

    config_path: Path | None = None
    debug: bool = False


@app.callback()
def global_options(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="config file (default: $DIGESTD_CONFIG)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks of unexpected errors")
    ] = False,
) -> None:
    """Options that apply to every command."""
    State.config_path = config
    State.debug = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def settings() -> Settings:
    """The settings for this invocation."""
    return load_settings(State.config_path)


def ready_engine(config: Settings) -> Engine:
    """An engine on a database whose schema is current."""
    engine = make_engine(config.database_url)
    check_schema(engine)
    return engine


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr; yields a callback to advance it by one named item."""
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
        disable=total < 2,
    ) as bar:
        task = bar.add_task("", total=total)

        def advance(name: str) -> None:
            bar.update(task, advance=1, description=name)

        yield advance


def table(*columns: str, title: str | None = None) -> Table:
    """A table with the house style."""
    result = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        result.add_column(column, overflow="fold")
    return result


# -- set-up and ingest --------------------------------------------------------------------------


@app.command()
def init() -> None:
    """Create the data folders and the database (running migrations)."""
    config = settings()
    for name in ("inbox", "processed", "quarantine", "outbox", "feeds"):
        config.folder(name).mkdir(parents=True, exist_ok=True)
    migrate(make_engine(config.database_url))
    config.link_secret()
    out.print(f"database ready at {config.database_url}; data folders under {config.data_dir}")


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="dump files or folders (default: the inbox)")
    ] = None,
    on_date: Annotated[
        str | None,
        typer.Option("--date", help="YYYY-MM-DD that dates without a year are read against"),
    ] = None,
) -> None:
    """Ingest dump files or folders; print new / already known / quarantined counts."""
    config = settings()
    engine = ready_engine(config)
    reference = _parse_date(on_date) if on_date else None
    count = len(paths) if paths else 0
    with progress_bar(count, "ingest") as advance:
        report = jobs.run_ingest(config, engine, paths, reference=reference, progress=advance)
    result = table("file", "status", "new", "already known", "detail")
    for f in report.files:
        result.add_row(f.path.name, f.status, str(f.new), str(f.known), f.detail)
    if report.files:
        out.print(result)
    out.print(f"{report.new} new, {report.known} already known, {report.quarantined} quarantined")
    if report.quarantined:
        raise typer.Exit(2)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DigestError(f"--date {text!r} is not a date like 2024-03-14") from None


# -- topics -------------------------------------------------------------------------------------


@topic_app.command("add")
def topic_add(
    slug: str,
    query: Annotated[str, typer.Option("--query", "-q", help="the topic's query")],
    title: Annotated[
        str, typer.Option("--title", "-t", help="display title (default: the slug)")
    ] = "",
) -> None:
    """Create a topic."""
    with session_scope(ready_engine(settings())) as session:
        store.add_topic(session, slug, query=query, title=title, now=jobs.utc_now())
    out.print(f"topic {slug} added")


@topic_app.command("list")
def topic_list() -> None:
    """List topics with their queries and followers."""
    with session_scope(ready_engine(settings())) as session:
        rows = store.topics(session)
        followers = store.follower_counts(session)
    result = table("slug", "title", "query", "followers")
    for topic in rows:
        result.add_row(topic.slug, topic.title, topic.query, str(followers.get(topic.id or 0, 0)))
    out.print(result)


@topic_app.command("remove")
def topic_remove(slug: str) -> None:
    """Delete a topic."""
    with session_scope(ready_engine(settings())) as session:
        store.remove_topic(session, slug)
    out.print(f"topic {slug} removed")


# -- subscribers --------------------------------------------------------------------------------


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
    timezone: Annotated[str | None, typer.Option(help="IANA timezone, e.g. Europe/Paris")] = None,
    send_hour: Annotated[int | None, typer.Option(help="hour 0-23 in their timezone")] = None,
    weekday: Annotated[
        str | None, typer.Option(help="weekday of a weekly digest: mon..sun")
    ] = None,
) -> None:
    """Add a subscriber with keyword queries and followed topics."""
    config = settings()
    with session_scope(ready_engine(config)) as session:
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
            now=jobs.utc_now(),
        )
    out.print(f"subscriber {subscriber.email} added")


@subscriber_app.command("list")
def subscriber_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List subscribers."""
    with session_scope(ready_engine(settings())) as session:
        people = store.subscribers(session)
        queries = store.queries_by_subscriber(session)
        followed = store.topics_by_subscriber(session)
    rows: list[dict[str, Any]] = [
        {
            "email": s.email,
            "name": s.name,
            "status": "active" if s.active else "paused",
            "frequency": s.frequency,
            "timezone": s.timezone,
            "send_hour": s.send_hour,
            "weekday": s.weekday,
            "queries": queries.get(s.id or 0, []),
            "topics": [t.slug for t in followed.get(s.id or 0, [])],
        }
        for s in people
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    result = table("email", "name", "status", "schedule", "queries", "topics")
    for row in rows:
        schedule = f"{row['frequency']} {row['send_hour']:02d}:00 {row['timezone']}"
        result.add_row(
            row["email"],
            row["name"],
            row["status"],
            schedule,
            "\n".join(row["queries"]),
            ", ".join(row["topics"]),
        )
    out.print(result)


@subscriber_app.command("show")
def subscriber_show(email: str) -> None:
    """Show one subscriber, their queries, topics and recent deliveries."""
    with session_scope(ready_engine(settings())) as session:
        s = store.subscriber_by_email(session, email)
        queries = store.queries_by_subscriber(session).get(s.id or 0, [])
        followed = store.topics_by_subscriber(session).get(s.id or 0, [])
        deliveries = store.deliveries_of(session, s.id or 0)
    about = table("field", "value", title=s.email)
    for key, value in (
        ("name", s.name),
        ("status", "active" if s.active else "paused"),
        ("frequency", s.frequency + (f" on {s.weekday}" if s.frequency == "weekly" else "")),
        ("send hour", f"{s.send_hour:02d}:00 {s.timezone}"),
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


@subscriber_app.command("remove")
def subscriber_remove(email: str) -> None:
    """Delete a subscriber and their history."""
    with session_scope(ready_engine(settings())) as session:
        store.remove_subscriber(session, email)
    out.print(f"subscriber {email} removed")


@subscriber_app.command("pause")
def subscriber_pause(email: str) -> None:
    """Stop sending to a subscriber until resumed."""
    with session_scope(ready_engine(settings())) as session:
        store.set_active(session, email, False)
    out.print(f"subscriber {email} paused")


@subscriber_app.command("resume")
def subscriber_resume(email: str) -> None:
    """Send to a paused subscriber again."""
    with session_scope(ready_engine(settings())) as session:
        store.set_active(session, email, True)
    out.print(f"subscriber {email} resumed")


# -- matching, previews and sending -------------------------------------------------------------


@app.command("match")
def match_command(
    query: str,
    limit: Annotated[int, typer.Option(help="most papers to show")] = 20,
) -> None:
    """Show which stored papers a query matches, and why."""
    from digestd.match import analyze_paper, compile_query, match_papers

    compiled = compile_query(query)
    with session_scope(ready_engine(settings())) as session:
        papers = store.all_papers(session)
    analyzed = {p.id: analyze_paper(p.title, p.abstract) for p in papers}
    found = match_papers({"q": compiled}, analyzed).get("q", {})
    ranked = sorted(found.items(), key=lambda item: (-item[1].score, item[0] or 0))
    by_id = {p.id: p for p in papers}
    result = table(
        "score", "date", "title", "matched", title=f"{len(found)} of {len(papers)} papers match"
    )
    for paper_id, match in ranked[:limit]:
        paper = by_id[paper_id]
        hits = ", ".join(f"{h.term} ({h.field} ×{h.count})" for h in match.hits)
        result.add_row(f"{match.score:.2f}", paper.dump_date.isoformat(), paper.title, hits)
    out.print(result)
    if len(found) > limit:
        out.print(f"… and {len(found) - limit} more (use --limit)")


@app.command()
def preview(
    email: str,
    html: Annotated[
        Path | None, typer.Option("--html", help="also write the HTML part to this file")
    ] = None,
) -> None:
    """Show the digest a subscriber would get now, without sending or recording anything."""
    from digestd.render import render_digest

    config = settings()
    prepared = jobs.prepare_digests(
        config,
        ready_engine(config),
        now=jobs.utc_now(),
        only_email=email,
        ignore_schedule=True,
        include_paused=True,
    )
    if not prepared:
        out.print(f"{email}: no new papers match, no digest would be sent")
        return
    rendered = render_digest(prepared[0].digest, templates_dir=config.templates_dir)
    out.print(f"[bold]Subject:[/bold] {rendered.subject}", markup=True, highlight=False)
    sys.stdout.write(rendered.text)
    if html:
        html.write_text(rendered.html, encoding="utf-8")
        out.print(f"HTML written to {html}")


@app.command()
def send(
    now: Annotated[bool, typer.Option("--now", help="ignore send hours and weekdays")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be sent; send nothing")
    ] = False,
    to: Annotated[str | None, typer.Option("--to", help="only this subscriber")] = None,
) -> None:
    """Send the digests that are due (and record them, so nothing is sent twice)."""
    config = settings()
    engine = ready_engine(config)
    with progress_bar(0 if dry_run else 2, "send") as advance:
        report = asyncio.run(
            jobs.run_send(
                config,
                engine,
                only_email=to,
                ignore_schedule=now,
                dry_run=dry_run,
                progress=advance,
            )
        )
    if report.outcomes:
        result = table("to", "status", "papers", "subject", "detail")
        for o in report.outcomes:
            result.add_row(o.email, o.status, str(o.papers), o.subject, o.detail)
        out.print(result)
    out.print(
        f"{report.due} due: {report.count('sent')} sent, {report.count('failed')} failed, "
        f"{report.count('error')} errors, {report.nothing_new} with nothing new"
        + (f", {report.count('dry-run')} would be sent" if dry_run else "")
    )
    if report.count("failed") or report.count("error"):
        raise typer.Exit(3)


@app.command()
def feeds() -> None:
    """Rebuild every topic feed and the feeds index."""
    config = settings()
    written = jobs.run_feeds(config, ready_engine(config))
    out.print(f"{len(written)} files written to {config.folder('feeds')}")


@app.command()
def run() -> None:
    """Run the daemon: ingest the inbox, send due digests, rebuild feeds, on a schedule."""
    from digestd.daemon import run_daemon

    config = settings()
    engine = make_engine(config.database_url)
    migrate(engine)
    logging.getLogger().setLevel(logging.INFO)
    run_daemon(config, engine)


@app.command()
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="where the demo writes everything")] = Path(
        "digestd-demo"
    ),
) -> None:
    """Run the whole pipeline on the bundled sample into ./digestd-demo (no server needed)."""
    run_demo(folder, console=out)


def fail(message: str, code: int) -> None:
    """Print ``error: message`` as one unwrapped line on stderr and exit with ``code``."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; DigestError and other failures become one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args or ["--help"], prog_name="digestd", standalone_mode=False)
    except QueryError as exc:
        fail(str(exc), 2)
    except DigestError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # the promise is one line, never a traceback (unless --debug)
        if type(exc).__name__ == "Abort":
            fail("aborted", 130)
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            # a usage error found by the argument parser (an empty one follows printed help)
            message = exc.format_message()
            if not message.strip():
                sys.exit(exc.exit_code)
            fail(f"{message} (see digestd --help)", exc.exit_code)
        if State.debug:
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", 70)
    sys.exit(code if isinstance(code, int) else 0)
