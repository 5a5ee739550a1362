"""The SMTP sender against a real server that misbehaves: every fault gives a classified
result, nothing is lost or sent twice by the sender itself, and the rate limit holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from digestd.deliver import (
    OutgoingMessage,
    SendRate,
    SendResult,
    SmtpSender,
    build_message,
    send_concurrently,
)
from digestd.render import RenderedMail
from tests.conftest import RecordingHandler, free_port
from tests.support.smtp_faults import FaultServer, fault_server, refusing_port

ADA, BOB = "ada@example.org", "bob@example.org"


def message(to: str = ADA) -> OutgoingMessage:
    rendered = RenderedMail(subject="2 new papers", html="<p>two</p>", text="two\n")
    return build_message(
        rendered,
        from_address="papers@example.org",
        from_name="Papers",
        to_address=to,
        to_name="",
        list_id="digest.example.org",
        unsubscribe_url="https://example.org/u/x",
    )


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with fault_server() as running:
        yield running


def sender_for(server: FaultServer, **options: Any) -> SmtpSender:
    return SmtpSender(host=server.host, port=server.port, **{"timeout": 5.0, **options})


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


async def test_451_at_rcpt_is_temporary_and_the_connection_serves_the_next(
    server: FaultServer,
) -> None:
    server.refuse_soft = {ADA}
    async with sender_for(server) as sender:
        deferred = await sender.send(message(ADA))
        sent = await sender.send(message(BOB))
    assert (deferred.outcome, deferred.ok) == ("temporary", False)
    assert deferred.reply == f"451 4.3.0 <{ADA}>: temporarily unavailable, try again later"
    assert sent.outcome == "sent" and sent.reply.startswith("250 ")
    assert server.count == 1
    assert server.received_message_ids() == [sent.message_id]
    assert (server.connections, server.rcpt_commands) == (1, 2)


async def test_550_is_permanent_and_the_next_recipient_still_gets_theirs(
    server: FaultServer,
) -> None:
    server.refuse_hard = {BOB}
    async with sender_for(server) as sender:
        refused = await sender.send(message(BOB))
        sent = await sender.send(message(ADA))
    assert refused.outcome == "permanent"
    assert refused.reply == f"550 5.1.1 <{BOB}>: mailbox unavailable"
    assert (refused.recipient, refused.message_id) == (BOB, refused.message_id)
    assert sent.ok
    assert server.count == 1
    assert [m.rcpt_tos for m in server.messages] == [(ADA,)]
    assert server.connections == 1


async def test_drop_after_data_is_temporary_and_the_server_has_it_once(
    server: FaultServer,
) -> None:
    server.drop_after_data = 1
    first = message(ADA)
    async with sender_for(server) as sender:
        dropped = await sender.send(first)
        assert server.count == 1
        # The caller sends it again later, with the same Message-ID, on a new connection.
        again = await sender.send(first)
    assert dropped.outcome == "temporary"
    assert dropped.reply.startswith(f"connection to {server.host}:{server.port} lost during DATA: ")
    assert again.ok
    assert server.count == 2
    assert [m.dropped for m in server.messages] == [True, False]
    assert server.received_message_ids() == [first.message_id, first.message_id]
    assert server.connections == 2


async def test_a_stalled_server_gives_temporary_within_about_the_timeout(
    server: FaultServer,
) -> None:
    server.stall_seconds = 10.0
    async with sender_for(server, timeout=0.5) as sender:
        started = time.monotonic()
        stalled = await sender.send(message(ADA))
        elapsed = time.monotonic() - started
        server.accept_all()
        after = await sender.send(message(BOB))
    assert stalled.outcome == "temporary"
    assert stalled.reply == (
        f"timed out after 0.5 s waiting for the server {server.host}:{server.port} during DATA"
    )
    assert 0.5 <= elapsed < 1.5
    # The server has the stalled message (the caller will resend it: same Message-ID).
    assert server.count == 2
    assert server.received_message_ids() == [stalled.message_id, after.message_id]
    assert server.connections == 2  # the stalled connection was dropped, not reused


async def test_connection_refused_is_temporary_with_one_attempt_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = 0
    connect = aiosmtplib.SMTP.connect

    async def counting_connect(self: aiosmtplib.SMTP, **options: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return await connect(self, **options)

    monkeypatch.setattr(aiosmtplib.SMTP, "connect", counting_connect)
    with refusing_port() as port:
        async with SmtpSender(host="127.0.0.1", port=port, timeout=5) as sender:
            assert attempts == 0  # entering does not connect
            results = [await sender.send(message(f"r{i}@example.org")) for i in range(3)]
    assert [r.outcome for r in results] == ["temporary"] * 3
    assert all(r.reply.startswith(f"connection refused by 127.0.0.1:{port}: ") for r in results)
    assert all("\n" not in r.reply for r in results)
    assert attempts == 3


async def test_a_server_hanging_up_at_once_gets_one_connection_per_message(
    server: FaultServer,
) -> None:
    server.hang_up = True
    async with sender_for(server) as sender:
        results = await send_concurrently(
            [message(f"r{i}@example.org") for i in range(3)], sender.send, limit=1
        )
    assert [r.outcome for r in results] == ["temporary"] * 3
    assert server.connections == 3
    assert server.count == 0


async def test_entering_does_not_connect_and_exit_quits_every_connection(
    server: FaultServer,
) -> None:
    async with sender_for(server, connections=2) as sender:
        assert server.connections == 0
        results = await send_concurrently(
            [message(f"r{i}@example.org") for i in range(4)], sender.send, limit=2
        )
        assert server.open_connections == 2
    wait_until(lambda: server.open_connections == 0)
    assert all(r.ok for r in results)
    assert server.count == 4
    assert server.connections == 2


async def test_a_connection_closed_while_idle_is_reopened_once(server: FaultServer) -> None:
    async with sender_for(server) as sender:
        first = await sender.send(message(ADA))
        assert server.close_connections() == 1
        wait_until(lambda: server.open_connections == 0)
        second = await sender.send(message(BOB))
    assert first.ok and second.ok
    assert server.count == 2
    assert server.received_message_ids() == [first.message_id, second.message_id]
    assert server.connections == 2


async def test_421_at_mail_on_a_reused_connection_reconnects_once(server: FaultServer) -> None:
    async with sender_for(server) as sender:
        first = await sender.send(message(ADA))
        server.close_at_mail = 1  # the idle connection is closing: 421 at the next MAIL FROM
        second = await sender.send(message(BOB))
        server.close_at_mail = True  # every MAIL FROM: one reconnect, then a result
        third = await sender.send(message("cy@example.org"))
    assert first.ok and second.ok
    assert third.outcome == "temporary" and third.reply == "421 4.4.2 closing connection"
    assert server.count == 2
    assert server.received_message_ids() == [first.message_id, second.message_id]
    assert server.connections == 3  # the first, the reconnect for BOB, and one for cy


async def test_rate_limit_holds_over_the_whole_run_across_connections(
    server: FaultServer,
) -> None:
    rate, count = 20.0, 10
    messages = [message(f"r{i}@example.org") for i in range(count)]
    sender = sender_for(server, connections=2, rate_per_second=rate)
    created = time.monotonic()
    async with sender:
        results = await send_concurrently(messages, sender.send, limit=sender.connections)
    assert all(r.ok for r in results)
    assert server.count == count
    assert server.connections == 2
    received = sorted(m.monotonic for m in server.messages)
    # The k-th message cannot arrive before k tokens have been earned since creation.
    for k, when in enumerate(received, start=1):
        assert when - created >= k / rate
    assert received[-1] - created >= count / rate
    # On average one per 1/rate apart (single gaps vary with the server's latency).
    assert (received[-1] - received[0]) / (count - 1) == pytest.approx(1 / rate, rel=0.5)


async def test_rate_zero_adds_no_wait(server: FaultServer) -> None:
    async with sender_for(server, rate_per_second=0) as sender:
        started = time.monotonic()
        for i in range(10):
            assert (await sender.send(message(f"r{i}@example.org"))).ok
        elapsed = time.monotonic() - started
    assert server.count == 10
    # Well under what a limit of 4 a second would have taken at least (a loaded machine may
    # take a few tenths of a second for ten messages).
    assert elapsed < 10 / 4

    limiter = SendRate(0)
    started = time.monotonic()
    for _ in range(10_000):
        await limiter.acquire()
    assert time.monotonic() - started < 0.5


async def test_rate_limiter_starts_empty_and_shares_its_rate_between_waiters() -> None:
    rate = 50.0
    limiter = SendRate(rate)
    created = time.monotonic()
    done: list[float] = []

    async def take() -> None:
        await limiter.acquire()
        done.append(time.monotonic())

    await asyncio.gather(*(take() for _ in range(8)))
    for k, when in enumerate(sorted(done), start=1):
        assert when - created >= k / rate
    # After a pause the bucket holds one token, not a burst.
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await limiter.acquire()
    await limiter.acquire()
    assert time.monotonic() - started >= 1 / rate
    with pytest.raises(ValueError):
        SendRate(-1)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_a_failed_login_is_temporary_and_says_so() -> None:
    def authenticate(*args: Any) -> AuthResult:
        auth_data = args[-1]
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"right"
        # handled=False: aiosmtpd answers 535 itself (with the default, it says nothing)
        return AuthResult(success=ok, handled=False)

    handler = RecordingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        async with SmtpSender(
            host="127.0.0.1", port=port, username="digest", password="wrong", timeout=5
        ) as sender:
            result: SendResult = await sender.send(message(ADA))
    finally:
        controller.stop()
    assert result.outcome == "temporary"
    assert result.reply.startswith(f"login to 127.0.0.1:{port} as digest failed: 535 ")
    assert handler.envelopes == []
