"""The outbox's state changes, each a compare-and-set that the database keeps whichever process
writes: new digests in (one open digest per subscriber), a digest claimed for sending by one
process under a lease in the database's own time, and its outcome recorded only by its holder.

Any number of send runs may share the database (processes, machines): these rules, not a lock of
one machine, keep every digest sent once. README, "Delivery semantics", says it for operators.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Insert, and_, func, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from digestd.models import Delivery, Paper, SentPaper
from digestd.store.deliveries import FAULTS, OPEN, PlannedRow

# How long a process holds a digest it is sending (one SMTP transaction: connect, send, reply,
# each bounded by [smtp] timeout) before another may decide it died and take the digest over.
LEASE_SECONDS = 600
_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]


class LostClaim(Exception):
    """A digest's row was not in the state this run left it in: another run changed it, so
    this run records nothing over it."""

    def __init__(self, delivery_id: int, wanted: str) -> None:
        super().__init__(f"delivery {delivery_id}: no longer this run's to mark {wanted}")
        self.delivery_id = delivery_id


def add_planned(session: Session, rows: Iterable[PlannedRow], *, now: datetime) -> list[int | None]:
    """Put digests into the outbox as planned; returns their ids, in order, None for a digest
    the database refused because another run holds an open digest of that subscriber (or
    one for that key): the digest is theirs, and this run leaves it."""
    statement = _insert_unless_taken(session)
    ids = []
    for row in rows:
        ids.append(
            session.execute(
                statement,
                {
                    "subscriber_id": row.subscriber_id,
                    "digest_key": row.digest_key,
                    "status": "planned",
                    "message_id": row.message_id,
                    "paper_count": len(row.paper_ids),
                    "paper_ids": ",".join(map(str, row.paper_ids)),
                    "reply": "",
                    "attempts": 0,
                    "interrupted": 0,
                    "created_at": now,
                    "give_up_at": row.give_up_at,
                },
            ).scalar_one_or_none()
        )
    return ids


def _insert_unless_taken(session: Session) -> Insert:
    """The outbox insert that skips a row a unique index refuses (the subscriber's open
    digest, or the key's digest), as SQLite and PostgreSQL both write it."""
    dialect = session.connection().dialect.name
    make = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement: Insert = make(_DELIVERY).on_conflict_do_nothing().returning(_DELIVERY.c.id)
    return statement


def claim_for_sending(
    session: Session,
    delivery_id: int,
    *,
    subscriber_id: int,
    paper_ids: Sequence[int],
    claimant: str,
) -> str:
    """Mark a digest "sending" for ``claimant`` (an attempt counted), holding it until
    LEASE_SECONDS from now by the database's clock, if it is still open and nobody else holds
    it, and none of its papers went out to the subscriber in another digest since it was
    planned. Returns "claimed" ("resumed" for a digest taken over from a process that died);
    "taken" when another process has it or it is over; or "duplicate" when other digests
    carried all of its papers first (it is then marked empty).

    A "sending" digest whose lease has ended, or whose holder was a process of this machine
    that has ended, was left by a process that died: it is taken over and counted as
    interrupted. The papers are checked in the same transaction as the claim:
    with the one-open-digest index, a digest planned while another was being sent is caught
    here, whatever the clocks of the machines say.
    """
    column = _DELIVERY.c
    ended = or_(column.lease_until.is_(None), column.lease_until < _database_time(session, 0))
    found = session.execute(
        select(column.status, column.claimed_by, ended).where(column.id == delivery_id)
    ).first()
    if found is None or found[0] not in OPEN:
        return "taken"
    status, holder, lease_ended = found
    # A digest left "sending" is taken over when its holder is gone: its lease ended, it was a
    # process of this machine that ended, or it is this very process (an earlier run of it
    # stopped, say on a full disk, before recording the digest).
    if status == "sending" and not (lease_ended or holder == claimant or holder_is_gone(holder)):
        return "taken"
    if paper_ids and _sent_elsewhere(session, delivery_id, subscriber_id, paper_ids):
        mark_empty(session, delivery_id, reply="its papers went out in another digest")
        return "duplicate"
    values: dict[str, Any] = {
        "status": "sending",
        "attempts": column.attempts + 1,
        "claimed_by": claimant,
        "lease_until": _database_time(session, LEASE_SECONDS),
    }
    if status == "sending":
        values["interrupted"] = column.interrupted + 1
    # Compare-and-set: only if nobody claimed it since it was read.
    result = session.execute(
        update(_DELIVERY)
        .where(column.id == delivery_id, column.status == status, column.claimed_by == holder)
        .values(**values)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return "taken"
    return "resumed" if status == "sending" else "claimed"


def holder_is_gone(claimant: str) -> bool:
    """Whether the process named ``claimant`` ("host:pid") ran on this machine and has ended:
    its digests need not wait for their lease to end. A process elsewhere is never known to be
    gone (its lease says it)."""
    host, _, pid = claimant.rpartition(":")
    if host != socket.gethostname()[:80] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, but not ours to signal
        return False
    return False


def _free(session: Session) -> ColumnElement[bool]:
    """An open digest nobody holds: not "sending", or its holder's lease has ended."""
    column = _DELIVERY.c
    return and_(
        column.status.in_(OPEN),
        or_(
            column.status != "sending",
            column.lease_until.is_(None),
            column.lease_until < _database_time(session, 0),
        ),
    )


def _held_by(claimant: str) -> ColumnElement[bool]:
    """A digest ``claimant`` holds (being sent by it)."""
    return and_(_DELIVERY.c.status == "sending", _DELIVERY.c.claimed_by == claimant)


def _database_time(session: Session, seconds: int) -> ColumnElement[datetime]:
    """The database's time (naive UTC) ``seconds`` from now: every process sharing it agrees."""
    if session.connection().dialect.name == "postgresql":
        return func.timezone("utc", func.now()) + timedelta(seconds=seconds)
    return func.datetime("now", f"+{seconds} seconds")


def _sent_elsewhere(
    session: Session, delivery_id: int, subscriber_id: int, paper_ids: Sequence[int]
) -> bool:
    """Whether other digests already carried every one of ``paper_ids`` to the subscriber in
    the version it has now (a newer version going out again is no repeat). When only some
    went out, the digest is still sent: a repeated paper costs less than a lost one."""
    query = (
        select(func.count(func.distinct(SentPaper.paper_id)))
        .join(Paper, col(Paper.id) == SentPaper.paper_id)
        .where(
            SentPaper.subscriber_id == subscriber_id,
            col(SentPaper.paper_id).in_(paper_ids),
            SentPaper.delivery_id != delivery_id,
            func.coalesce(SentPaper.version, 0) >= func.coalesce(Paper.version, 0),
        )
    )
    return session.exec(query).one() >= len(set(paper_ids))


def mark_sent(
    session: Session,
    delivery_id: int,
    *,
    claimant: str,
    subscriber_id: int,
    paper_ids: Sequence[int],
    reply: str,
    now: datetime,
) -> None:
    """Mark a digest sent and its papers as sent to the subscriber (never sent again)."""
    result = session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, _held_by(claimant))
        .values(status="sent", reply=reply, sent_at=now, next_attempt_at=None, lease_until=None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LostClaim(delivery_id, "sent")
    if paper_ids:
        connection = session.connection()
        marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        # Each paper with its version now. A paper can already be marked when a failed digest
        # is re-queued after a later one (kept), or when a revised paper went out again (its
        # newer version is recorded).
        connection.exec_driver_sql(
            "INSERT INTO sent_paper (subscriber_id, paper_id, delivery_id, version)"
            f" SELECT {marker}, id, {marker}, version FROM paper WHERE id = {marker}"
            " ON CONFLICT (subscriber_id, paper_id) DO UPDATE"
            " SET version = excluded.version, delivery_id = excluded.delivery_id"
            " WHERE excluded.version > COALESCE(sent_paper.version, 0)",
            [(subscriber_id, delivery_id, paper_id) for paper_id in paper_ids],
        )


def mark_retry(
    session: Session, delivery_id: int, *, claimant: str, reply: str, at: datetime
) -> None:
    """Mark a digest ``claimant`` holds to be tried again at ``at`` after a temporary failure."""
    result = session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, _held_by(claimant))
        .values(status="retry", reply=reply, next_attempt_at=at, lease_until=None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LostClaim(delivery_id, "retry")


def mark_failed(
    session: Session,
    delivery_id: int,
    *,
    reply: str,
    fault: str = "",
    claimant: str | None = None,
) -> None:
    """Mark a digest failed for good (refused, given up, or not buildable): one ``claimant``
    holds, or (None) one nobody holds. ``fault`` says whose fault a refusal was: "recipient" or
    "sender" (see Delivery.fault), "" for others."""
    if fault not in FAULTS:
        raise ValueError(f"unknown delivery fault {fault!r}")
    held = _held_by(claimant) if claimant is not None else _free(session)
    result = session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, held)
        .values(status="failed", reply=reply, fault=fault, next_attempt_at=None, lease_until=None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LostClaim(delivery_id, "failed")


def mark_empty(session: Session, delivery_id: int, *, reply: str) -> None:
    """Mark an open digest over with nothing to send (its papers no longer match)."""
    session.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id == delivery_id, _DELIVERY.c.status.in_(OPEN))
        .values(status="empty", reply=reply, next_attempt_at=None)
    )
