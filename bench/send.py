"""Send benchmark: messages per second to an SMTP sink on loopback.

The messages are 2,000 personalized digests (``--quick``: 200) built as the render benchmark
builds them. The sink is aiosmtpd in a process of its own (so it has its own core), accepting
every message and counting it; every run is checked to have delivered each message once.

Ours: ``SmtpSender`` driven by ``send_concurrently``, as the send job drives it, with one
connection and with a pool of ``POOL`` connections. Baseline: a raw aiosmtplib loop sending
the same pre-built bytes over one connection, one message after the other; for honesty, also
the raw loop over ``POOL`` connections at once. Each figure is the best of three runs (one with
``--quick``), the four kinds taking turns.

Run: ``python -m bench.send [--quick]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import aiosmtplib

from bench.common import Report, is_quick, peak_rss_mib
from bench.render import day_of_digests, our_message
from bench.sink import HOST, smtp_sink
from digestd.deliver import SmtpSender, send_concurrently
from digestd.message import EncodedPieces, OutgoingMessage

POOL = 4


async def raw_loop(port: int, messages: Sequence[OutgoingMessage], connections: int) -> None:
    """The baseline: pre-built bytes with aiosmtplib, each connection one message at a time."""
    pending = iter(messages)

    async def one_connection() -> None:
        async with aiosmtplib.SMTP(hostname=HOST, port=port) as client:
            for message in pending:
                await client.sendmail(message.envelope_from, [message.recipient], message.data)

    await asyncio.gather(*(one_connection() for _ in range(connections)))


async def ours(port: int, messages: Sequence[OutgoingMessage], connections: int) -> None:
    """Ours: the pipeline's sender, as the send job drives it."""
    async with SmtpSender(host=HOST, port=port, connections=connections) as sender:
        results = await send_concurrently(messages, sender.send, limit=sender.connections)
    if not all(result.ok for result in results):
        raise SystemExit("a message was refused by the sink")


def measure(
    run: Callable[[int, Sequence[OutgoingMessage], int], Coroutine[Any, Any, None]],
    port: int,
    messages: Sequence[OutgoingMessage],
    connections: int,
    count: Synchronized[int],
) -> float:
    """The rate (messages per second) of one run, which must deliver every message once."""
    before = count.value
    started = time.perf_counter()
    asyncio.run(run(port, messages, connections))
    elapsed = time.perf_counter() - started
    time.sleep(0.05)  # the sink counts the last message after it replied
    if count.value - before != len(messages):
        raise SystemExit(f"sink got {count.value - before} messages, not {len(messages)}")
    return len(messages) / elapsed


def main() -> None:
    """Start the sink, measure, print the table."""
    quick = is_quick()
    subscribers, repeats = (200, 1) if quick else (2_000, 3)
    pieces = EncodedPieces()
    messages = [our_message(digest, pieces) for digest in day_of_digests(subscribers)]
    with smtp_sink() as sink:
        port, count = sink.port, sink.count
        measure(raw_loop, port, messages[:50], 1, count)  # warm up the sink and the client
        runs = {
            "raw_one": (raw_loop, 1),
            "ours_one": (ours, 1),
            "raw_pool": (raw_loop, POOL),
            "ours_pool": (ours, POOL),
        }
        best = dict.fromkeys(runs, 0.0)
        # Runs take turns, so a slower spell of the machine does not fall on one of them only.
        for _ in range(repeats):
            for name, (run, connections) in runs.items():
                best[name] = max(best[name], measure(run, port, messages, connections, count))
        raw_one, ours_one, raw_pool, ours_pool = best.values()

    report = Report(f"send: {len(messages):,} messages to an aiosmtpd sink on loopback")
    single = report.compare(
        "msgs/s, 1 connection vs raw loop, 1 connection",
        ours_one,
        raw_one,
        unit="msg/s",
        higher_is_better=True,
    )
    report.compare(
        f"msgs/s, pool of {POOL} vs raw loop, 1 connection",
        ours_pool,
        raw_one,
        unit="msg/s",
        higher_is_better=True,
    )
    report.compare(
        f"msgs/s, pool of {POOL} vs raw loop, {POOL} connections",
        ours_pool,
        raw_pool,
        unit="msg/s",
        higher_is_better=True,
    )
    report.figure("peak memory", f"{peak_rss_mib():.0f} MiB")
    size = sum(len(m.data) for m in messages) / len(messages)
    report.note(
        f"{len(messages):,} pre-built digest messages of {size / 1024:.1f} KiB on average; "
        "the sink (aiosmtpd, its own process) accepts and counts them; best of "
        f"{repeats} run(s)"
    )
    report.note(
        "baseline: aiosmtplib.SMTP.sendmail of the same bytes in a loop; ours: SmtpSender "
        "(result per message, reconnect on a dropped connection) via send_concurrently"
    )
    verdict = "met" if single >= 0.9 and ours_pool > raw_one else "NOT met"
    report.note(
        f"target: at least 0.9x the raw loop on one connection, more with a pool: {verdict}"
    )
    report.print()


if __name__ == "__main__":
    main()
