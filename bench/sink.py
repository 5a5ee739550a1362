"""The benchmarks' SMTP sink: aiosmtpd in a process of its own, counting what it accepts.

``with smtp_sink() as sink:`` starts it on a free loopback port (its own process, so it has
its own core and does not share the benchmark's interpreter); ``sink.received()`` is how many
messages it has accepted so far.
"""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

HOST = "127.0.0.1"


class _CountingHandler:
    """Accepts every message and counts it."""

    def __init__(self, count: Synchronized[int]) -> None:
        self.count = count

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Count the message and accept it."""
        with self.count.get_lock():
            self.count.value += 1
        return "250 Message accepted"


def _run_sink(port: int, count: Synchronized[int], ready: Any, stop: Any) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(
        _CountingHandler(count), hostname=HOST, port=port, data_size_limit=50_000_000
    )
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Sink:
    """A running sink: its port, and its count of accepted messages."""

    port: int
    count: Synchronized[int]

    def received(self) -> int:
        """How many messages the sink has accepted so far."""
        return int(self.count.value)


@contextmanager
def smtp_sink() -> Iterator[Sink]:
    """Run a counting aiosmtpd sink in another process for the block."""
    count: Synchronized[int] = multiprocessing.Value("l", 0)
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    port = _free_port()
    process = multiprocessing.Process(
        target=_run_sink, args=(port, count, ready, stop), daemon=True
    )
    process.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the SMTP sink did not start")
        yield Sink(port=port, count=count)
    finally:
        stop.set()
        process.join(30)
