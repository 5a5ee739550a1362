"""The send job: render each planned digest, send it, record what went out (planning: plan_job)."""

from __future__ import annotations

import itertools
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digestd import store
from digestd.config import Settings
from digestd.db import session_scope
from digestd.deliver import FileSender, Sender, SmtpSender, build_message, send_concurrently
from digestd.jobs.common import (
    Progress,
    exclusive,
    log,
    utc_now,
)
from digestd.jobs.plan_job import (
    DigestOutcome,
    PreparedDigest,
    SendReport,
    plan_due_digests,
)
from digestd.render import render_digest


def open_sender(settings: Settings) -> AbstractAsyncContextManager[Sender]:
    """The sender the config asks for: .eml files in the outbox, or SMTP."""
    if settings.delivery.backend == "smtp":
        smtp = settings.smtp
        return SmtpSender(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username or None,
            password=smtp.password or None,
            timeout=smtp.timeout,
            ca_file=smtp.ca_file or None,
            connections=smtp.connections,
        )
    return FileSender(settings.folder("outbox"))


async def run_send(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime | None = None,
    only_email: str | None = None,
    ignore_schedule: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> SendReport:
    """Send every due digest and record what went out, so nothing is ever sent twice."""
    # Planning and recording must not interleave with another send (the daemon's, or a CLI
    # call): the second would plan the same papers before the first records them.
    lock = nullcontext() if dry_run else exclusive(settings.data_dir / "send.lock", "digestd send")
    with lock:
        return await _send_all(
            settings,
            engine,
            now=now or utc_now(),
            only_email=only_email,
            ignore_schedule=ignore_schedule,
            dry_run=dry_run,
            progress=progress,
        )


async def _send_all(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime,
    only_email: str | None,
    ignore_schedule: bool,
    dry_run: bool,
    progress: Progress | None,
) -> SendReport:
    report = SendReport()
    planned = plan_due_digests(
        settings,
        engine,
        now=now,
        only_email=only_email,
        ignore_schedule=ignore_schedule,
        report=report,
    )
    try:
        if dry_run:
            for item in planned:
                rendered = render_digest(item.digest, templates_dir=settings.templates_dir)
                report.outcomes.append(
                    DigestOutcome(
                        item.email, "dry-run", len(item.planned.entries), rendered.subject
                    )
                )
            return report
        first = next(planned, None)
        if first is None:
            return report  # nothing to send: no connection to the server
        async with open_sender(settings) as sender:

            async def send(item: PreparedDigest) -> DigestOutcome:
                if progress:
                    progress(item.email, report.due)
                return await _send_one(settings, engine, sender, item, now, report.seconds)

            # Each digest is planned, rendered, sent and recorded by exactly one task, in turn
            # (so memory holds only the digests in flight); as many are in flight as the sender
            # has connections. If the server becomes unreachable, digests already handed over
            # are still recorded before the error ends the run.
            report.outcomes.extend(
                await send_concurrently(
                    itertools.chain((first,), planned), send, limit=sender.connections
                )
            )
        return report
    finally:
        if not dry_run and not ignore_schedule and report.empty:
            _record_empty(engine, report.empty)


def _record_empty(engine: Engine, empty: list[tuple[int, str]]) -> None:
    """A scheduled digest that found nothing is still the digest of that day (or week)."""
    with session_scope(engine) as session:
        for subscriber_id, key in empty:
            store.record_delivery(
                session,
                subscriber_id=subscriber_id,
                digest_key=key,
                status="empty",
                message_id="",
                paper_ids=(),
                reply="nothing new",
                now=utc_now(),
            )


async def _send_one(
    settings: Settings,
    engine: Engine,
    sender: Sender,
    item: PreparedDigest,
    now: datetime,
    seconds_by_stage: dict[str, float],
) -> DigestOutcome:
    count = len(item.planned.entries)
    try:
        rendering = time.perf_counter()
        rendered = render_digest(item.digest, templates_dir=settings.templates_dir)
        message = build_message(
            rendered,
            from_address=settings.smtp.from_address,
            from_name=settings.smtp.from_name,
            to_address=item.email,
            to_name=item.name,
            list_id=settings.list_id,
            unsubscribe_url=item.digest.unsubscribe_url,
            date=now,
        )
    except Exception as exc:  # one subscriber's template or header problem must not stop the run
        detail = f"{type(exc).__name__}: {exc}"
        log.error("cannot build the digest for %s: %s", item.email, detail)
        log.debug("details", exc_info=True)
        _record(engine, item, status="error", message_id="", reply=detail)
        return DigestOutcome(item.email, "error", count, detail=detail)
    sending = time.perf_counter()
    result = await sender.send(message)
    recording = time.perf_counter()
    status = "sent" if result.ok else "failed"
    _record(engine, item, status=status, message_id=result.message_id, reply=result.reply)
    for name, seconds in (
        ("render + build message", sending - rendering),
        ("send (awaiting the server)", recording - sending),
        ("record", time.perf_counter() - recording),
    ):
        seconds_by_stage[name] = seconds_by_stage.get(name, 0.0) + seconds
    if not result.ok:
        log.warning("digest to %s refused: %s", item.email, result.reply)
    return DigestOutcome(item.email, status, count, rendered.subject, result.reply)


def _record(
    engine: Engine, item: PreparedDigest, *, status: str, message_id: str, reply: str
) -> None:
    """Record one digest's outcome; only a sent digest marks its papers as sent. A failure to
    record (the subscriber was removed meanwhile, the database is gone) is logged, not raised:
    the run goes on for the others."""
    try:
        _write_record(engine, item, status=status, message_id=message_id, reply=reply)
    except SQLAlchemyError as exc:
        log.error(
            "digest to %s ended %s but could not be recorded: %s",
            item.email,
            status,
            getattr(exc, "orig", exc),
        )


def _write_record(
    engine: Engine, item: PreparedDigest, *, status: str, message_id: str, reply: str
) -> None:
    with session_scope(engine) as session:
        store.record_delivery(
            session,
            subscriber_id=item.subscriber_id,
            digest_key=item.key,
            status=status,
            message_id=message_id,
            paper_ids=item.planned.paper_ids,
            reply=reply,
            now=utc_now(),
        )
