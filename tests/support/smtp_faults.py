"""A real SMTP server that misbehaves on request, for delivery tests.

``fault_server()`` starts an aiosmtpd server on a free loopback port, in aiosmtpd's own thread,
so in-process asyncio tests and a digestd CLI running in a subprocess can both talk to it.
The test changes its behaviour at any time through attributes (plain assignments, read by the
server thread when the next command comes)::

    with fault_server() as server:
        server.refuse_soft = {"ada@example.org"}   # 451 at RCPT for Ada (True: for everyone)
        server.refuse_hard = {"bob@example.org"}   # 550 at RCPT for Bob (True: for everyone)
        server.drop_after_data = 1      # take the next message, then hang up without a reply
        server.stall_seconds = 5.0      # wait this long before replying to DATA
        server.reply_delay = 0.05       # a slow server: every DATA reply a little late
        server.close_at_mail = 1        # answer the next MAIL FROM with 421 and hang up
        server.refuse_sender = True     # answer every MAIL FROM with 553 (our sender refused)
        server.rcpt_replies = {"ada@example.org": "550 5.7.1 blocked"}  # this reply at RCPT
        server.data_replies = {"*": "552 5.3.4 too big"}  # after DATA, for every recipient
        server.hang_up = True           # close every new connection before the greeting
        server.accept_all()             # back to normal
        ...
        assert server.count == 1 and server.received_message_ids() == [message_id]

It records every message it received (even one it then hung up on), the connections it saw,
the RCPT commands and the names clients gave in EHLO/HELO (``helo_names``); a message refused
after DATA is not recorded. ``refusing_port()`` gives a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"

# Who a refusal applies to: False (nobody), True (everybody) or a set of addresses.
Rule = bool | Collection[str]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the server received it (all of its DATA)."""

    monotonic: float  # time.monotonic() when the end of DATA arrived
    wall: float  # time.time() at the same moment
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str  # the Message-ID header, "" when there is none
    dropped: bool  # the server hung up instead of replying


class FaultServer:
    """The server's switches and records; make one with ``fault_server()``."""

    def __init__(self, *, idle_timeout: float = 300.0) -> None:
        self.host = HOST
        self.port = 0
        self.idle_timeout = idle_timeout
        self.refuse_soft: Rule = False
        self.refuse_hard: Rule = False
        self.drop_after_data: bool | int = False
        self.stall_seconds = 0.0
        self.reply_delay = 0.0
        self.close_at_mail = 0
        self.refuse_sender = False
        # A chosen reply at RCPT TO or after DATA, by recipient address ("*": everybody).
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: dict[str, str] = {}
        self.hang_up = False
        self.connections = 0
        self.helo_names: list[str] = []
        self.rcpt_commands = 0
        self._messages: list[ReceivedMessage] = []
        self._open: set[_FaultySMTP] = set()
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    # The switches

    def accept_all(self) -> None:
        """Stop every fault: accept every message at once from now on."""
        self.refuse_soft = self.refuse_hard = False
        self.drop_after_data = False
        self.stall_seconds = self.reply_delay = 0.0
        self.close_at_mail = 0
        self.refuse_sender = False
        self.rcpt_replies = {}
        self.data_replies = {}
        self.hang_up = False

    def close_connections(self) -> int:
        """Close every open connection without a word, as a server does with idle ones;
        returns how many there were."""
        assert self._controller is not None
        with self._lock:
            sessions = list(self._open)
        for session in sessions:
            if session.transport is not None:
                self._controller.loop.call_soon_threadsafe(session.transport.close)
        return len(sessions)

    # The records

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every message received so far, in order of arrival."""
        with self._lock:
            return list(self._messages)

    @property
    def count(self) -> int:
        """How many messages were received so far."""
        with self._lock:
            return len(self._messages)

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        with self._lock:
            return len(self._open)

    def received_message_ids(self) -> list[str]:
        """The Message-ID of every message received, in order of arrival."""
        return [message.message_id for message in self.messages]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` messages arrived; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # Called from the server's thread

    def _opened(self, session: _FaultySMTP) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(session)

    def _closed(self, session: _FaultySMTP) -> None:
        with self._lock:
            self._open.discard(session)

    def _take(self, attribute: str) -> bool:
        """Whether a counted fault (``drop_after_data`` or ``close_at_mail``) applies now."""
        with self._lock:
            left = getattr(self, attribute)
            if isinstance(left, bool):
                return left
            if left > 0:
                setattr(self, attribute, left - 1)
                return True
            return False

    def _record(self, envelope: Envelope, *, dropped: bool) -> None:
        data = envelope.original_content or b""
        headers = BytesHeaderParser(policy=policy.default).parsebytes(data)
        received = ReceivedMessage(
            monotonic=time.monotonic(),
            wall=time.time(),
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message_id=str(headers["Message-ID"] or ""),
            dropped=dropped,
        )
        with self._lock:
            self._messages.append(received)

    # Starting and stopping

    def start(self) -> None:
        """Listen on a free loopback port (``self.port``)."""
        self.port = _free_port()
        controller = _FaultController(self, port=self.port, timeout=self.idle_timeout)
        controller.start()
        self._controller = controller
        with self._lock:  # forget the controller's own probe connection
            self.connections = 0

    def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class _FaultHandler:
    """The aiosmtpd handler: applies the server's switches at MAIL, RCPT and DATA."""

    def __init__(self, server: FaultServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.server._lock:
            self.server.helo_names.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_HELO(
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        with self.server._lock:
            self.server.helo_names.append(hostname)
        session.host_name = hostname
        return f"250 {smtp.hostname}"

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server._take("close_at_mail"):
            assert smtp.transport is not None
            # After the reply is written (close() still sends what is buffered).
            asyncio.get_running_loop().call_soon(smtp.transport.close)
            return "421 4.4.2 closing connection"
        if self.server.refuse_sender:
            return f"553 5.7.1 <{address}>: sender address rejected: not owned by you"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        server = self.server
        with server._lock:
            server.rcpt_commands += 1
        chosen = _reply_for(server.rcpt_replies, address)
        if chosen:
            return chosen
        if _applies(server.refuse_hard, address):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if _applies(server.refuse_soft, address):
            return f"451 4.3.0 <{address}>: temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        server = self.server
        refusal = next(
            filter(None, (_reply_for(server.data_replies, r) for r in envelope.rcpt_tos)), ""
        )
        if refusal:
            return refusal
        dropped = server._take("drop_after_data")
        server._record(envelope, dropped=dropped)
        if dropped:
            # The message is here, but the client never hears so: hang up, and wait to be
            # cancelled when aiosmtpd sees the connection gone.
            assert isinstance(smtp.transport, asyncio.Transport)
            smtp.transport.abort()
            await asyncio.Event().wait()
        delay = server.stall_seconds + server.reply_delay
        if delay > 0:
            await asyncio.sleep(delay)
        return f"250 2.0.0 OK queued as {server.count}"


class _FaultySMTP(SMTP):
    """aiosmtpd's SMTP session, telling the fault server about connections."""

    def __init__(self, server: FaultServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fault_server = server
        self.hung_up = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.fault_server._opened(self)
        if self.fault_server.hang_up:
            self.hung_up = True
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.fault_server._closed(self)
        if not self.hung_up:
            super().connection_lost(error)


class _FaultController(Controller):
    def __init__(self, server: FaultServer, *, port: int, timeout: float) -> None:
        super().__init__(_FaultHandler(server), hostname=HOST, port=port, timeout=timeout)
        self.fault_server = server

    def factory(self) -> SMTP:
        return _FaultySMTP(self.fault_server, self.handler, **self.SMTP_kwargs)


def _applies(rule: Rule, address: str) -> bool:
    if isinstance(rule, bool):
        return rule
    return address in rule


def _reply_for(replies: dict[str, str], address: str) -> str:
    return replies.get(address) or replies.get("*", "")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def fault_server(*, idle_timeout: float = 300.0) -> Iterator[FaultServer]:
    """A started ``FaultServer``, stopped on exit; ``idle_timeout`` is how long it keeps an
    idle connection open."""
    server = FaultServer(idle_timeout=idle_timeout)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where connections are refused (bound, not listening, for the duration,
    so nothing else can take it meanwhile)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield int(sock.getsockname()[1])
