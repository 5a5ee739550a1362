"""Queries on the host leases: whose turn it is to send a request to a host.

Taking a turn is one compare-and-set UPDATE, so two processes (or two nodes on one PostgreSQL
database) never both hold it: on SQLite the write transaction (BEGIN IMMEDIATE) serializes
them; on PostgreSQL the second UPDATE waits for the first's row lock, then finds the row taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from digestd.models import HostLease
from digestd.store.deliveries import aware

_LEASE = HostLease.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TurnRefused:
    """Why a host's turn was not given: a live ``holder`` has it (until ``busy_until`` at the
    latest), or no one does but the spacing runs until ``free_at``."""

    holder: str
    busy_until: datetime | None  # set when a live holder has the turn
    free_at: datetime | None


def take_host_lease(
    session: Session, host: str, *, holder: str, now: datetime, expires: datetime
) -> TurnRefused | None:
    """Give ``host``'s turn to ``holder`` until ``expires`` when no live holder has it (a
    holder's turn lapses at its busy_until) and its spacing has passed at ``now``: returns None
    when taken, else why not."""
    if session.get(HostLease, host) is None:
        try:
            with session.begin_nested():  # a savepoint: another process may insert it first
                session.add(HostLease(host=host))
        except IntegrityError:
            pass
    taken = session.execute(
        update(_LEASE)
        .where(
            _LEASE.c.host == host,
            or_(_LEASE.c.busy_until.is_(None), _LEASE.c.busy_until <= now),
            or_(_LEASE.c.free_at.is_(None), _LEASE.c.free_at <= now),
        )
        .values(holder=holder, busy_until=expires)
    )
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return None
    holder_now, busy_until, free_at = session.execute(
        select(_LEASE.c.holder, _LEASE.c.busy_until, _LEASE.c.free_at).where(_LEASE.c.host == host)
    ).one()
    busy_until = aware(busy_until) if busy_until is not None else None
    live = busy_until is not None and busy_until > now
    return TurnRefused(
        holder_now if live else "",
        busy_until if live else None,
        aware(free_at) if free_at is not None else None,
    )


def release_host_lease(session: Session, host: str, *, holder: str, free_at: datetime) -> bool:
    """End ``holder``'s turn at ``host``: the next request may start at ``free_at``. False when
    the turn was no longer ``holder``'s (it lapsed and another took it): nothing changes."""
    released = session.execute(
        update(_LEASE)
        .where(_LEASE.c.host == host, _LEASE.c.holder == holder)
        .values(holder="", busy_until=None, free_at=free_at)
    )
    return bool(released.rowcount == 1)  # type: ignore[attr-defined]


def host_lease(session: Session, host: str) -> HostLease | None:
    """The lease row of ``host``, if a request was ever sent to it."""
    return session.get(HostLease, host)
