"""Delivery: the senders that hand built messages on, one message or many at a time.

A ``Sender`` delivers one ``OutgoingMessage`` (see digestd.message) and reports the result:
``SmtpSender`` over a small pool of reused SMTP connections, ``FileSender`` into a folder of
``.eml`` files (for dry runs, tests and debugging). ``send_concurrently`` keeps as many messages
in flight as the sender has connections.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

import aiosmtplib

from digestd.atomic import write_atomic
from digestd.errors import ConfigError, DeliveryError
from digestd.message import OutgoingMessage, build_message, header_text

__all__ = [
    "FileSender",
    "OutgoingMessage",
    "SendResult",
    "Sender",
    "SmtpSender",
    "build_message",
    "header_text",
    "send_concurrently",
]

SECURITY_MODES = ("none", "starttls", "tls")

_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
_HINT_CONNECT = "check [smtp] host and port in the config file"
_HINT_LOGIN = "check [smtp] username and password in the config file"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SendResult:
    """What happened to one message: accepted or refused, and the server's words for it."""

    recipient: str
    ok: bool
    reply: str
    message_id: str


class Sender(Protocol):
    """Anything that delivers one message and reports the result."""

    @property
    def connections(self) -> int:
        """How many messages it can usefully have in flight at once."""
        ...

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Deliver ``message`` to its recipient."""
        ...


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
        """Write ``message`` atomically; the result's reply is the file's path."""
        recipient = message.recipient
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        safe_recipient = _FILENAME_UNSAFE.sub("_", recipient)[:64] or "unknown"
        path = self.outbox / f"{stamp}-{safe_recipient}-{uuid.uuid4().hex[:8]}.eml"
        await asyncio.to_thread(write_atomic, path, message.data)
        return SendResult(recipient, ok=True, reply=str(path), message_id=message.message_id)


class SmtpSender:
    """Sends messages over a pool of up to ``connections`` SMTP connections.

    The first connection is opened on entry (so a wrong host or password shows at once), the
    others when concurrent sends need them; all are closed on exit. A connection carries one
    transaction at a time, so ``connections`` messages can be in flight together.
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
    ) -> None:
        """A sender for ``host:port``; ``security`` is "none", "starttls" or "tls"; certificates
        are verified against ``ca_file`` (PEM) when given, else the system's authorities."""
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
        self._clients: list[aiosmtplib.SMTP | None] = [None] * connections
        # Free connections, the most recently used on top: sending one message at a time
        # keeps using the first connection, and the others are opened only when needed.
        self._free: asyncio.LifoQueue[int] = asyncio.LifoQueue()
        for slot in reversed(range(connections)):
            self._free.put_nowait(slot)

    async def __aenter__(self) -> Self:
        self._clients[0] = await self._connect()
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
        await asyncio.gather(*(self._drop(slot) for slot in range(self.connections)))

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send ``message`` on a free connection; a refusal by the server is a result with
        ``ok=False``, not an error.

        Raises ``DeliveryError`` when the server cannot be reached, even after reconnecting once.
        """
        if not message.envelope_from or not message.recipient:
            reply = "message has no sender or no recipient"
            return SendResult(message.recipient, False, reply, message.message_id)
        slot = await self._free.get()
        try:
            return await self._send_on(slot, message)
        finally:
            self._free.put_nowait(slot)

    async def _send_on(self, slot: int, message: OutgoingMessage) -> SendResult:
        recipient, message_id = message.recipient, message.message_id

        def refused(code: int, text: str) -> SendResult:
            return SendResult(recipient, ok=False, reply=f"{code} {text}", message_id=message_id)

        for attempt in (1, 2):
            client = self._clients[slot]
            if client is None or not client.is_connected:
                await self._drop(slot)
                client = self._clients[slot] = await self._connect()
            try:
                errors, reply = await client.sendmail(
                    message.envelope_from, [recipient], message.data
                )
            except aiosmtplib.SMTPRecipientsRefused as exc:
                first = exc.recipients[0]
                return refused(first.code, first.message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                # The server may close an idle connection between messages; a message it
                # had not accepted can safely be tried once more on a fresh connection.
                await self._drop(slot)
                if attempt == 2:
                    raise DeliveryError(
                        f"connection to {self.host}:{self.port} lost: {exc}", hint=_HINT_CONNECT
                    ) from exc
                continue
            except aiosmtplib.SMTPTimeoutError as exc:
                # Whether the server took the message is unknown: rather than guess, the run
                # stops here; the digest is not recorded, so the next run sends it again.
                await self._drop(slot)
                raise DeliveryError(
                    f"{self.host}:{self.port} stopped answering: {exc}", hint=_HINT_CONNECT
                ) from exc
            except ValueError as exc:
                # An address aiosmtplib will not put on the wire (e.g. non-ASCII).
                return SendResult(recipient, ok=False, reply=str(exc), message_id=message_id)
            except aiosmtplib.SMTPResponseException as exc:
                # Sender refused, DATA refused, ...: aiosmtplib has already sent RSET.
                return refused(exc.code, exc.message)
            if errors:
                code, text = next(iter(errors.values()))
                return refused(code, text)
            # aiosmtplib returns only the text of the 250 reply to DATA.
            return SendResult(recipient, ok=True, reply=f"250 {reply}", message_id=message_id)
        raise AssertionError("unreachable")

    async def _drop(self, slot: int) -> None:
        """Say QUIT on connection ``slot`` if it is open, and forget it."""
        client, self._clients[slot] = self._clients[slot], None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.security == "none" or not self.ca_file:
            return None
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(
                f"cannot load TLS certificate authorities from {self.ca_file}: {exc}",
                hint="check [smtp] ca_file in the config file",
            ) from None

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=self.security == "tls",
            # False, not None: "none" must not upgrade behind the operator's back.
            start_tls=self.security == "starttls",
            tls_context=self._tls_context(),
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise DeliveryError(
                f"cannot connect to {self.host}:{self.port}: {exc}", hint=_HINT_CONNECT
            ) from exc
        if self.username:
            try:
                await client.login(self.username, self.password or "")
            except (aiosmtplib.SMTPException, OSError) as exc:
                client.close()
                raise DeliveryError(
                    f"cannot log in to {self.host}:{self.port} as {self.username}: {exc}",
                    hint=_HINT_LOGIN,
                ) from exc
        return client
