"""Pacing a run: how many messages are in flight at once, and how many go out per second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def send_concurrently(
    items: Iterable[T], work: Callable[[T], Awaitable[R]], *, limit: int
) -> list[R]:
    """``work`` applied to every item, at most ``limit`` at a time; results in item order.

    Each item is worked on exactly once. When one raises, no further item is started, the ones
    in flight are finished (a message a server accepted is still reported), then the first
    error is raised.
    """
    pending = iter(enumerate(items))
    results: dict[int, R] = {}
    errors: list[BaseException] = []

    async def worker() -> None:
        for index, item in pending:
            try:
                results[index] = await work(item)
            except Exception as exc:
                errors.append(exc)
            if errors:
                return

    await asyncio.gather(*(worker() for _ in range(max(limit, 1))))
    if errors:
        raise errors[0]
    return [results[index] for index in sorted(results)]


class SendRate:
    """Lets at most ``rate_per_second`` acquisitions through per second; 0 means no limit.

    A token bucket that starts empty and holds at most one token: N acquisitions take at least
    N / rate seconds from the limiter's creation, and a pause earns no burst afterwards.
    """

    def __init__(self, rate_per_second: float) -> None:
        """A limiter for ``rate_per_second`` (0 or more) acquisitions per second."""
        if rate_per_second < 0:
            raise ValueError(f"rate must be 0 or more, not {rate_per_second}")
        self.rate = rate_per_second
        self._tokens = 0.0
        self._updated = time.monotonic()
        # One waiter at a time, in arrival order (asyncio.Lock is fair), so concurrent senders
        # share the rate instead of all waking up at the same moment.
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a token is there and take it; at once when there is no limit."""
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(1.0, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
