"""A local SMTP sink for the benchmarks: aiosmtpd in its own process, counting what it gets.

``with smtp_sink() as sink:`` starts ``python -m bench.sink`` on a free loopback port (its own
process, so it has its own core and does not share our GIL), and ``sink.received()`` asks how
many messages it has accepted so far.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class CountingHandler:
    """Accepts every message, keeps nothing but a count and the bytes received."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Count the message and accept it."""
        self.messages += 1
        self.bytes += len(envelope.content or b"")
        return "250 OK"


@dataclass
class Sink:
    """A running sink: its port, and a way to read its counters."""

    port: int
    counter_file: Path

    def received(self) -> int:
        """How many messages the sink has accepted so far."""
        text = self.counter_file.read_text() if self.counter_file.exists() else "0"
        return int(text or 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_sink(folder: Path) -> Iterator[Sink]:
    """Run a counting SMTP sink in another process for the block."""
    port = _free_port()
    counter = folder / "sink.count"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.sink", str(port), str(counter)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP sink did not start")
        yield Sink(port=port, counter_file=counter)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


async def _serve(port: int, counter: Path) -> None:
    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.local", data_size_limit=50_000_000),
        host="127.0.0.1",
        port=port,
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def write_count() -> None:
        while True:
            counter.write_text(str(handler.messages))
            await asyncio.sleep(0.2)

    writer = loop.create_task(write_count())
    print("ready", flush=True)
    await stop.wait()
    writer.cancel()
    counter.write_text(str(handler.messages))
    server.close()


def main(argv: list[str] | None = None) -> None:
    """Serve as a sink on the given port until SIGTERM."""
    args: list[Any] = sys.argv[1:] if argv is None else argv
    asyncio.run(_serve(int(args[0]), Path(args[1])))


if __name__ == "__main__":
    main()
