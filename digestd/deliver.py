"""Delivery: the senders that hand built messages on, one message or many at a time.

A ``Sender`` delivers one ``OutgoingMessage`` (see digestd.message) and reports the result:
``SmtpSender`` over a small pool of reused SMTP connections, ``FileSender`` into a folder of
``.eml`` files (for dry runs, tests and debugging). ``send_concurrently`` and ``SendRate``
(from digestd.pacing) keep messages in flight on every connection and spaced out over a run.

A result is "sent", "temporary" (try again later: a 4xx reply, or the server could not be
reached, dropped the connection or stopped answering) or "permanent" (a 5xx reply). A sender
never retries on its own, beyond reopening once a connection the server closed while it sat
idle: retries, backoff and giving up are the caller's decisions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import re
import socket
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import aiosmtplib

from digestd.atomic import write_atomic
from digestd.errors import ConfigError
from digestd.header_words import header_text
from digestd.message import OutgoingMessage, build_message
from digestd.pacing import SendRate, send_concurrently
from digestd.storage import os_reason, storage_hint

__all__ = [
    "OUTCOMES",
    "FileSender",
    "OutgoingMessage",
    "SendRate",
    "SendResult",
    "Sender",
    "SmtpSender",
    "build_message",
    "header_text",
    "send_concurrently",
]

SECURITY_MODES = ("none", "starttls", "tls")
OUTCOMES = ("sent", "temporary", "permanent")

_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


@dataclass(frozen=True)
class SendResult:
    """What happened to one message: its ``outcome`` (one of ``OUTCOMES``) and, in ``reply``,
    the server's words for it or one line saying what went wrong on the way."""

    recipient: str
    outcome: str
    reply: str
    message_id: str
    # Which command the server refused: "MAIL FROM" (our sender), "RCPT TO" (the recipient)
    # or "DATA" (the message); "" when nothing was refused.
    refused_at: str = ""
    # What the operator can do about a failure on our side ("free space there"), if anything.
    hint: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown send outcome {self.outcome!r}")

    @property
    def ok(self) -> bool:
        """Whether the server accepted the message."""
        return self.outcome == "sent"


def _result(message: OutgoingMessage, outcome: str, reply: str, refused_at: str = "") -> SendResult:
    return SendResult(message.recipient, outcome, reply, message.message_id, refused_at)


class Sender(Protocol):
    """Anything that delivers one message and reports the result."""

    @property
    def connections(self) -> int:
        """How many messages it can usefully have in flight at once."""
        ...

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Deliver ``message`` to its recipient."""
        ...


class FileSender:
    """Writes every message as an ``.eml`` file into ``outbox`` instead of sending it."""

    def __init__(self, outbox: Path) -> None:
        """A sender writing into ``outbox`` (created when the first message is written)."""
        self.outbox = outbox

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    connections = 1

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Write ``message`` atomically; the result's reply is the file's path. A file that
        cannot be written (a full disk, a read-only folder) is a temporary result whose reply
        is the OS error: nothing of it is left behind, and the digest is tried again later."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        safe_recipient = _FILENAME_UNSAFE.sub("_", message.recipient)[:64] or "unknown"
        path = self.outbox / f"{stamp}-{safe_recipient}-{uuid.uuid4().hex[:8]}.eml"
        try:
            await asyncio.to_thread(write_atomic, path, message.data)
        except OSError as exc:
            reply = f"cannot write {self.outbox}: {os_reason(exc)}"
            return dataclasses.replace(
                _result(message, "temporary", reply), hint=storage_hint(exc.errno)
            )
        return _result(message, "sent", str(path))


class _Unavailable(Exception):
    """No usable connection (refused, TLS, login, timeout...): the message is a temporary
    failure. The text is the result's reply."""


class SmtpSender:
    """Sends messages over a pool of up to ``connections`` SMTP connections.

    Connections are opened when a send needs one (so an unreachable server gives temporary
    results, not an error on entry) and closed on exit. A connection carries one transaction
    at a time, so ``connections`` messages can be in flight together. With
    ``rate_per_second`` above 0, messages over all connections start no faster than that.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ca_file: str | None = None,
        connections: int = 1,
        rate_per_second: float = 0.0,
        helo_name: str | None = None,
    ) -> None:
        """A sender for ``host:port``; ``security`` is "none", "starttls" or "tls"; certificates
        are verified against ``ca_file`` (PEM) when given, else the system's authorities.
        ``helo_name`` is the name given in EHLO/HELO (None: this machine's, socket.getfqdn())."""
        if security not in SECURITY_MODES:
            raise ConfigError(
                f"unknown SMTP security {security!r}",
                hint="set [smtp] security to none, starttls or tls",
            )
        if connections < 1:
            raise ConfigError(
                f"SMTP connections must be at least 1, not {connections}",
                hint="set [smtp] connections to 1 or more",
            )
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.ca_file = ca_file
        self.connections = connections
        self.helo_name = helo_name
        self._where = f"{host}:{port}"
        self._tls_context = self._load_tls_context()
        self._limiter = SendRate(rate_per_second)
        self._clients: list[aiosmtplib.SMTP | None] = [None] * connections
        # Free connections, the most recently used on top: sending one message at a time
        # keeps using the first connection, and the others are opened only when needed.
        self._free: asyncio.LifoQueue[int] = asyncio.LifoQueue()
        for slot in reversed(range(connections)):
            self._free.put_nowait(slot)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Say QUIT on every open connection and close it; one already gone is fine."""
        await asyncio.gather(*(self._quit(slot) for slot in range(self.connections)))

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send ``message`` on a free connection and report what happened.

        Never raises for a refusal or a transport problem: those are results (see
        ``SendResult``). A message is tried on at most two connections, and on the second
        only when the first, reused, turned out closed before anything of the message went out.
        """
        if not message.envelope_from or not message.recipient:
            step = "RCPT TO" if message.envelope_from else "MAIL FROM"
            return _result(message, "permanent", "message has no sender or no recipient", step)
        slot = await self._free.get()
        try:
            return await self._send_on(slot, message)
        except _Unavailable as exc:
            return _result(message, "temporary", str(exc))
        except BaseException:
            # Cancelled in the middle of a transaction: the connection's state is unknown.
            self._discard(slot)
            raise
        finally:
            self._free.put_nowait(slot)

    async def _send_on(self, slot: int, message: OutgoingMessage) -> SendResult:
        client, reused = await self._client(slot)
        await self._limiter.acquire()
        step = "at MAIL FROM"
        try:
            try:
                await client.mail(message.envelope_from)
            except (aiosmtplib.SMTPException, OSError) as exc:
                if not reused or not _closed_by_server(exc):
                    raise
                # The server closed the connection while it sat idle. Nothing of this message
                # went out yet, so it is safe to try once more on a fresh connection.
                self._discard(slot)
                client, _ = await self._client(slot)
                await client.mail(message.envelope_from)
            step = "at RCPT TO"
            await client.rcpt(message.recipient)
            step = "during DATA"
            response = await client.data(message.data)
        except aiosmtplib.SMTPTimeoutError:
            # During DATA the server may have the message already: the caller sends it again
            # later with the same Message-ID rather than this sender guessing now.
            self._discard(slot)
            reply = f"timed out after {self.timeout} s waiting for the server {self._where} {step}"
            return _result(message, "temporary", reply)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(slot)
            outcome = "permanent" if 500 <= exc.code <= 599 else "temporary"
            return _result(message, outcome, _reply(exc.code, exc.message), step.split(" ", 1)[1])
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._discard(slot)
            reply = f"connection to {self._where} lost {step}: {_describe(exc)}"
            return _result(message, "temporary", reply)
        except ValueError as exc:
            # An address aiosmtplib will not put on the wire (e.g. non-ASCII): the envelope
            # sender at MAIL FROM, the recipient's at RCPT TO.
            await self._reset(slot)
            return _result(message, "permanent", _describe(exc), step.split(" ", 1)[1])
        return _result(message, "sent", _reply(response.code, response.message))

    async def _client(self, slot: int) -> tuple[aiosmtplib.SMTP, bool]:
        """The connection in ``slot`` and True when it was open already, else a new one and
        False; raises ``_Unavailable`` when none can be opened."""
        client = self._clients[slot]
        if client is not None and client.is_connected:
            return client, True
        self._discard(slot)
        self._clients[slot] = client = await self._connect()
        return client, False

    async def _reset(self, slot: int) -> None:
        """RSET after a refusal, so the connection serves the next message; else drop it."""
        client = self._clients[slot]
        try:
            if client is not None:
                await client.rset()
        except (aiosmtplib.SMTPException, OSError):  # closed, or not fit for the next message
            self._discard(slot)

    def _discard(self, slot: int) -> None:
        """Close connection ``slot`` without a word (it is broken) and forget it."""
        client, self._clients[slot] = self._clients[slot], None
        if client is not None:
            client.close()

    async def _quit(self, slot: int) -> None:
        """Say QUIT on connection ``slot`` if it is open, and forget it."""
        client, self._clients[slot] = self._clients[slot], None
        if client is None:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    def _load_tls_context(self) -> ssl.SSLContext | None:
        if self.security == "none" or not self.ca_file:
            return None
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load TLS certificate authorities from {self.ca_file}: {exc}",
                hint="check [smtp] ca_file in the config file",
            ) from None

    async def _connect(self) -> aiosmtplib.SMTP:
        """A new connection, logged in when a username is set; raises ``_Unavailable``."""
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.security == "tls",
            # False, not None: "none" must not upgrade behind the operator's back.
            start_tls=self.security == "starttls",
            tls_context=self._tls_context,
            local_hostname=self.helo_name,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise _Unavailable(self._connect_failure(exc)) from exc
        if self.username:
            try:
                await client.login(self.username, self.password or "")
            except (aiosmtplib.SMTPException, OSError) as exc:
                client.close()
                reason = f"login to {self._where} as {self.username} failed: {_describe(exc)}"
                raise _Unavailable(reason) from exc
        return client

    def _connect_failure(self, exc: BaseException) -> str:
        """One line saying why connecting failed, from the most telling cause."""
        cause: BaseException | None = exc
        for _ in range(8):  # a chain is short; the bound only guards against a cycle
            if cause is None:
                break
            if isinstance(cause, TimeoutError):
                where = f"the server {self._where} while connecting"
                return f"timed out after {self.timeout} s waiting for {where}"
            if isinstance(cause, ConnectionRefusedError):
                return f"connection refused by {self._where}: {cause}"
            if isinstance(cause, ssl.SSLError):
                return f"TLS with {self._where} failed: {_describe(cause)}"
            if isinstance(cause, socket.gaierror):
                return f"cannot resolve {self.host}: {cause}"
            if isinstance(cause, aiosmtplib.SMTPResponseException):
                return f"{self._where} refused the session: {_describe(cause)}"
            cause = cause.__cause__ or cause.__context__
        return f"cannot connect to {self._where}: {_describe(exc)}"


def _closed_by_server(exc: BaseException) -> bool:
    """Whether ``exc`` says the server had closed the connection (or was closing it: 421)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421
    return isinstance(exc, ConnectionError) and not isinstance(exc, TimeoutError)


def _reply(code: int, text: str) -> str:
    return f"{code} {_one_line(text)}"


def _describe(exc: BaseException) -> str:
    """``exc`` on one line: the server's reply when it is one, else the error's text."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply(exc.code, exc.message)
    return _one_line(str(exc)) or type(exc).__name__


def _one_line(text: str) -> str:
    """A multi-line server reply (or error text) on one line."""
    return " ".join(text.split())
