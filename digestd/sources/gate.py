"""Politeness per host: one request at a time, and a pause between the end of one and the start
of the next (arXiv asks for 3 seconds), held across every digestd process on the database.

Each request takes the host's turn, a lease in the host_lease table (store.take_host_lease): a
compare-and-set that succeeds only when no live holder has it and the spacing has passed. The
turn ends with the request (the next may start ``spacing`` later); a holder that crashed loses
it when its lease lapses, after the longest a request may take and a margin.

A HostGate belongs to one runtime (the daemon, one ``digestd fetch``, a test) and is shared by
every source it polls. Its threads also queue on a lock per host, so only one of them asks the
database at a time; the database decides between processes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digestd import store
from digestd.db import database_error, session_scope
from digestd.errors import DigestError

if TYPE_CHECKING:  # digestd.config imports digestd.sources.spec: no import at run time
    from digestd.config import FetchingSettings

log = logging.getLogger("digestd.sources")

# A turn lapses this long after the longest a request may take (connecting, then its deadline).
LEASE_MARGIN_SECONDS = 30.0
# The shortest wait between two asks for a turn (a spacing of 0 must not spin on the database).
MIN_POLL_SECONDS = 0.05


class HostBusy(DigestError):
    """Other digestd processes kept a host's turn longer than this one would wait."""


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class HostGate:
    """Lets one request at a time, across processes, reach each host, ``spacing`` seconds after
    the previous one to that host ended. A turn lapses ``lease_seconds`` after it was taken; a
    request waits at most ``patience`` seconds for one, and no longer once ``stop`` is set."""

    def __init__(
        self,
        engine: Engine,
        *,
        spacing: float,
        lease_seconds: float,
        patience: float | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = _wall_clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.spacing = spacing
        self.lease = timedelta(seconds=lease_seconds)
        # Long enough for a crashed holder's turn to lapse, and the spacing after it.
        self.patience = lease_seconds + spacing if patience is None else patience
        self._stop = stop
        self._clock = clock
        self._sleep = sleep
        self._name = f"{socket.gethostname()} pid {os.getpid()}"
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def turn(self, host: str) -> Iterator[None]:
        """Wait for ``host``'s turn and hold it for the block (one request, body included).
        HostBusy when other processes keep it past the patience; a database error as raised."""
        host = host.lower()
        with self._guard:
            lock = self._locks.setdefault(host, threading.Lock())
        with lock:
            holder = self._take(host)
            try:
                yield
            finally:
                self._release(host, holder)

    def _take(self, host: str) -> str:
        holder = f"{self._name} {uuid.uuid4().hex[:8]}"
        give_up = time.monotonic() + self.patience
        while True:
            now = self._clock()
            with session_scope(self.engine) as session:
                refused = store.take_host_lease(
                    session, host, holder=holder, now=now, expires=now + self.lease
                )
            if refused is None:
                return holder
            if refused.busy_until is not None:
                # It ends no sooner than now, and the next request no sooner than the spacing.
                wait = self.spacing
            else:
                free_at = refused.free_at or now
                wait = (free_at - self._clock()).total_seconds()
            left = give_up - time.monotonic()
            if left <= 0:
                who = f" (held by {refused.holder})" if refused.holder else ""
                raise HostBusy(
                    f"no turn to ask {host} within {self.patience:g} s{who}",
                    hint="other digestd processes are fetching from it; the next poll tries again",
                )
            wait = min(max(wait, MIN_POLL_SECONDS), left)
            if self._stop is None:
                self._sleep(wait)
            elif self._stop.wait(wait):
                raise HostBusy(f"no turn to ask {host}: digestd is stopping")

    def _release(self, host: str, holder: str) -> None:
        try:
            with session_scope(self.engine) as session:
                free_at = self._clock() + timedelta(seconds=self.spacing)
                if not store.release_host_lease(session, host, holder=holder, free_at=free_at):
                    log.warning("%s: the turn lapsed before the request ended", host)
        except SQLAlchemyError as exc:
            # What was fetched is kept; the turn lapses on its own at its busy_until.
            log.warning(
                "%s: cannot end the turn: %s", host, database_error(exc, url=self.engine.url)
            )


def host_gate(
    engine: Engine, policy: FetchingSettings, *, stop: threading.Event | None = None
) -> HostGate:
    """The host gate a runtime keeps for ``engine``, by the [fetching] limits: a turn lapses
    after the connect timeout, the request deadline and a margin; waiting for one ends when
    ``stop`` is set."""
    return HostGate(
        engine,
        spacing=policy.spacing_seconds,
        lease_seconds=policy.timeout_seconds + policy.deadline_seconds + LEASE_MARGIN_SECONDS,
        stop=stop,
    )
