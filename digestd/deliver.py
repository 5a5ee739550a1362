"""Delivery: rendered digests to MIME messages, and the senders that hand them on.

``build_message`` makes a multipart/alternative message with safe headers. A ``Sender``
delivers one message at a time: ``SmtpSender`` over one reused SMTP connection, ``FileSender``
into a folder of ``.eml`` files (for dry runs, tests and debugging).
"""

from __future__ import annotations

import asyncio
import datetime
import email.policy
import email.utils
import re
import ssl
import uuid
from dataclasses import dataclass
from email.headerregistry import Address, BaseHeader, UnstructuredHeader
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import aiosmtplib

from digestd.atomic import write_atomic
from digestd.errors import ConfigError, DeliveryError
from digestd.render import RenderedDigest

SMTP_POLICY = email.policy.SMTP
SECURITY_MODES = ("none", "starttls", "tls")

# CR, LF and every other control character (C0, DEL, C1) plus the Unicode line and paragraph
# separators, which some parsers also treat as line ends. Runs of them become one space.
_HEADER_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
_HINT_CONNECT = "check [smtp] host and port in the config file"
_HINT_LOGIN = "check [smtp] username and password in the config file"


@dataclass(frozen=True)
class SendResult:
    """What happened to one message: accepted or refused, and the server's words for it."""

    recipient: str
    ok: bool
    reply: str
    message_id: str


class Sender(Protocol):
    """Anything that delivers one message and reports the result."""

    async def send(self, message: EmailMessage) -> SendResult:
        """Deliver ``message`` to its To address."""
        ...


class _LiteralHeader(UnstructuredHeader, BaseHeader):
    """A header written exactly as given on one line: never folded, never RFC 2047-encoded.

    Used for List-Unsubscribe, whose URL must reach mail clients byte for byte; the stdlib
    folder would otherwise encode a long URL into encoded words.
    """

    def fold(self, *, policy: Any) -> str:
        """The header as one line ending with the policy's line separator."""
        linesep: str = policy.linesep
        return f"{self.name}: {self}{linesep}"


def header_text(value: str) -> str:
    """``value`` made safe for a header: control characters and line breaks become spaces."""
    return _HEADER_UNSAFE.sub(" ", value).strip()


def build_message(
    rendered: RenderedDigest,
    *,
    from_address: str,
    from_name: str,
    to_address: str,
    to_name: str,
    list_id: str,
    unsubscribe_url: str,
    date: datetime.datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """A multipart/alternative digest message (text, then HTML) with list headers.

    ``list_id`` is a bare list identifier such as ``digest.example.org`` (shown with
    ``from_name`` as its description) or a complete ``name <list.id>`` value. Raises
    ``ValueError`` when an address cannot be used.
    """
    sender = _address(from_name, from_address)
    recipient = _address(to_name, to_address)
    url = header_text(unsubscribe_url).replace(" ", "%20")
    if not url or len(url) > 900 or any(ch in url for ch in "<>"):
        raise ValueError(f"unusable unsubscribe URL {unsubscribe_url!r}")

    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = header_text(rendered.subject)
    message["Date"] = email.utils.format_datetime(date or datetime.datetime.now(datetime.UTC))
    message["Message-ID"] = (
        header_text(message_id) if message_id else email.utils.make_msgid(domain=sender.domain)
    )
    message["List-Id"] = _list_id(list_id, from_name)
    message["List-Unsubscribe"] = _LiteralHeader("List-Unsubscribe", f"<{url}>")
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps both parts 7-bit clean and every line short, whatever the server
    # supports and however long a rendered line is.
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def message_bytes(message: EmailMessage) -> bytes:
    """``message`` serialized as it goes over SMTP: CRLF line ends, folded headers."""
    return message.as_bytes(policy=SMTP_POLICY)


def _address(name: str, address: str) -> Address:
    addr_spec = header_text(address)
    if not addr_spec or " " in addr_spec:
        raise ValueError(f"unusable email address {address!r}")
    return Address(display_name=header_text(name), addr_spec=addr_spec)


def _list_id(list_id: str, description: str) -> str:
    value = header_text(list_id)
    if "<" in value:
        return value
    identifier = re.sub(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]", "", value)
    if not identifier:
        raise ValueError(f"unusable list id {list_id!r}")
    phrase = header_text(description)
    if not phrase or not phrase.isascii():
        return f"<{identifier}>"
    return f"{email.utils.quote(phrase) if not phrase.isalnum() else phrase} <{identifier}>"


def _first_recipient(message: EmailMessage) -> str:
    to = message["To"]
    addresses = getattr(to, "addresses", ())
    return ", ".join(a.addr_spec for a in addresses) if addresses else str(to or "")


def _message_id(message: EmailMessage) -> str:
    return str(message["Message-ID"] or "")


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

    async def send(self, message: EmailMessage) -> SendResult:
        """Write ``message`` atomically; the result's reply is the file's path."""
        recipient = _first_recipient(message)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        safe_recipient = _FILENAME_UNSAFE.sub("_", recipient)[:64] or "unknown"
        path = self.outbox / f"{stamp}-{safe_recipient}-{uuid.uuid4().hex[:8]}.eml"
        await asyncio.to_thread(write_atomic, path, message_bytes(message))
        return SendResult(
            recipient=recipient, ok=True, reply=str(path), message_id=_message_id(message)
        )


class SmtpSender:
    """Sends messages over one SMTP connection, opened on entry and closed on exit."""

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
    ) -> None:
        """A sender for ``host:port``; ``security`` is "none", "starttls" or "tls"; certificates
        are verified against ``ca_file`` (PEM) when given, else the system's authorities."""
        if security not in SECURITY_MODES:
            raise ConfigError(
                f"unknown SMTP security {security!r}",
                hint="set [smtp] security to none, starttls or tls",
            )
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.ca_file = ca_file
        self._client: aiosmtplib.SMTP | None = None
        # One connection carries one transaction at a time.
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        await self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Say QUIT and close the connection; a connection already gone is fine."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    async def send(self, message: EmailMessage) -> SendResult:
        """Send ``message``; a refusal by the server is a result with ``ok=False``, not an error.

        Raises ``DeliveryError`` when the server cannot be reached, even after reconnecting once.
        """
        recipient = _first_recipient(message)
        message_id = _message_id(message)
        sender_address = getattr(message["From"], "addresses", ())
        envelope_from = sender_address[0].addr_spec if sender_address else ""
        envelope_to = [a.addr_spec for a in getattr(message["To"], "addresses", ())]
        if not envelope_from or not envelope_to:
            reply = "message has no From or no To address"
            return SendResult(recipient, ok=False, reply=reply, message_id=message_id)
        data = message_bytes(message)

        def refused(code: int, text: str) -> SendResult:
            return SendResult(recipient, ok=False, reply=f"{code} {text}", message_id=message_id)

        async with self._lock:
            for attempt in (1, 2):
                if self._client is None or not self._client.is_connected:
                    await self._connect()
                assert self._client is not None
                try:
                    errors, reply = await self._client.sendmail(envelope_from, envelope_to, data)
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    first = exc.recipients[0]
                    return refused(first.code, first.message)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                    # The server may close an idle connection between messages; a message it
                    # had not accepted can safely be tried once more on a fresh connection.
                    await self.close()
                    if attempt == 2:
                        raise DeliveryError(
                            f"connection to {self.host}:{self.port} lost: {exc}",
                            hint=_HINT_CONNECT,
                        ) from exc
                    continue
                except aiosmtplib.SMTPTimeoutError as exc:
                    # Whether the server took the message is unknown: rather than guess, the run
                    # stops here; the digest is not recorded, so the next run sends it again.
                    await self.close()
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

    async def _connect(self) -> None:
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
        self._client = client
