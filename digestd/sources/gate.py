"""Politeness per host: one request at a time, and a pause between the end of one and the start
of the next (arXiv asks for 3 seconds).

A HostGate belongs to one runtime (the daemon, one ``digestd fetch``, a test) and is shared by
every source it polls; two processes each keep their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class HostGate:
    """Lets one request at a time reach each host, ``spacing`` seconds after the previous one
    to that host ended."""

    def __init__(
        self,
        spacing: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spacing = spacing
        self._clock = clock
        self._sleep = sleep
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._ended: dict[str, float] = {}

    @contextmanager
    def turn(self, host: str) -> Iterator[None]:
        """Wait for ``host``'s turn and hold it for the block (one request, body included)."""
        host = host.lower()
        with self._guard:
            lock = self._locks.setdefault(host, threading.Lock())
        with lock:
            ended = self._ended.get(host)
            if ended is not None:
                wait = ended + self.spacing - self._clock()
                if wait > 0:
                    self._sleep(wait)
            try:
                yield
            finally:
                self._ended[host] = self._clock()
