"""Recording a send run's outcomes, and stopping the run early when it must: after too many
failures in a row, when a disk is short of its reserve, when the database cannot record.

Storage problems are outcomes, not crashes. Nothing is sent that was not recorded as "sending"
first; a digest the server accepted but that cannot be recorded as "sent" holds the run a while,
then stays "sending", so the next run sends it again with the same Message-ID (as after a
crash). ``pause_message`` is the one line that says why a run paused, what to do and what waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from digestd import store
from digestd.config import Settings
from digestd.db import database_error, session_scope, sqlite_file
from digestd.errors import DigestError
from digestd.jobs.plan_job import PreparedDigest
from digestd.jobs.reports import DigestOutcome, SendReport
from digestd.refusals import RECIPIENT
from digestd.storage import SpaceShortage, space_shortage

# What happens to each digest; `digestd send` shows it as a table (and these lines with -v).
send_log = logging.getLogger("digestd.send")
# When the server accepted a digest but "sent" cannot be recorded, the run holds (no other
# digest starts) and tries again for this long, waiting longer each time.
RECORD_SENT_SECONDS = 30.0
_RECORD_FIRST_WAIT = 0.25
_RECORD_LONGEST_WAIT = 4.0


def pause_message(report: SendReport) -> str:
    """The one line saying why a paused run stopped, what to do and what waits (the CLI's
    error line, the daemon's log line)."""
    waiting = report.due - report.nothing_new - report.count("sent") - report.count("failed")
    rest = ""
    if waiting > 0:
        digests = "digest not sent waits" if waiting == 1 else "digests not sent wait"
        rest = f"the {waiting} {digests} for the next run"
    hint = "; ".join(part for part in (report.pause_hint, rest) if part)
    return f"send paused: {report.paused}" + (f" ({hint})" if hint else "")


def pause(report: SendReport, reason: str, *, hint: str = "") -> None:
    """Pause the run (the first reason stands): no new digest starts."""
    if not report.paused:
        report.paused = reason
        report.pause_hint = hint


def stop_recording(report: SendReport, error: DigestError, doing: str) -> None:
    """The database cannot record this run's work: pause at once (nothing may be sent that is
    not recorded), and say so above any other reason."""
    if report.record_error is None:
        report.record_error = error
        report.paused = f"{doing}: {error.message}"
        report.pause_hint = error.hint or ""


class FailureStreak:
    """Counts failed attempts in a row; past the threshold the run pauses."""

    def __init__(self, threshold: int, report: SendReport) -> None:
        self.threshold = threshold
        self.report = report
        self.streak = 0

    def count(self, outcome: DigestOutcome) -> None:
        """Count one digest's outcome; pause the run when the streak reaches the threshold.

        An address refused as the recipient's fault neither counts nor breaks the streak: the
        server answered, and a run of dead addresses must not stop everyone's mail. A digest left
        to another run (taken) was no attempt at all."""
        if outcome.fault == RECIPIENT or outcome.status == "taken":
            return
        self.streak = 0 if outcome.status == "sent" else self.streak + 1
        if self.streak >= self.threshold:
            pause(
                self.report,
                f"{self.streak} failures in a row, the last: {outcome.detail}",
                hint=outcome.hint,
            )

    def until_paused(self, items: Iterable[PreparedDigest]) -> Iterator[PreparedDigest]:
        """``items`` until the run pauses."""
        for item in items:
            if self.report.paused:
                return
            yield item


def reserve_shortage(settings: Settings, engine: Engine) -> SpaceShortage | None:
    """The disk short of ``[delivery] min_free_mb``, if any: the SQLite database's, and the
    outbox folder's with the file backend. A run that fills a disk to the last byte could no
    longer record what it sent."""
    folders = []
    database_file = sqlite_file(engine.url)
    if database_file is not None:
        folders.append(database_file.parent)
    if settings.delivery.backend == "file":
        folders.append(settings.folder("outbox"))
    return space_shortage(folders, reserve=int(settings.delivery.min_free_mb * 1_000_000))


def record(engine: Engine, change: Callable[[Session], None]) -> DigestError | None:
    """Apply one outbox change in its own transaction; returns why it could not be recorded
    (the database full, locked, unreachable), None when it was."""
    try:
        with session_scope(engine) as session:
            change(session)
    except SQLAlchemyError as exc:
        return database_error(exc, url=engine.url)
    except store.LostClaim as exc:
        # This run held the digest too long (its lease ended) and another run took it over:
        # that one records it, this one records nothing over it.
        send_log.warning("%s: another run took it over; nothing recorded here", exc)
    return None


def record_sent(
    engine: Engine,
    item: PreparedDigest,
    reply: str,
    now: datetime,
    count: int,
    subject: str,
    report: SendReport,
) -> DigestOutcome:
    """The server accepted the digest: record it as sent, its papers with it.

    When that cannot be recorded, the run holds (nothing else starts) and tries again for up to
    RECORD_SENT_SECONDS: a database briefly locked, or full until the operator frees space,
    loses nothing. If it still fails, the row stays "sending", so the next run sends the digest
    again with the same Message-ID (what README promises after a crash) and this run pauses."""
    delivery_id = item.delivery_id or 0

    def mark_sent(session: Session) -> None:
        store.mark_sent(
            session,
            delivery_id,
            claimant=item.claimant,
            subscriber_id=item.subscriber_id,
            paper_ids=item.planned.paper_ids,
            reply=reply,
            now=now,
        )

    deadline = time.monotonic() + RECORD_SENT_SECONDS
    wait = _RECORD_FIRST_WAIT
    while (error := record(engine, mark_sent)) is not None and time.monotonic() < deadline:
        # Blocking on purpose: the run's database writes happen on the event loop's thread, and
        # while "sent" cannot be recorded no other digest may start (those in flight wait too).
        time.sleep(min(wait, max(deadline - time.monotonic(), 0.0)))
        wait = min(wait * 2, _RECORD_LONGEST_WAIT)
    if error is None:
        return DigestOutcome(item.email, "sent", count, subject, reply)
    send_log.error(
        "digest to %s was accepted (%s) but cannot be recorded as sent: %s; the next run sends "
        "it again with the same Message-ID %s",
        item.email,
        reply,
        error,
        item.message_id,
    )
    stop_recording(report, error, f"cannot record the digest to {item.email} as sent")
    detail = f"accepted, not recorded (the next run sends it again, same Message-ID): {reply}"
    return DigestOutcome(item.email, "sent", count, subject, detail)


def claim(engine: Engine, item: PreparedDigest, report: SendReport) -> DigestOutcome | None:
    """Claim the digest for this run before the server is contacted (see
    store.claim_for_sending); None when claimed, else the digest's outcome: left to another run,
    or waiting because the claim could not be recorded (the run then stops)."""
    count = len(item.planned.entries)
    claimed: list[str] = []
    error = record(
        engine,
        lambda s: claimed.append(
            store.claim_for_sending(
                s,
                item.delivery_id or 0,
                subscriber_id=item.subscriber_id,
                paper_ids=item.planned.paper_ids,
                claimant=item.claimant,
            )
        ),
    )
    if error is not None:
        # Nothing is sent that is not recorded as "sending": the digest waits, the run stops.
        send_log.error("digest to %s not sent: cannot record it as sending: %s", item.email, error)
        stop_recording(report, error, f"cannot record the digest to {item.email} as sending")
        return DigestOutcome(item.email, "retry", count, detail=f"not sent: {error.message}")
    if claimed[0] == "taken":
        return left_to_another(item, "another run has it")
    if claimed[0] == "duplicate":
        return left_to_another(item, "other digests carried its papers")
    if claimed[0] == "resumed":
        report.resent += 1
        send_log.warning(
            "digest to %s (%s) was being sent when a run stopped: sending it again, same "
            "Message-ID %s",
            item.email,
            item.key,
            item.message_id,
        )
    return None


def left_to_another(item: PreparedDigest, why: str) -> DigestOutcome:
    """The outcome of a digest this run leaves to another one."""
    send_log.info("digest to %s left to another run: %s", item.email, why)
    return DigestOutcome(item.email, "taken", len(item.planned.entries), detail=why)
