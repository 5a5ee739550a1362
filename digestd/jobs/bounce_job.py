"""The bounce job: read delivery status notifications, plain-text bounce notices and complaints
from a mailbox and record them against the right subscriber; unsubscribe requests sent to the
List-Unsubscribe mailto too.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesHeaderParser
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from digestd import store
from digestd.bounce_notices import parse_plain_bounce
from digestd.bounces import BounceReport, header_value, message_id_in, parse_report
from digestd.config import Settings
from digestd.db import database_error, session_scope
from digestd.errors import BusyError, DigestError, NotFoundError, StorageError
from digestd.jobs.common import log
from digestd.mailboxes import MailboxItem, mark_read, read_mailbox
from digestd.models import Subscriber
from digestd.refusals import RECIPIENT, SENDER
from digestd.runtime import Runtime, utc_now
from digestd.store import signup
from digestd.tokens import read_token, verp_subscriber

# A permanent failure reported after the server took the digest: whose fault it is.
_FAULT_OF_KIND = {"hard": RECIPIENT, "refused": SENDER}
_UNSUBSCRIBE_SUBJECT = re.compile(r"^\s*unsubscribe\s+([A-Za-z0-9_.-]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BounceOutcome:
    """What one message in the mailbox turned out to be, and whom it concerned."""

    source: str  # the mailbox item's name
    # "hard", "soft", "refused", "complaint", "unsubscribe", "unmatched", "not a bounce", or
    # "error" (it could not be read or recorded: logged, and the pass went on)
    kind: str
    email: str = ""
    detail: str = ""


@dataclass
class BounceIntakeReport:
    """The outcomes of one pass over a mailbox."""

    outcomes: list[BounceOutcome] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)  # addresses suppressed by this pass
    already_known: int = 0  # reports recorded by an earlier pass
    # Why the pass stopped before the other messages (the database cannot be written): they
    # wait for the next pass.
    stopped: DigestError | None = None

    def count(self, kind: str) -> int:
        """How many messages were of ``kind``."""
        return sum(o.kind == kind for o in self.outcomes)


def run_bounces(
    settings: Settings,
    engine: Engine,
    path: Path,
    *,
    now: datetime | None = None,
    runtime: Runtime | None = None,
) -> BounceIntakeReport:
    """Record every bounce, complaint and mailed unsubscribe request found at ``path`` (a
    message file, an mbox, a maildir or a folder); maildir messages are marked read. A
    plain-text bounce notice counts only when it came to a subscriber's signed VERP address."""
    now = now or utc_now()
    report = BounceIntakeReport()
    secret = (runtime if runtime is not None else Runtime(settings, engine)).link_secret
    for item in read_mailbox(path):
        # Each message stands alone: one that cannot be read or recorded is logged, counted and
        # marked read (it would fail the same way every pass); the pass goes on.
        try:
            _read_one(settings, engine, secret, item, now, report)
        except SQLAlchemyError as exc:
            error = database_error(exc, url=engine.url)
            if isinstance(error, StorageError | BusyError):
                # Every other message would fail the same way: they wait for the next pass.
                report.stopped = error
                break
            _failed(item, error, report)
        except Exception as exc:
            _failed(item, exc, report)
        mark_read(path, item)
    return report


def _read_one(
    settings: Settings,
    engine: Engine,
    secret: str,
    item: MailboxItem,
    now: datetime,
    report: BounceIntakeReport,
) -> None:
    """Record what one message reports, in a transaction of its own."""
    outcomes = len(report.outcomes)
    suppressed = len(report.suppressed)
    known = report.already_known
    reports = parse_report(item.data) or parse_plain_bounce(item.data)
    try:
        with session_scope(engine) as session:
            if reports:
                for bounce in reports:
                    _record(session, settings, secret, item.name, bounce, now, report)
            else:
                report.outcomes.append(_unsubscribe_request(session, secret, item, now, report))
    except BaseException:
        # Rolled back: nothing of this message counts.
        del report.outcomes[outcomes:], report.suppressed[suppressed:]
        report.already_known = known
        raise


def _failed(item: MailboxItem, error: Exception, report: BounceIntakeReport) -> None:
    message_id = _message_id(item.data) or "no Message-ID"
    log.error(
        "cannot record bounce mailbox message %s (%s): %s: %s",
        item.name,
        message_id,
        type(error).__name__,
        error,
        exc_info=not isinstance(error, DigestError),
    )
    detail = f"{message_id}: {type(error).__name__}: {error}"
    report.outcomes.append(BounceOutcome(item.name, "error", detail=detail))


def _message_id(data: bytes) -> str | None:
    """The Message-ID in a message's header, read without parsing its body."""
    try:
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
        return message_id_in(header_value(headers, "Message-ID"))
    except Exception:
        return None


def _record(
    session: Session,
    settings: Settings,
    secret: str,
    source: str,
    bounce: BounceReport,
    now: datetime,
    report: BounceIntakeReport,
) -> None:
    subscriber, delivery_id, verified = _find_subscriber(session, settings, secret, bounce)
    if subscriber is None and bounce.plain:
        log.warning("plain-text bounce %s did not come to a signed VERP address: ignored", source)
        detail = f"(plain-text bounce, not to a signed VERP address: ignored) {bounce.reason}"
        report.outcomes.append(BounceOutcome(source, "unmatched", bounce.recipient or "", detail))
        return
    if subscriber is None:
        log.warning(
            "bounce %s for %s (%s) matches no subscriber",
            source,
            bounce.recipient or "unknown recipient",
            bounce.message_id or "no Message-ID",
        )
        report.outcomes.append(
            BounceOutcome(source, "unmatched", bounce.recipient or "", bounce.reason)
        )
        return
    assert subscriber.id is not None
    # One report can list several recipients: each is a bounce of its own.
    key = f"{bounce.key} {bounce.recipient or ''}"
    if store.bounce_report_known(session, key):
        report.already_known += 1
        report.outcomes.append(
            BounceOutcome(source, bounce.kind, subscriber.email, "recorded before")
        )
        return
    suppressed = store.record_bounce(
        session,
        subscriber_id=subscriber.id,
        kind=bounce.kind,
        reason=bounce.reason,
        source="report",
        status=bounce.status,
        delivery_id=delivery_id,
        report_key=key,
        now=now,
        hard_limit=settings.delivery.hard_bounces,
        may_suppress=verified,
    )
    if suppressed:
        report.suppressed.append(subscriber.email)
        log.warning("subscriber %s suppressed: %s", subscriber.email, suppressed)
    if delivery_id is not None and bounce.kind in _FAULT_OF_KIND:
        # The digest the report answers did not arrive after all: `stats` and `deliveries`
        # count it failed, and whose fault, like a refusal at SMTP time.
        reply = f"bounce report: {bounce.status} {bounce.reason}".replace("  ", " ")
        store.mark_bounced(session, delivery_id, reply=reply, fault=_FAULT_OF_KIND[bounce.kind])
    detail = bounce.reason if verified else f"(unverified, not suppressing) {bounce.reason}"
    report.outcomes.append(BounceOutcome(source, bounce.kind, subscriber.email, detail))


def _find_subscriber(
    session: Session, settings: Settings, secret: str, bounce: BounceReport
) -> tuple[Subscriber | None, int | None, bool]:
    """The subscriber a report is about, the delivery it answers when known, and whether the
    match is verified: by our signed VERP address or a Message-ID we sent. A match by the
    failed recipient's address alone is not: anyone can mail a report naming any address, so
    it is recorded but never suppresses on its own. A plain-text notice is matched by the
    VERP address only."""
    bounce_address = settings.delivery.bounce_address
    delivery = (
        store.delivery_by_message_id(session, bounce.message_id) if bounce.message_id else None
    )
    if bounce_address:
        for address in bounce.envelope_to:
            subscriber_id = verp_subscriber(address, bounce_address, secret)
            if subscriber_id is not None and (found := session.get(Subscriber, subscriber_id)):
                answered = delivery.id if delivery and delivery.subscriber_id == found.id else None
                return found, answered, True
    if bounce.plain:
        return None, None, False
    if delivery is not None:
        return session.get(Subscriber, delivery.subscriber_id), delivery.id, True
    if bounce.recipient:
        try:
            return store.subscriber_by_email(session, bounce.recipient), None, False
        except NotFoundError:
            pass
    return None, None, False


def _unsubscribe_request(
    session: Session, secret: str, item: MailboxItem, now: datetime, report: BounceIntakeReport
) -> BounceOutcome:
    """A mail to the List-Unsubscribe mailto: its subject carries a signed token."""
    name = item.name
    message = email.message_from_bytes(item.data, policy=email.policy.compat32)
    match = _UNSUBSCRIBE_SUBJECT.match(str(message.get("Subject", "")))
    if match is None:
        return BounceOutcome(name, "not a bounce")

    def email_of(subscriber_id: int) -> str | None:
        found = session.get(Subscriber, subscriber_id)
        return found.email if found else None

    subscriber_id = read_token(secret, "unsubscribe", match.group(1), email_of=email_of)
    subscriber = session.get(Subscriber, subscriber_id) if subscriber_id is not None else None
    if subscriber is None:
        return BounceOutcome(name, "unmatched", detail="unsubscribe request with an unknown token")
    # However fresh, no confirmation link mailed before this request subscribes them again.
    assert subscriber.id is not None
    if signup.unsubscribe(session, subscriber.id, how="mail", now=now):
        report.suppressed.append(subscriber.email)
        log.info("subscriber %s unsubscribed by mail", subscriber.email)
    return BounceOutcome(name, "unsubscribe", subscriber.email)
