"""The send job: each due digest goes through the outbox (planning: plan_job).

A digest becomes an outbox row (planned) before anything is sent; "sending" and the attempt
are committed before the server is contacted, "sent" right after its 250. A temporary failure
(4xx, a dropped or refused connection, a timeout) schedules the next attempt with exponential
backoff and jitter, until the give-up time; a permanent one (5xx) fails the digest and records
whose fault it was (digestd.refusals): a hard bounce for the recipient's address, a "refused"
bounce, never counted against the subscriber, for our message or server. A row left "sending" by
a crash is sent again with the same Message-ID.

An .eml file that cannot be written (a full disk) is a temporary failure like a 4xx. When a
run pauses early, and what happens when the database cannot record: send_record.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from digestd import store
from digestd.config import Settings
from digestd.deliver import Sender, SendResult, send_concurrently
from digestd.jobs.plan_job import PreparedDigest, plan_due_digests
from digestd.jobs.reports import DigestOutcome, Progress, SendReport
from digestd.jobs.send_record import (
    FailureStreak,
    claim,
    left_to_another,
    pause,
    record,
    record_sent,
    reserve_shortage,
    send_log,
    stop_recording,
)
from digestd.jobs.senders import Builder, message_builder
from digestd.refusals import RECIPIENT, enhanced_status, refusal_fault, split_reply
from digestd.render import mail_options, render_digest
from digestd.runtime import Runtime, utc_now

# Planned rows are written this many at a time, ahead of sending.
_QUEUE_BATCH = 32
_JITTER = random.Random()


def backoff_delay(
    attempts: int, *, first_minutes: float, max_minutes: float, rng: random.Random = _JITTER
) -> timedelta:
    """The wait before the next attempt after ``attempts`` failed ones: doubling from
    ``first_minutes`` up to ``max_minutes``, then drawn between half and all of that (jitter,
    so digests that failed together do not come back together)."""
    minutes = min(first_minutes * 2 ** max(attempts - 1, 0), max_minutes)
    return timedelta(minutes=minutes * (0.5 + rng.random() / 2))


async def run_send(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime | None = None,
    only_email: str | None = None,
    ignore_schedule: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    runtime: Runtime | None = None,
) -> SendReport:
    """Send every due digest through the outbox: open ones first (resumed after a crash, or
    due for another attempt), then new ones. Never two digests for one key."""
    runtime = runtime if runtime is not None else Runtime(settings, engine)
    # Other runs may send at the same time, in this process, another one, or on another
    # machine: the database keeps them apart (one open digest per subscriber, each digest
    # claimed by one run at a time; see store.deliveries), no lock of this machine does.
    return await _send_all(
        settings,
        engine,
        now=now or utc_now(),
        only_email=only_email,
        ignore_schedule=ignore_schedule,
        dry_run=dry_run,
        progress=progress,
        runtime=runtime,
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
    runtime: Runtime,
) -> SendReport:
    report = SendReport()
    planned = plan_due_digests(
        settings,
        engine,
        now=now,
        only_email=only_email,
        ignore_schedule=ignore_schedule,
        report=report,
        runtime=runtime,
    )
    try:
        if dry_run:
            report.outcomes.extend(_dry_run(settings, planned))
            return report
        first = next(planned, None)
        if first is None:
            return report  # nothing to send: no connection to the server
        build = message_builder(runtime)
        async with runtime.open_sender() as sender:
            failures = FailureStreak(settings.delivery.error_threshold, report)

            async def send(item: PreparedDigest) -> DigestOutcome:
                if progress:
                    progress(item.email, report.due)
                outcome = await _send_one(settings, engine, sender, build, item, now, report)
                failures.count(outcome)
                return outcome

            # Each digest is planned, queued, sent and recorded by exactly one task, in turn
            # (so memory holds only the digests in flight); as many are in flight as the sender
            # has connections. After too many failures in a row no new digest is started.
            queued = _queued(
                engine, settings, itertools.chain((first,), planned), now, report, runtime.node_id
            )
            report.outcomes.extend(
                await send_concurrently(
                    failures.until_paused(queued), send, limit=sender.connections
                )
            )
        return report
    finally:
        if not dry_run and report.empty:
            error = record(
                engine,
                lambda s: _record_empty(s, report.empty, now=now, forced=ignore_schedule),
            )
            if error is not None:  # they are found empty again by the next run
                stop_recording(report, error, "cannot record the digests with nothing new")


def _dry_run(settings: Settings, planned: Iterable[PreparedDigest]) -> list[DigestOutcome]:
    """What a send would mail: each digest rendered, nothing sent or recorded."""
    outcomes = []
    for item in planned:
        rendered = render_digest(
            item.digest, templates_dir=settings.templates_dir, options=mail_options(settings)
        )
        outcomes.append(
            DigestOutcome(item.email, "dry-run", len(item.planned.entries), rendered.subject)
        )
    return outcomes


def _queued(
    engine: Engine,
    settings: Settings,
    items: Iterable[PreparedDigest],
    now: datetime,
    report: SendReport,
    claimant: str,
) -> Iterator[PreparedDigest]:
    """``items`` with outbox rows, to be claimed by ``claimant``: new digests are written as
    planned, a batch at a time. A new digest the database refuses (another run has an open
    digest of that subscriber) is left to that run. Before each batch the disks are checked
    for their reserve; the run pauses when one is short, or when the rows cannot be written."""
    give_up_at = now + timedelta(hours=settings.delivery.give_up_hours)
    batch: list[PreparedDigest] = []
    for item in itertools.chain(items, [None]):
        if item is not None:
            batch.append(item)
        if len(batch) < _QUEUE_BATCH and item is not None:
            continue
        if not batch:
            return
        shortage = reserve_shortage(settings, engine)
        if shortage is not None:
            pause(
                report,
                str(shortage),
                hint="free space there, or lower [delivery] min_free_mb",
            )
            return
        fresh = [i for i in batch if i.delivery_id is None]
        rows = [
            store.PlannedRow(i.subscriber_id, i.key, i.message_id, i.planned.paper_ids, give_up_at)
            for i in fresh
        ]
        added: list[int | None] = []

        def add(
            session: Session, rows: list[store.PlannedRow] = rows, added: list[int | None] = added
        ) -> None:
            added.extend(store.add_planned(session, rows, now=now))

        error = record(engine, add)
        if error is not None:  # nothing of the batch is sent: it is planned again
            stop_recording(report, error, "cannot put digests into the outbox")
            return
        ids = iter(added)
        for queued in batch:
            if queued.delivery_id is None:
                delivery_id = next(ids)
                if delivery_id is None:
                    report.outcomes.append(left_to_another(queued, "another run has its digest"))
                    continue
                queued = dataclasses.replace(queued, delivery_id=delivery_id, give_up_at=give_up_at)
            yield dataclasses.replace(queued, claimant=claimant)
        batch = []


def _record_empty(
    session: Session, empty: list[tuple[int, str, int | None]], *, now: datetime, forced: bool
) -> None:
    """A scheduled digest that found nothing is still the digest of that day (or week); an
    open one whose papers no longer match is over. A forced run's empty digests are not
    recorded, so the scheduled digest still comes."""
    for subscriber_id, key, delivery_id in empty:
        if delivery_id is not None:
            store.mark_empty(session, delivery_id, reply="its papers no longer match")
        elif not forced:
            store.record_empty(session, subscriber_id, key, now=now)


async def _send_one(
    settings: Settings,
    engine: Engine,
    sender: Sender,
    build: Builder,
    item: PreparedDigest,
    now: datetime,
    report: SendReport,
) -> DigestOutcome:
    count = len(item.planned.entries)
    delivery_id = item.delivery_id
    assert delivery_id is not None
    seconds = report.seconds
    rendering = time.perf_counter()
    try:
        message, subject = build(item)
    except Exception as exc:  # one subscriber's template or header problem must not stop the run
        detail = f"cannot build the message: {type(exc).__name__}: {exc}"
        send_log.error("digest to %s: %s", item.email, detail)
        send_log.debug("details", exc_info=True)
        error = record(engine, lambda s: store.mark_failed(s, delivery_id, reply=detail))
        if error is not None:  # still planned: the next run tries to build it again
            stop_recording(report, error, f"cannot record that the digest to {item.email} failed")
        return DigestOutcome(item.email, "failed", count, detail=detail)
    marking = time.perf_counter()
    refused = claim(engine, item, report)
    if refused is not None:  # another run has it, or the database cannot record the claim
        return refused
    sending = time.perf_counter()
    result = await sender.send(message)
    recording = time.perf_counter()
    if result.outcome == "sent":
        outcome = record_sent(engine, item, result.reply, now, count, subject, report)
    elif result.outcome == "permanent":
        outcome = _refused(settings, engine, item, result, now, count, subject, report)
    else:
        outcome = _temporary(settings, engine, item, result, now, count, subject, report)
    for name, spent in (
        ("render + build message", marking - rendering),
        ("record sending", sending - marking),
        ("send (awaiting the server)", recording - sending),
        ("record outcome", time.perf_counter() - recording),
    ):
        seconds[name] = seconds.get(name, 0.0) + spent
    return outcome


def _refused(
    settings: Settings,
    engine: Engine,
    item: PreparedDigest,
    result: SendResult,
    now: datetime,
    count: int,
    subject: str,
    report: SendReport,
) -> DigestOutcome:
    """A permanent refusal: the digest fails with the reply recorded, and whose fault it was.
    The recipient's (a bad address) is a hard bounce, counted towards suppression; ours (the
    message, our server, a policy: digestd.refusals) is a "refused" bounce that never counts
    against the subscriber. Either counts in the run's failure streak like any failure: a
    server refusing every message is what the streak is there to stop."""
    reply = result.reply
    code, text = split_reply(reply)
    fault = refusal_fault(code, text, result.refused_at)
    kind = "hard" if fault == RECIPIENT else "refused"

    def mark_refused(session: Session) -> None:
        store.mark_failed(
            session, item.delivery_id or 0, reply=reply, fault=fault, claimant=item.claimant
        )
        suppressed = store.record_bounce(
            session,
            subscriber_id=item.subscriber_id,
            kind=kind,
            reason=reply,
            source="smtp",
            status=enhanced_status(code, text),
            delivery_id=item.delivery_id,
            now=now,
            hard_limit=settings.delivery.hard_bounces,
        )
        if suppressed:
            send_log.warning("subscriber %s suppressed: %s", item.email, suppressed)

    error = record(engine, mark_refused)
    if error is not None:
        # Left "sending", it would be sent again to an address that refused it: stop here.
        send_log.error("digest to %s: the refusal could not be recorded: %s", item.email, error)
        stop_recording(report, error, f"cannot record the refusal of the digest to {item.email}")
    if kind == "hard":
        send_log.warning("digest to %s refused for good (the address): %s", item.email, reply)
    else:
        send_log.warning(
            "digest to %s refused for good, not for the address (our message or server): %s",
            item.email,
            reply,
        )
    return DigestOutcome(item.email, "failed", count, subject, reply, fault=fault)


def _temporary(
    settings: Settings,
    engine: Engine,
    item: PreparedDigest,
    result: SendResult,
    now: datetime,
    count: int,
    subject: str,
    report: SendReport,
) -> DigestOutcome:
    """A temporary failure: try again later with backoff, or give up past the give-up time."""
    reply = result.reply
    attempts = item.attempts + 1
    give_up_at = item.give_up_at or now
    if now >= give_up_at:
        detail = f"gave up after {attempts} attempts: {reply}"
        error = record(
            engine,
            lambda s: store.mark_failed(
                s, item.delivery_id or 0, reply=detail, claimant=item.claimant
            ),
        )
        send_log.warning("digest to %s failed: %s", item.email, detail)
        outcome = DigestOutcome(item.email, "failed", count, subject, detail, hint=result.hint)
    else:
        delay = backoff_delay(
            attempts,
            first_minutes=settings.delivery.retry_minutes,
            max_minutes=settings.delivery.retry_max_minutes,
        )
        at = min(now + delay, give_up_at)
        error = record(
            engine,
            lambda s: store.mark_retry(
                s, item.delivery_id or 0, claimant=item.claimant, reply=reply, at=at
            ),
        )
        send_log.warning(
            "digest to %s: temporary failure (attempt %d), next attempt at %s: %s",
            item.email,
            attempts,
            at.strftime("%Y-%m-%d %H:%M:%S %Z"),
            reply,
        )
        outcome = DigestOutcome(item.email, "retry", count, subject, reply, hint=result.hint)
    if error is not None:
        # Left "sending": the next run sends it again (nothing reached the recipient).
        send_log.error("digest to %s: the failure could not be recorded: %s", item.email, error)
        stop_recording(report, error, f"cannot record the failure of the digest to {item.email}")
    return outcome
