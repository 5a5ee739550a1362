"""CLI commands that run the pipeline: init, ingest, preview, send, feeds, purge, run, web, demo."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text
from sqlalchemy.engine import make_url

from digestd import jobs
from digestd.cli.common import (
    EXIT_BAD_QUERY_OR_FILE,
    EXIT_BAD_VALUE,
    EXIT_WAITING,
    app,
    command_runtime,
    error_line,
    exit_code,
    out,
    progress_bar,
    ready_engine,
    settings,
    shown_with_verbose,
    stop_run,
    table,
    terminal_safe,
)
from digestd.db import make_engine, migrate
from digestd.demo import run_demo
from digestd.errors import DigestError, InputError
from digestd.ingest import FORMATS
from digestd.jobs.purge_job import run_purge
from digestd.jobs.send_record import pause_message, send_log
from digestd.render import mail_options
from digestd.runtime import Runtime
from digestd.template_check import check_templates, require_good_templates

# `digestd ingest` waits this long past [schedule] inbox_settle_seconds for inbox files still
# being written; one that is still changing then is left for the next run.
INBOX_WAIT_SECONDS = 60.0


@app.command()
def init() -> None:
    """Create the data folders and the database (running migrations)."""
    config = settings()
    for name in ("inbox", "processed", "quarantine", "outbox", "feeds"):
        config.folder(name).mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url, create=True)
    migrate(engine)
    Runtime(config, engine).make_link_secret()
    shown = make_url(config.database_url).render_as_string(hide_password=True)
    out.print(f"database ready at {shown}; data folders under {config.data_dir}")


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="dump files or folders (default: the inbox)")
    ] = None,
    on_date: Annotated[
        str | None,
        typer.Option("--date", help="YYYY-MM-DD that dates without a year are read against"),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="read every file as: text, arxiv-api, arxiv-rss, hf-json or jsonl"
            " (default: detected from each file's content)",
        ),
    ] = None,
) -> None:
    """Ingest dump files or folders; print new / already known / quarantined counts.

    Without a path, the inbox's files are taken once unchanged for [schedule]
    inbox_settle_seconds, as the daemon takes them: it waits for files still being written."""
    if format is not None and format not in FORMATS:
        raise InputError(f"--format {format!r} must be one of {', '.join(FORMATS)}")
    config = settings()
    engine = ready_engine(config)
    reference = _parse_date(on_date) if on_date else None
    settle = config.schedule.inbox_settle_seconds
    with progress_bar("ingest") as advance:
        report = jobs.run_ingest(
            config,
            engine,
            paths,
            reference=reference,
            settle_seconds=settle,
            settle_wait_seconds=settle + INBOX_WAIT_SECONDS,
            waiting=advance.show,
            progress=advance,
            format=format,
        )
    _print_ingest_report(report)
    if report.stopped:
        stop_run("ingest", report.stopped, left="the files not ingested are left as they are")
    if report.quarantined or report.errors:
        raise typer.Exit(EXIT_BAD_QUERY_OR_FILE)


def _print_ingest_report(report: jobs.IngestReport) -> None:
    """The table of files and the line of totals."""
    result = table("file", "status", "new", "already known", "revised", "detail")
    for f in report.files:
        result.add_row(f.path.name, f.status, str(f.new), str(f.known), str(f.revised), f.detail)
    if report.files:
        out.print(result)
    summary = f"{report.new} new, {report.known} already known"
    if report.revised:
        summary += f" ({report.revised} revised by a new version)"
    summary += f", {report.quarantined} quarantined"
    out.print(summary + (f", {report.errors} could not be ingested" if report.errors else ""))
    if report.unsettled:
        names = ", ".join(p.name for p in report.unsettled)
        out.print(f"still being written, left for the next run: {names}")


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DigestError(f"--date {text!r} is not a date like 2024-03-14") from None


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
    runtime = command_runtime(config)
    prepared = jobs.prepare_digests(
        config,
        runtime.engine,
        runtime=runtime,
        now=runtime.clock(),
        only_email=email,
        ignore_schedule=True,
        include_paused=True,
    )
    if not prepared:
        out.print(f"{email}: no new papers match, no digest would be sent")
        return
    rendered = render_digest(
        prepared[0].digest, templates_dir=config.templates_dir, options=mail_options(config)
    )
    out.print(Text.assemble(("Subject: ", "bold"), terminal_safe(rendered.subject)))
    sys.stdout.write(terminal_safe(rendered.text))
    if html:
        try:
            html.write_text(rendered.html, encoding="utf-8")
        except OSError as exc:
            raise DigestError(f"--html {html}: cannot write: {exc.strerror}") from None
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
    require_good_templates(config)
    runtime = command_runtime(config)
    for warning in jobs.start_warnings(config):
        sys.stderr.write(f"warning: {warning}\n")
    with progress_bar("send") as advance, shown_with_verbose(send_log.name):
        report = asyncio.run(
            jobs.run_send(
                config,
                runtime.engine,
                runtime=runtime,
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
        f"{report.due} due: {report.count('sent')} sent, {report.count('retry')} to retry, "
        f"{report.count('failed')} failed, {report.nothing_new} with nothing new"
        + (f", {report.resent} sent again after an interrupted run" if report.resent else "")
        + (f", {report.count('taken')} left to another run" if report.count("taken") else "")
        + (f", {report.count('dry-run')} would be sent" if dry_run else "")
    )
    if report.paused:
        # One line on stderr: why, what to do, what waits (the table says the rest).
        error_line(pause_message(report))
        raise typer.Exit(exit_code(report.record_error) if report.record_error else EXIT_WAITING)
    if report.count("failed") or report.count("retry"):
        raise typer.Exit(EXIT_WAITING)


@app.command()
def feeds() -> None:
    """Rebuild every topic feed and the feeds index."""
    config = settings()
    runtime = command_runtime(config)
    written = jobs.run_feeds(config, runtime.engine, runtime=runtime)
    out.print(f"{len(written)} files written to {config.folder('feeds')}")


@app.command()
def purge() -> None:
    """Delete web sign-ups whose confirmation link expired unconfirmed (the daemon does this
    hourly): the expired requests, and the subscribers who never confirmed one."""
    config = settings()
    purged = run_purge(config, ready_engine(config))
    if purged.subscribers:
        result = table("never confirmed: deleted")
        for address in purged.subscribers:
            result.add_row(address)
        out.print(result)
    out.print(
        f"{purged.requests} expired sign-up requests, "
        f"{len(purged.subscribers)} never-confirmed subscribers deleted"
    )


@app.command()
def run() -> None:
    """Run the daemon: ingest the inbox, send due digests, rebuild feeds, on a schedule."""
    from digestd.daemon import run_daemon

    config = settings()
    require_good_templates(config)
    engine = make_engine(config.database_url, create=True)
    migrate(engine)
    logging.getLogger().setLevel(logging.INFO)
    run_daemon(config, engine)


@app.command("check-templates")
def check_templates_command(
    folder: Annotated[
        Path | None,
        typer.Argument(help="templates folder to check (default: [paths] templates)"),
    ] = None,
) -> None:
    """Check the mail templates: each compiles and renders sample digests in every language."""
    config = settings()
    where = folder or config.templates_dir
    if where is not None and not where.is_dir():
        raise DigestError(f"templates folder {where}: not found")
    problems = check_templates(where, mail_options(config))
    for problem in problems:
        error_line(str(problem))
    if problems:
        raise typer.Exit(EXIT_BAD_VALUE)
    out.print(f"templates OK: {where or 'the bundled templates'}")


@app.command()
def web() -> None:
    """Serve the web application alone (sign-up, preferences, unsubscribe, feeds, health)."""
    from digestd.web import serve

    config = settings()
    engine = ready_engine(config)
    logging.getLogger().setLevel(logging.INFO)
    for warning in jobs.start_warnings(config):  # the sign-up mails go out from here
        logging.getLogger("digestd").warning(warning)
    logging.getLogger("digestd").info(
        "web application on http://%s:%d", config.web.host, config.web.port
    )
    serve(config, engine)


@app.command()
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="where the demo writes everything")] = Path(
        "digestd-demo"
    ),
) -> None:
    """Run the whole pipeline on the bundled sample into ./digestd-demo (no server needed)."""
    run_demo(folder, console=out)
