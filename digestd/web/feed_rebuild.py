"""Rebuilding the feed files in the background when a request finds one missing.

A feed request never runs the feeds job itself: it answers 503 with Retry-After and wakes the
job here, which runs it in a thread of its own, one run at a time. Requests that find a feed
missing while a run is under way wait for that run rather than start another."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from digestd.db import driver_line
from digestd.errors import DigestError

log = logging.getLogger(__name__)


class FeedRebuild:
    """Runs ``rebuild`` (the feeds job) in a background thread when woken, once at a time."""

    def __init__(self, rebuild: Callable[[], object]) -> None:
        self._rebuild = rebuild
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None
        self.started = 0  # how many runs have been started

    def wake(self) -> bool:
        """Start a run unless one is under way; whether this call started one."""
        with self._lock:
            if self._running is not None and self._running.is_alive():
                return False
            self._running = threading.Thread(
                target=self._run, name="digestd-feeds-rebuild", daemon=True
            )
            self.started += 1
            self._running.start()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run under way, if any, to end; whether none is running now."""
        with self._lock:
            running = self._running
        if running is not None:
            running.join(timeout)
            return not running.is_alive()
        return True

    def _run(self) -> None:
        try:
            self._rebuild()
        except (DigestError, OSError, SQLAlchemyError) as exc:
            log.error("cannot rebuild the feeds: %s", driver_line(exc))
        except Exception:
            # A thread of its own: nobody else would see this.
            log.exception("rebuilding the feeds failed")
