"""CLI commands for the outbox and what comes back: deliveries, stats, bounces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from digestd import jobs, store
from digestd.cli.common import (
    app,
    command_runtime,
    database,
    out,
    reading,
    settings,
    stop_run,
    table,
)
from digestd.errors import InputError
from digestd.jobs.bounce_job import run_bounces

# How `deliveries` shows a failed digest, by whose fault it was (Delivery.fault).
_FAILED_BY_FAULT = {"recipient": "failed (hard bounce)", "sender": "failed (refused)"}

deliveries_app = typer.Typer(
    help="List the outbox (every digest and its state); `retry` re-queues failed ones.",
)
app.add_typer(deliveries_app, name="deliveries")


def _since(text: str | None) -> datetime | None:
    """A --since value: a date (YYYY-MM-DD) or a number of days back (7d)."""
    if text is None:
        return None
    if text.endswith("d") and text[:-1].isdigit():
        return jobs.utc_now() - timedelta(days=int(text[:-1]))
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise InputError(
            f"--since {text!r} is not a date like 2026-03-14 or a number of days like 7d"
        ) from None


@deliveries_app.callback(invoke_without_command=True)
def deliveries(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help="only this status: " + ", ".join(store.STATUSES)),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="planned since a date (2026-03-14) or 7d")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="newest this many rows")] = 50,
) -> None:
    """List the newest digests in the outbox with their state, attempts and last reply.

    A failed digest says why: "hard bounce" (the recipient's address was refused), "refused"
    (the receiving system refused our message or server, not the address), or nothing (given
    up after retries, not buildable, or the subscriber was suppressed)."""
    if ctx.invoked_subcommand is not None:
        return
    with reading() as session:
        rows = store.list_deliveries(session, status=status, since=_since(since), limit=limit)
    result = table("id", "to", "digest", "status", "papers", "attempts", "next / sent", "reply")
    for delivery, email in rows:
        when = delivery.sent_at or delivery.next_attempt_at
        resent = f" (sent again {delivery.interrupted}x)" if delivery.interrupted else ""
        status = delivery.status
        if status == "failed":
            status = _FAILED_BY_FAULT.get(delivery.fault, status)
        result.add_row(
            str(delivery.id),
            email,
            delivery.digest_key,
            status + resent,
            str(delivery.paper_count),
            str(delivery.attempts),
            store.aware(when).isoformat(timespec="seconds") if when else "",
            delivery.reply,
        )
    out.print(result)
    out.print(f"{len(rows)} shown" + (f" (newest {limit})" if len(rows) == limit else ""))


@deliveries_app.command("retry")
def deliveries_retry(
    delivery_id: Annotated[int | None, typer.Argument(help="the delivery's id")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="every failed digest (not suppressed ones)")
    ] = False,
) -> None:
    """Put a failed digest (or all of them) back into the outbox, to be sent on the next run."""
    if (delivery_id is None) == (not all_failed):
        raise InputError("give a delivery id or --all-failed (one of them)")
    config = settings()
    now = jobs.utc_now()
    with database(config) as session:
        requeued = store.requeue(
            session,
            delivery_id=delivery_id,
            now=now,
            give_up_at=now + timedelta(hours=config.delivery.give_up_hours),
        )
    out.print(f"{len(requeued)} re-queued; the next send run sends them")


@app.command()
def stats(
    since: Annotated[
        str | None, typer.Option("--since", help="digests planned since a date or 7d")
    ] = None,
) -> None:
    """Show how many digests are sent, retrying, failed (and whose fault), and how many
    subscribers are suppressed."""
    when = _since(since)
    with reading() as session:
        counts = store.delivery_counts(session, since=when)
        failed = store.failed_by_fault(session, since=when)
        resent = store.resent_count(session, since=when)
        suppressed = store.suppressed_count(session)
        people = len(store.subscribers(session))
    result = table("what", "count", title="digests" + (f" since {since}" if since else ""))
    for label, value in (
        ("sent", counts.get("sent", 0)),
        ("retrying", counts.get("retry", 0)),
        ("failed", counts.get("failed", 0)),
        ("failed: the recipient's address (hard bounce)", failed["recipient"]),
        ("failed: refused for our message or server (not the recipient's)", failed["sender"]),
        (
            "failed: other (gave up after retries, could not be built, subscriber suppressed)",
            failed[""],
        ),
        ("in flight (planned or sending)", counts.get("planned", 0) + counts.get("sending", 0)),
        ("nothing new", counts.get("empty", 0)),
        ("sent again after an interrupted run", resent),
        ("subscribers suppressed", suppressed),
        ("subscribers", people),
    ):
        result.add_row(label, str(value))
    out.print(result)


@app.command()
def bounces(
    path: Annotated[Path, typer.Argument(help="a message file, mbox, maildir or folder")],
) -> None:
    """Read delivery status notifications and complaints; record them against subscribers."""
    config = settings()
    runtime = command_runtime(config)
    report = run_bounces(config, runtime.engine, path, runtime=runtime)
    result = table("message", "kind", "subscriber", "detail")
    for outcome in report.outcomes:
        result.add_row(outcome.source, outcome.kind, outcome.email, outcome.detail)
    if report.outcomes:
        out.print(result)
    out.print(
        f"{report.count('hard')} hard, {report.count('soft')} soft, "
        f"{report.count('refused')} refused (not the recipient's), "
        f"{report.count('complaint')} complaints, {report.count('unsubscribe')} unsubscribes, "
        f"{report.count('unmatched')} unmatched, {report.already_known} recorded before, "
        f"{report.count('error')} could not be read; {len(report.suppressed)} suppressed"
    )
    if report.stopped:
        stop_run("bounces", report.stopped, left="the messages not read are left for the next pass")
