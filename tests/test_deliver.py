"""Message building and the two senders, against a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from digestd.deliver import FileSender, SendResult, SmtpSender, build_message, message_bytes
from digestd.errors import DeliveryError
from digestd.render import RenderedDigest

UNSUBSCRIBE = "https://digest.example.org/unsubscribe?token=" + "Ab3_-x" * 30 + "&list=ml"
REFUSED = "nobody@example.org"


def rendered(subject: str = "2 new papers for you — Mar 14") -> RenderedDigest:
    return RenderedDigest(
        subject=subject,
        html="<html><body><p>" + "Ω naïve 量子 " * 200 + "</p></body></html>",
        text="1.  A paper\n    https://arxiv.org/abs/2403.00001\n\nΩ naïve 量子\n",
    )


def build(**overrides: Any) -> EmailMessage:
    options: dict[str, Any] = {
        "from_address": "digest@example.org",
        "from_name": "digestd",
        "to_address": "ada@example.net",
        "to_name": "Ada Lovelace",
        "list_id": "digest.example.org",
        "unsubscribe_url": UNSUBSCRIBE,
    }
    options.update(overrides)
    return build_message(options.pop("rendered", rendered()), **options)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_message_is_multipart_alternative_text_then_html() -> None:
    parsed = parse(message_bytes(build()))
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert "Ω naïve 量子" in parts[0].get_content()
    assert "Ω naïve 量子" in parts[1].get_content()


def test_headers_appear_once_and_list_headers_are_literal() -> None:
    when = datetime.datetime(2025, 3, 14, 6, 30, tzinfo=datetime.UTC)
    data = message_bytes(build(date=when))
    parsed = parse(data)
    for name in ("Date", "Message-ID", "From", "To", "Subject", "List-Id", "List-Unsubscribe"):
        assert len(parsed.get_all(name) or []) == 1, name
    assert parsed["Date"].datetime == when
    assert parsed["Message-ID"].endswith("@example.org>")
    assert parsed["List-Id"] == "digestd <digest.example.org>"
    assert f"\r\nList-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in data
    assert parsed["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"


def test_given_message_id_is_used() -> None:
    parsed = parse(message_bytes(build(message_id="<abc.123@example.org>")))
    assert parsed["Message-ID"] == "<abc.123@example.org>"


def test_crlf_line_endings_and_short_lines() -> None:
    data = message_bytes(build())
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert data.isascii()


def test_header_injection_through_names_and_subject_is_impossible() -> None:
    message = build(
        to_name="Ada\r\nBcc: evil@x",
        from_name="digestd\nX-Evil: 1",
        rendered=rendered("3 new papers\r\nBcc: evil@x\x00\x1b[31m\u2028Cc: evil@y"),
    )
    parsed = parse(message_bytes(message))
    assert parsed.get_all("Bcc") is None
    assert parsed.get_all("Cc") is None
    assert parsed.get_all("X-Evil") is None
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ada@example.net"]
    assert parsed["To"].addresses[0].display_name == "Ada Bcc: evil@x"
    assert "\n" not in parsed["Subject"] and "\x00" not in parsed["Subject"]
    assert parsed["Subject"].startswith("3 new papers Bcc: evil@x")


def test_injection_through_addresses_is_refused() -> None:
    with pytest.raises(ValueError):
        build(to_address="ada@example.net\r\nBcc: evil@x")


def test_non_ascii_display_name_and_subject_round_trip() -> None:
    subject = "7 new papers for you — Mar 14 · 量子 Ω naïve " + "long words " * 10
    data = message_bytes(
        build(from_name="Dígest Ωmega", to_name="Zoë 量子", rendered=rendered(subject))
    )
    assert b"=?utf-8?" in data  # RFC 2047 encoded words, not raw UTF-8
    parsed = parse(data)
    assert parsed["From"].addresses[0].display_name == "Dígest Ωmega"
    assert parsed["From"].addresses[0].addr_spec == "digest@example.org"
    assert parsed["To"].addresses[0].display_name == "Zoë 量子"
    assert parsed["Subject"] == subject.strip()
    # A non-ASCII description is left out of List-Id rather than encoded.
    assert parsed["List-Id"] == "<digest.example.org>"


async def test_file_sender_writes_parseable_eml(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    async with FileSender(outbox) as sender:
        first = await sender.send(build())
        second = await sender.send(build(to_address="bob+tag@example.net"))
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    assert first.ok and second.ok
    assert {first.reply, second.reply} == {str(f) for f in files}
    assert "bob+tag@example.net" in Path(second.reply).name
    parsed = parse(Path(first.reply).read_bytes())
    assert parsed["Message-ID"] == first.message_id
    assert parsed.get_content_type() == "multipart/alternative"
    assert not list(outbox.glob(".*"))  # no temporary files left behind


class RecordingHandler:
    """Records every accepted envelope, counts connections, refuses one address."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.connections = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def recording_server() -> Iterator[tuple[Controller, RecordingHandler]]:
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=unused_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


async def test_smtp_sender_reuses_one_connection_and_reports_refusals(
    recording_server: tuple[Controller, RecordingHandler],
) -> None:
    controller, handler = recording_server
    addresses = ["ada@example.net", REFUSED, "bob@example.net"]
    results: list[SendResult] = []
    async with SmtpSender(host="127.0.0.1", port=controller.port) as sender:
        for address in addresses:
            results.append(await sender.send(build(to_address=address)))

    assert [r.ok for r in results] == [True, False, True]
    assert results[1].recipient == REFUSED
    assert results[1].reply == "550 5.1.1 no such user"
    assert results[0].reply.startswith("250 ")
    assert handler.connections == 1
    assert [e.rcpt_tos for e in handler.envelopes] == [["ada@example.net"], ["bob@example.net"]]
    for envelope, result in zip(handler.envelopes, (results[0], results[2]), strict=True):
        assert envelope.mail_from == "digest@example.org"
        parsed = parse(envelope.original_content)
        assert parsed["Message-ID"] == result.message_id
        assert parsed["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
        assert parsed.get_body(("plain",)) is not None


async def test_smtp_sender_reconnects_once_after_the_server_dropped() -> None:
    handler = RecordingHandler()
    # The server closes connections idle for more than a fraction of a second.
    controller = Controller(handler, hostname="127.0.0.1", port=unused_port(), timeout=0.3)
    controller.start()
    try:
        async with SmtpSender(host="127.0.0.1", port=controller.port) as sender:
            assert (await sender.send(build())).ok
            await asyncio.sleep(0.8)
            assert (await sender.send(build(to_address="bob@example.net"))).ok
    finally:
        controller.stop()
    assert handler.connections == 2
    assert [e.rcpt_tos for e in handler.envelopes] == [["ada@example.net"], ["bob@example.net"]]


async def test_unreachable_server_raises_delivery_error() -> None:
    port = unused_port()
    with pytest.raises(DeliveryError) as caught:
        async with SmtpSender(host="127.0.0.1", port=port, timeout=5):
            pass
    assert f"cannot connect to 127.0.0.1:{port}" in str(caught.value)
    assert caught.value.hint == "check [smtp] host and port in the config file"
